"""Where the invoice-readiness gate keeps its facts: one hash per project, the last verdict emitted per
invoice, and which project an invoice belongs to.

In Redis: ``<prefix>:readiness:project:<code>`` holds the project's ``meta`` and one field per fact
(:func:`actors.invoice_readiness.facts.field_of`), ``<prefix>:readiness:invoice:<number>`` names an
invoice's project, ``<prefix>:readiness:verdict:<number>`` the verdict last emitted (with its transition
sequence), and ``<prefix>:readiness:projects`` every project with facts. The state is a cache of the
systems of record: ``hub readiness rebuild`` writes it again from the ERP and the document platform.

The actor uses :class:`ReadinessStore` (sync); the hard-stop endpoint reads the same keys with
:class:`AsyncReadinessReader`. :class:`MemoryReadinessStore` is the fake for unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Protocol

import redis
import redis.asyncio

from actors.invoice_readiness.facts import (
    ProjectFacts,
    ProjectMeta,
    Verdict,
    dump_event,
    field_of,
    project_facts,
)
from actors.invoice_readiness.logic import Event, InvoiceDrafted
from hub.store import guarded


class ReadinessStore(Protocol):
    """The gate's facts and verdicts."""

    def load(self, code: str) -> ProjectFacts:
        """The project's facts as stored."""
        ...

    def meta(self, code: str) -> ProjectMeta | None:
        """The project's stored meta (None: no invoice of it is known to the gate)."""
        ...

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """Add facts (and the meta, when given) to the project's, in one step."""
        ...

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """Forget the project's facts and keep these instead (a rebuild)."""
        ...

    def project_of(self, number: str) -> str | None:
        """The project an invoice belongs to, if the gate has seen it drafted."""
        ...

    def verdict(self, number: str) -> Verdict | None:
        """The verdict last emitted for an invoice."""
        ...

    def save_verdict(self, number: str, verdict: Verdict) -> None:
        """Remember the verdict just emitted."""
        ...


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}:readiness"

    def project(self, code: str) -> str:
        return f"{self.prefix}:project:{code}"

    def invoice(self, number: str) -> str:
        return f"{self.prefix}:invoice:{number}"

    def verdict(self, number: str) -> str:
        return f"{self.prefix}:verdict:{number}"

    @property
    def projects(self) -> str:
        return f"{self.prefix}:projects"


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _mapping(events: Iterable[Event], meta: ProjectMeta | None) -> dict[str, str]:
    mapping = {field_of(event): dump_event(event) for event in events}
    if meta is not None:
        mapping["meta"] = json.dumps(asdict(meta), sort_keys=True)
    return mapping


class RedisReadinessStore:
    """:class:`ReadinessStore` in Redis (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._keys = _Keys(prefix)

    def load(self, code: str) -> ProjectFacts:
        """See :meth:`ReadinessStore.load`."""
        raw: Any = guarded(lambda: self._client.hgetall(self._keys.project(code)))
        return project_facts(code, raw)

    def meta(self, code: str) -> ProjectMeta | None:
        """See :meth:`ReadinessStore.meta`."""
        raw: Any = guarded(lambda: self._client.hget(self._keys.project(code), "meta"))
        return None if raw is None else ProjectMeta(**json.loads(raw))

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """See :meth:`ReadinessStore.store`."""
        self._write(code, list(events), meta, replace=False)

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """See :meth:`ReadinessStore.replace`."""
        self._write(code, list(events), meta, replace=True)

    def _write(self, code: str, events: list[Event], meta: ProjectMeta | None, *, replace: bool) -> None:
        mapping = _mapping(events, meta)
        pipe = self._client.pipeline(transaction=True)
        if replace:
            pipe.delete(self._keys.project(code))
        if mapping:
            pipe.hset(self._keys.project(code), mapping=mapping)
            pipe.sadd(self._keys.projects, code)
        for event in events:
            if isinstance(event, InvoiceDrafted):
                pipe.set(self._keys.invoice(event.invoice_number), code)
        guarded(pipe.execute)

    def project_of(self, number: str) -> str | None:
        """See :meth:`ReadinessStore.project_of`."""
        return _text(guarded(lambda: self._client.get(self._keys.invoice(number))))

    def verdict(self, number: str) -> Verdict | None:
        """See :meth:`ReadinessStore.verdict`."""
        raw: Any = guarded(lambda: self._client.get(self._keys.verdict(number)))
        return Verdict.load(raw)

    def save_verdict(self, number: str, verdict: Verdict) -> None:
        """See :meth:`ReadinessStore.save_verdict`."""
        guarded(lambda: self._client.set(self._keys.verdict(number), verdict.dump()))


class AsyncReadinessReader:
    """What the hard-stop endpoint reads, on the ingress's asyncio Redis client (same keys)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str) -> None:
        self._client = client
        self._keys = _Keys(prefix)

    async def facts_of_invoice(self, number: str) -> tuple[str | None, ProjectFacts]:
        """The invoice's project and that project's facts (empty when the invoice is unknown).

        Raises ``redis.RedisError`` when Redis does not answer: the endpoint fails closed (503).
        """
        code = _text(await self._client.get(self._keys.invoice(number)))
        raw: Any = {}
        if code:
            fetched: Any = self._client.hgetall(self._keys.project(code))  # a coroutine on the asyncio client
            raw = await fetched
        return code, project_facts(code or "", raw)


class MemoryReadinessStore:
    """:class:`ReadinessStore` in dicts, for unit tests (it keeps facts exactly as Redis would)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.invoices: dict[str, str] = {}
        self.verdicts: dict[str, str] = {}

    def load(self, code: str) -> ProjectFacts:
        """See :meth:`ReadinessStore.load`."""
        return project_facts(code, self.hashes.get(code, {}))

    def meta(self, code: str) -> ProjectMeta | None:
        """See :meth:`ReadinessStore.meta`."""
        raw = self.hashes.get(code, {}).get("meta")
        return None if raw is None else ProjectMeta(**json.loads(raw))

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """See :meth:`ReadinessStore.store`."""
        listed = list(events)
        self.hashes.setdefault(code, {}).update(_mapping(listed, meta))
        self.invoices.update({e.invoice_number: code for e in listed if isinstance(e, InvoiceDrafted)})

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None) -> None:
        """See :meth:`ReadinessStore.replace`."""
        self.hashes.pop(code, None)
        self.store(code, events, meta)

    def project_of(self, number: str) -> str | None:
        """See :meth:`ReadinessStore.project_of`."""
        return self.invoices.get(number)

    def verdict(self, number: str) -> Verdict | None:
        """See :meth:`ReadinessStore.verdict`."""
        return Verdict.load(self.verdicts.get(number))

    def save_verdict(self, number: str, verdict: Verdict) -> None:
        """See :meth:`ReadinessStore.save_verdict`."""
        self.verdicts[number] = verdict.dump()
