"""A hub worker with a side-effecting test actor that can be told to die with SIGKILL at chosen points.

Crash points are Redis keys ``<prefix>:crash:<point>``, consumed once (GETDEL):
``after_claim`` (actor started: the lease is held), ``after_effect`` (side effect applied, not yet
done), ``after_done`` (done written, message not yet acked), ``after_save`` (master data's record and
outbox committed, the announcement not yet published), ``fanout_before_done`` (the hub's fan-out
published its event, confirmed, and has no done mark yet). ``<prefix>:poison`` kills the worker on
every delivery while set; ``<prefix>:effect:fail`` makes the actor fail (retryable) while set, and
``<prefix>:effect:hold`` once, after it pushed to ``<prefix>:effect:reached`` and popped ``<prefix>:effect:go``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from actors.master_data import SqlMasterDataStore
from hub.batching import ClosingWrites
from hub.cli.compose import build_app
from hub.errors import NEVER_RETRIED, UpstreamUnavailable
from hub.events import from_message_body
from hub.idempotency import IdempotencyMiddleware, side_effect_key
from hub.runtime import Runtime
from hub.settings import load_settings
from hub.workers import run_worker

ACTOR = "effect"


def _die_if(client: redis.Redis, key: str) -> None:
    if client.getdel(key):
        os.kill(os.getpid(), signal.SIGKILL)


class CrashAfterDone(Middleware):  # type: ignore[misc]
    """Runs its after-hook after the closing writes', which send the done mark (after-hooks run in reverse
    order)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        _die_if(self.client, f"{self.prefix}:crash:after_done")


class CrashBeforeDone(Middleware):  # type: ignore[misc]
    """Runs its after-hook before the idempotency middleware's: the fan-out has run, ``done`` is not written."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        if message.actor_name == "fanout" and exception is None:
            _die_if(self.client, f"{self.prefix}:crash:fanout_before_done")


def declare_effect_actor(runtime: Runtime) -> Any:
    """Declare the test actor: it applies one side effect keyed by (event id, actor, step)."""
    prefix, client = runtime.queue_prefix, runtime.redis

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR, queue_name=f"{prefix}.{ACTOR}",
                    throws=NEVER_RETRIED)
    def effect(event_body: dict[str, Any]) -> None:
        event = from_message_body(event_body)
        if client.get(f"{prefix}:poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        _die_if(client, f"{prefix}:crash:after_claim")
        if client.getdel(f"{prefix}:effect:hold"):
            # Says it got here, waits for the test's go (the test cuts RabbitMQ off meanwhile), then fails.
            client.rpush(f"{prefix}:effect:reached", "1")
            if client.blpop([f"{prefix}:effect:go"], timeout=60) is None:
                raise RuntimeError("the test never said go")
            raise UpstreamUnavailable("document platform answered 503")
        if client.get(f"{prefix}:effect:fail"):
            raise UpstreamUnavailable("document platform answered 503")
        key = side_effect_key(event.get_id(), ACTOR, "apply")
        client.rpush(f"{prefix}:effect:calls", key)  # every time the actor reached the side effect
        client.sadd(f"{prefix}:effect:applied", key)  # the downstream honours the idempotency key
        _die_if(client, f"{prefix}:crash:after_effect")

    return effect


def crash_after_save(client: redis.Redis, prefix: str) -> None:
    """Make master data's store die at ``after_save``: once its transaction committed (fault injection
    around the real store)."""
    save = SqlMasterDataStore.save

    def saving_then_dying(self: SqlMasterDataStore, state: Any, **kwargs: Any) -> None:
        save(self, state, **kwargs)
        _die_if(client, f"{prefix}:crash:after_save")

    SqlMasterDataStore.save = saving_then_dying  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """Run until SIGTERM (or until a crash point kills us). ``--heartbeat-file PATH`` as ``hub worker``
    takes it: touched once the consumers run (after the SIGTERM handler is installed), removed on a clean
    stop."""
    settings = load_settings()
    runtime = build_app(settings, embedded=False)
    runtime.broker.add_middleware(CrashAfterDone(runtime.redis, settings.queue_prefix), before=ClosingWrites)
    runtime.broker.add_middleware(CrashBeforeDone(runtime.redis, settings.queue_prefix),
                                  after=IdempotencyMiddleware)
    declare_effect_actor(runtime)
    crash_after_save(runtime.redis, settings.queue_prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    heartbeat = Path(argv[argv.index("--heartbeat-file") + 1]) if "--heartbeat-file" in argv else None
    run_worker(runtime, threads=1, stop=stop, heartbeat_file=heartbeat)


if __name__ == "__main__":
    main(sys.argv[1:])
