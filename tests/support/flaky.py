"""A test actor that fails for good on demand, to make dead letters and exception cases on the real broker."""

from __future__ import annotations

from hub.actor import ActorContext, ActorSpec
from hub.errors import PermanentError
from hub.runtime import Runtime


class Flaky:
    """A test actor that fails for good while ``<prefix>:flaky:fail`` is set, and counts its successes."""

    spec = ActorSpec(name="flaky", triggers=("erp.project.created.v1",))

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def handle(self, context: ActorContext) -> None:
        prefix = self.runtime.queue_prefix
        if self.runtime.redis.get(f"{prefix}:flaky:fail"):
            raise PermanentError("the ERP refused the project (staged)")
        self.runtime.redis.incr(f"{prefix}:flaky:done")
