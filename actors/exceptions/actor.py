"""Exceptions as an operating model: every dead letter of a pattern actor becomes a
``hub.exception.raised.v1`` event routed to the owner of that workflow (finance, PMO, records
management, platform team), on the topic exchange for alerting.

A message dead-lettered because Entra ID or DocuSign refused the hub's own sign-in
(:class:`~hub.errors.SignInRefused`) is the platform team's, whatever the workflow: the settings or the app
registration need fixing, then the dead letters are replayed. One whose prerequisite never appeared within the
hub's horizon (:class:`~hub.errors.NotYet`: a workspace never provisioned, a project the ERP never created) is a
``<actor>.prerequisite_missing`` case for the workflow's owner, naming what is missing; once it exists, the dead
letter is replayed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from hub.actor import ActorSpec, DeadLetter, Emitting
from hub.errors import NotYet, SignInRefused

#: The actor told of every other actor's dead letters.
SPEC = ActorSpec(name="exceptions", dead_letters_to=None)
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


class ExceptionRouter:
    """Raises the exception event of each dead letter for the owner of the actor that gave up."""

    spec = SPEC

    def __init__(self, owners: Mapping[str, str], *, default_owner: str = "platform_team") -> None:
        self.owners = dict(owners)
        self.default_owner = default_owner

    def handle_dead_letter(self, letter: DeadLetter, context: Emitting) -> None:
        """Route the dead letter's case to its owner."""
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
        context.emit("hub.exception.raised.v1", data, id=case["id"], subject=case["subject"])
