"""The console's data over the runtime (:class:`hub.console.ConsoleData`): the exception inbox, the gate's held
invoices, the dead letters on RabbitMQ, the flight record and the scheduled jobs; mounted by
:func:`hub.cli.compose.build_ingress` when ``HUB_OPERATORS_FILE`` is set."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import REGISTRY

from hub.runtime import Runtime
from hub.scheduler import JobRecord, describe_jobs

if TYPE_CHECKING:
    from actors.exceptions.desk import ExceptionDesk
    from actors.invoice_readiness.store import ReadinessStore

#: The owners cases go to (``hub.common.ExceptionOwner``).
OWNERS = ["finance", "pmo", "records_management", "platform_team", "risk"]


def _sample(name: str, **labels: str) -> float:
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class RuntimeConsole:
    """:class:`hub.console.ConsoleData` over one runtime."""

    def __init__(self, runtime: Runtime, *, desk: ExceptionDesk, readiness: ReadinessStore) -> None:
        self.runtime, self.desk, self.readiness = runtime, desk, readiness

    def _queues(self) -> dict[str, str]:
        broker = self.runtime.broker
        return {name: broker.get_actor(name).queue_name for name in sorted(broker.get_declared_actors())}

    def health(self) -> list[dict[str, Any]]:
        """RabbitMQ, Redis and the database, asked now."""
        checks: list[dict[str, Any]] = []
        for name, check in (("RabbitMQ", self._rabbitmq), ("Redis", lambda: bool(self.runtime.redis.ping())),
                            ("Database", self._database)):
            try:
                checks.append({"name": name, "ok": bool(check()), "detail": "answers"})
            except Exception as exc:  # a dependency that does not answer is what this page is for
                checks.append({"name": name, "ok": False, "detail": type(exc).__name__})
        return checks

    def _rabbitmq(self) -> bool:
        if self.runtime.embedded:
            return True
        import pika

        from hub.endpoints import amqp_parameters

        connection = pika.BlockingConnection(amqp_parameters(self.runtime.settings.amqp_url))
        connection.close()
        return True

    def _database(self) -> bool:
        with self.runtime.db.begin() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True

    def overview(self) -> dict[str, Any]:
        """This process's counts, the open exceptions by owner, held invoices by code, dead letters by actor."""
        by_owner: dict[str, int] = {}
        for case in self.desk.cases(states=("open",)):
            by_owner[case.owner] = by_owner.get(case.owner, 0) + 1
        by_code: dict[str, int] = {}
        for invoice in self.readiness.held():
            for code in invoice.codes:
                by_code[code] = by_code.get(code, 0) + 1
        dead: dict[str, int] = {}
        try:
            dead = {actor: len(letters) for actor, letters in self._letters_by_actor().items()}
        except Exception:  # RabbitMQ away: the health cards say so
            dead = {}
        provisioned = _sample("hub_provisioning_seconds_count")
        numbers = [
            ("requests answered", int(_sample("hub_http_requests_total"))),
            ("5xx answers", int(sum(_sample("hub_http_requests_total", status=str(s)) for s in (500, 502, 503, 504)))),
            ("messages ok", int(_sample("hub_messages_total", outcome="ok"))),
            ("messages retried", int(_sample("hub_messages_total", outcome="retried"))),
            ("dead-lettered or parked", int(_sample("hub_messages_total", outcome="dead_lettered")
                                            + _sample("hub_messages_total", outcome="parked"))),
            ("mean provisioning time", f"{_sample('hub_provisioning_seconds_sum') / provisioned:.2f} s"
             if provisioned else "-"),
        ]
        return {"numbers": numbers, "exceptions_by_owner": dict(sorted(by_owner.items())),
                "held_by_code": dict(sorted(by_code.items())), "dead_by_actor": dead}

    def cases(self, owner: str | None) -> list[dict[str, Any]]:
        """See :meth:`hub.console.ConsoleData.cases`."""
        return [case.as_dict() for case in self.desk.cases(owner=owner)]

    def owners(self) -> list[str]:
        """See :meth:`hub.console.ConsoleData.owners`."""
        return OWNERS

    def acknowledge(self, case_id: str, by: str) -> dict[str, Any]:
        """See :meth:`hub.console.ConsoleData.acknowledge`."""
        return self.desk.acknowledge(case_id, by=by).as_dict()

    def resolve(self, case_id: str, by: str, retry: bool) -> dict[str, Any]:
        """See :meth:`hub.console.ConsoleData.resolve`."""
        resolved = self.desk.resolve(case_id, by=by, retry=retry)
        return {**resolved.case.as_dict(), "replayed": list(resolved.replayed)}

    def held(self) -> list[dict[str, Any]]:
        """See :meth:`hub.console.ConsoleData.held`."""
        from actors.invoice_readiness.held import held_body

        return [held_body(invoice) for invoice in self.readiness.held()]

    def _letters_by_actor(self) -> dict[str, list[dict[str, Any]]]:
        from hub.dlq import list_dead_letters

        if self.runtime.embedded:
            return {}
        found: dict[str, list[dict[str, Any]]] = {}
        for actor, queue in self._queues().items():
            found[actor] = [{"actor": letter.actor, "message_id": letter.message_id, "event_id": letter.event_id,
                             "event_type": letter.event_type, "death": letter.death_reason,
                             "why": (letter.reason or {}).get("why"), "error": (letter.reason or {}).get("error")}
                            for letter in list_dead_letters(self.runtime.settings.amqp_url, queue,
                                                            self.runtime.dead_letters)]
        return found

    def dead_letters(self) -> list[dict[str, Any]]:
        """See :meth:`hub.console.ConsoleData.dead_letters`."""
        return [letter for letters in self._letters_by_actor().values() for letter in letters]

    def replay(self, actor: str, message_id: str) -> list[str]:
        """See :meth:`hub.console.ConsoleData.replay`."""
        from hub.dlq import replay_dead_letters

        queue = self._queues().get(actor)
        if queue is None or self.runtime.embedded:
            return []
        return replay_dead_letters(self.runtime.settings.amqp_url, self.runtime.broker, queue,
                                   message_ids={message_id}, reasons=self.runtime.dead_letters)

    def journey(self, event_id: str) -> list[dict[str, Any]]:
        """See :meth:`hub.console.ConsoleData.journey`."""
        hops = sorted(self.runtime.flight.hops(event_id), key=lambda hop: hop.started_at)
        if not hops:
            return []
        start = hops[0].started_at
        return [{**asdict(hop), "offset_ms": (hop.started_at - start) * 1000} for hop in hops]

    def jobs(self) -> list[dict[str, Any]]:
        """See :meth:`hub.console.ConsoleData.jobs`."""
        return describe_jobs(self.runtime.jobs, JobRecord(self.runtime.redis, prefix=self.runtime.queue_prefix))

    def reconciliation(self, run_id: str | None, code: str | None) -> dict[str, Any]:
        """See :meth:`hub.console.ConsoleData.reconciliation`."""
        from actors.reconciliation import BY_CODE, SqlReconciliationStore

        store = SqlReconciliationStore(self.runtime.db)
        runs = [run.as_dict() for run in store.runs(limit=10)]
        chosen = store.run(run_id) if run_id or runs else None
        classes = [{"code": c, "name": cls.name, "summary": cls.summary, "owner": cls.owner,
                    "repair": cls.repairer or "routed", "found": chosen.counts.get(c, 0) if chosen else 0}
                   for c, cls in BY_CODE.items()]
        findings = [f.as_dict() for f in store.findings(chosen.run_id, code=code if code in BY_CODE else None,
                                                        limit=200)] if chosen else []
        return {"runs": runs, "run": chosen.as_dict() if chosen else None, "classes": classes, "findings": findings,
                "code": code}
