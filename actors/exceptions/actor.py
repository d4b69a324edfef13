"""Exceptions as an operating model: every dead letter of a pattern actor becomes a
``hub.exception.raised.v1`` event routed to the owner of that workflow (finance, PMO, records
management, platform team), on the topic exchange for alerting, and every case raised, by a dead letter or by
an actor itself, is kept in the exception inbox (:mod:`actors.exceptions.store`) until someone resolves it.

A message dead-lettered because Entra ID or DocuSign refused the hub's own sign-in
(:class:`~hub.errors.SignInRefused`) is the platform team's, whatever the workflow: the settings or the app
registration need fixing, then the dead letters are replayed. One whose prerequisite never appeared within the
hub's horizon (:class:`~hub.errors.NotYet`: a workspace never provisioned, a project the ERP never created) is a
``<actor>.prerequisite_missing`` case for the workflow's owner, naming what is missing; once it exists, the dead
letter is replayed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from actors.exceptions.store import ExceptionInbox, Raised
from hub.actor import EXCEPTION_RAISED, ActorContext, ActorSpec, DeadLetter, Emitting
from hub.errors import NotYet, SignInRefused

#: The actor told of every other actor's dead letters.
SPEC = ActorSpec(name="exceptions", dead_letters_to=None)
#: The actor keeping every case raised in the inbox.
INBOX_SPEC = ActorSpec(name="exception_inbox", triggers=(EXCEPTION_RAISED,))
#: Who fixes a refused sign-in, and the kind of its case.
PLATFORM_OWNER = "platform_team"
SIGN_IN_REFUSED = "platform.sign_in_refused"
_NAMESPACE = uuid.UUID("5b0e6c1e-8f2a-4b39-9a57-3c2f0d7e4a11")


def exception_case(message: Mapping[str, Any], why: str, error: str) -> dict[str, Any]:
    """What the case of one dead letter says (pure): its id, kind, subject, detail and project."""
    options = message.get("options") or {}
    failed = options.get("hub_event") or {}
    # The project: the event's partition key names it (``project:CODE``) where the subject is something else (an
    # envelope's id); else the subject.
    key = str(failed.get("partitionkey") or "")
    project = key.removeprefix("project:") if key.startswith("project:") else failed.get("subject")
    subject = project or failed.get("id") or message.get("message_id", "")
    refused = error.startswith(f"{SignInRefused.__name__}:")  # the dead letter's recorded error names its type
    missing = error.startswith(f"{NotYet.__name__}:")
    actor = message.get("actor_name", "unknown")
    return {
        "id": str(uuid.uuid5(_NAMESPACE, str(message.get("message_id", "")))),
        "kind": SIGN_IN_REFUSED if refused else f"{actor}.prerequisite_missing" if missing else f"{actor}.dead_letter",
        "subject": str(subject),
        "detail": f"{why}: {error}"[:2000],
        "project_code": str(project) if project else None,
        "event_id": failed.get("id"),
        "event_type": failed.get("type"),
    }


def raised_of(data: Mapping[str, Any], *, actor: str | None = None, message_id: str | None = None) -> Raised:
    """The inbox's record of one ``hub.exception.raised.v1`` (its decoded data), with the dead letter behind it."""
    project = data.get("project") or {}
    at: datetime = data["raised_at"]
    return Raised(exception_id=str(data["exception_id"]), owner=str(data["owner"]), kind=str(data["kind"]),
                  subject=str(data["subject"]), severity=str(data["severity"]), detail=str(data["detail"]), at=at,
                  project_code=project.get("code"), event_id=data.get("event_id"), event_type=data.get("event_type"),
                  actor=actor, message_id=message_id)


class ExceptionRouter:
    """Raises the exception event of each dead letter for the owner of the actor that gave up, and keeps the case
    in the inbox with the dead letter to replay."""

    spec = SPEC

    def __init__(self, owners: Mapping[str, str], *, default_owner: str = "platform_team",
                 inbox: ExceptionInbox | None = None) -> None:
        self.owners = dict(owners)
        self.default_owner = default_owner
        self.inbox = inbox

    def handle_dead_letter(self, letter: DeadLetter, context: Emitting) -> None:
        """Keep the dead letter's case in the inbox, then route it to its owner."""
        case = exception_case(letter.message, letter.why, letter.error)
        owner = PLATFORM_OWNER if case["kind"] == SIGN_IN_REFUSED else \
            self.owners.get(str(letter.message.get("actor_name")), self.default_owner)
        data: dict[str, Any] = {
            "exception_id": case["id"], "owner": owner, "kind": case["kind"], "severity": "high",
            "subject": case["subject"], "detail": case["detail"],
            "project": {"code": case["project_code"], "erp_id": None, "workspace_id": None}
            if case["project_code"] else None,
            "event_id": case["event_id"], "event_type": case["event_type"], "raised_at": context.now(),
        }
        if self.inbox is not None:  # first, with the dead letter: the inbox actor's copy then changes nothing
            self.inbox.record(raised_of(data, actor=str(letter.message.get("actor_name")),
                                        message_id=str(letter.message.get("message_id"))))
        context.emit(EXCEPTION_RAISED, data, id=case["id"], subject=case["subject"])


class InboxRecorder:
    """Keeps every ``hub.exception.raised.v1`` in the inbox: the cases actors raise themselves (a label the tenant
    does not publish, an unreadable column, ...) and, again, those of dead letters (already there: unchanged)."""

    spec = INBOX_SPEC

    def __init__(self, inbox: ExceptionInbox, *, spec: ActorSpec = INBOX_SPEC) -> None:
        self.inbox, self.spec = inbox, spec

    def handle(self, context: ActorContext) -> None:
        """Record the case."""
        self.inbox.record(raised_of(context.data))
