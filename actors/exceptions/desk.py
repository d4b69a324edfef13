"""What an operator does with the inbox, by the CLI (``hub exceptions``), the API and the console alike: list,
look at, acknowledge and resolve cases; resolving one with a retry replays the dead letters behind it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from actors.exceptions.store import Case, ExceptionInbox, State

#: Replays dead letters of one actor by message id (``hub.dlq.replay_dead_letters``); returns the ids replayed.
Replay = Callable[[str, Collection[str]], list[str]]


class CannotRetry(RuntimeError):
    """A retry was asked where none can be made (no dead letter behind the case, or no broker to replay on)."""


@dataclass(frozen=True)
class Resolved:
    """A case resolved, and the dead letters replayed for it."""

    case: Case
    replayed: tuple[str, ...] = ()


class ExceptionDesk:
    """The inbox as operators work it. ``replay``: how dead letters are replayed (None: nowhere, the embedded
    mode's broker keeps none)."""

    def __init__(self, inbox: ExceptionInbox, *, replay: Replay | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inbox, self.replay, self.now = inbox, replay, now

    def cases(self, *, owner: str | None = None, states: Sequence[State] = ("open", "acknowledged"),
              older_than: timedelta | None = None, limit: int = 500) -> list[Case]:
        """Cases in ``states``, of ``owner``, first seen longer ago than ``older_than``, the oldest first."""
        before = self.now() - older_than if older_than is not None else None
        return self.inbox.cases(owner=owner, states=states, seen_before=before, limit=limit)

    def case(self, case_id: str) -> Case:
        """One case by id (or a prefix of 6 characters or more)."""
        return self.inbox.case(case_id)

    def acknowledge(self, case_id: str, *, by: str, note: str | None = None) -> Case:
        """Someone took the case: it stays in the inbox, no longer unattended."""
        case = self.inbox.case(case_id)
        if case.state == "resolved":
            return case
        return self.inbox.change(case.case_id, "acknowledged", by=by, note=note, at=self.now())

    def resolve(self, case_id: str, *, by: str, note: str | None = None, retry: bool = False) -> Resolved:
        """The cause was dealt with: the case is resolved; with ``retry``, the dead letters behind it are replayed
        first (their original ids, so what already happened is not done twice)."""
        case = self.inbox.case(case_id)
        replayed: list[str] = []
        if retry:
            if not case.dead_letters:
                raise CannotRetry(f"case {case.case_id} has no dead letter left to replay")
            if self.replay is None:
                raise CannotRetry("dead letters can only be replayed on RabbitMQ")
            by_actor: dict[str, list[str]] = {}
            for actor, message_id in case.dead_letters:
                by_actor.setdefault(actor, []).append(message_id)
            for actor, message_ids in sorted(by_actor.items()):
                replayed += self.replay(actor, message_ids)
            self.inbox.replayed(case.case_id, replayed, at=self.now())
        return Resolved(self.inbox.change(case.case_id, "resolved", by=by, note=note, at=self.now()), tuple(replayed))
