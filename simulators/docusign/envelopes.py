"""The DocuSign simulator's envelopes: the request body of a new envelope (DocuSign's camelCase names) and
the envelopes with their documents' bytes, kept as DocuSign answers them."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulators.kit.errors import SimError


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class DocumentIn(_In):
    """One document of a new envelope, its bytes in base64."""

    document_id: str = Field(alias="documentId")
    name: str
    document_base64: str = Field(alias="documentBase64")
    #: The simulator's own field: SOW, contract, change order, engagement letter...
    document_class: str | None = Field(default=None, alias="documentClass")


class SignerIn(_In):
    """One signer of a new envelope."""

    name: str
    email: str
    recipient_id: str | None = Field(default=None, alias="recipientId")
    routing_order: str | None = Field(default=None, alias="routingOrder")
    role_name: str | None = Field(default=None, alias="roleName")


class RecipientsIn(_In):
    """The recipients of a new envelope: its signers."""

    signers: list[SignerIn] = Field(min_length=1)


class TextFieldIn(_In):
    """One text custom field of a new envelope."""

    name: str
    value: str = ""


class CustomFieldsIn(_In):
    """The custom fields of a new envelope."""

    text_custom_fields: list[TextFieldIn] = Field(default_factory=list, alias="textCustomFields")


class EnvelopeIn(_In):
    """The body of ``POST .../envelopes``; fields DocuSign takes but the simulator does not are ignored."""

    email_subject: str = Field(default="Please DocuSign", alias="emailSubject")
    documents: list[DocumentIn] = Field(min_length=1)
    recipients: RecipientsIn
    custom_fields: CustomFieldsIn = Field(default_factory=CustomFieldsIn, alias="customFields")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelopes:
    """Envelopes and their document bytes, under one lock."""

    def __init__(self, clock: Callable[[], datetime] | None) -> None:
        self.lock = threading.Lock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.documents: dict[tuple[str, str], bytes] = {}

    def now(self) -> str:
        """The clock's time as DocuSign writes it."""
        return _timestamp(self._clock())

    def reset(self) -> None:
        """Forget every envelope."""
        with self.lock:
            self.envelopes.clear()
            self.documents.clear()

    def create(self, account_id: str, body: EnvelopeIn) -> dict[str, Any]:
        """A new envelope, ``sent`` to its signers; 400 when a document is not base64 or ids repeat."""
        ids = [d.document_id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise SimError(400, "INVALID_REQUEST_PARAMETER", "documentId values must be unique")
        blobs: dict[str, bytes] = {}
        for document in body.documents:
            try:
                blobs[document.document_id] = base64.b64decode(document.document_base64, validate=True)
            except (binascii.Error, ValueError):
                raise SimError(400, "INVALID_REQUEST_PARAMETER",
                               f"document {document.document_id}: documentBase64 is not base64") from None
        fields = [{"fieldId": str(i + 1), "name": f.name, "show": "true", "required": "false", "value": f.value}
                  for i, f in enumerate(body.custom_fields.text_custom_fields)]
        first_class = next((d.document_class for d in body.documents if d.document_class), None)
        if first_class and not any(f["name"] == "document_class" for f in fields):
            fields.append({"fieldId": str(len(fields) + 1), "name": "document_class", "show": "true",
                           "required": "false", "value": first_class})
        envelope_id = str(uuid.uuid4())
        now = self.now()
        envelope = {
            "envelopeId": envelope_id,
            "accountId": account_id,
            "status": "sent",
            "emailSubject": body.email_subject,
            "createdDateTime": now,
            "sentDateTime": now,
            "statusChangedDateTime": now,
            "completedDateTime": None,
            "customFields": {"textCustomFields": fields, "listCustomFields": []},
            "recipients": {
                "signers": [{
                    "recipientId": s.recipient_id or str(i + 1),
                    "routingOrder": s.routing_order or str(i + 1),
                    "status": "sent", "name": s.name, "email": s.email, "roleName": s.role_name,
                    "signedDateTime": None,
                } for i, s in enumerate(body.recipients.signers)],
                "carbonCopies": [],
                "recipientCount": str(len(body.recipients.signers)),
            },
            "envelopeDocuments": [{
                "documentId": d.document_id, "documentIdGuid": str(uuid.uuid4()), "name": d.name,
                "type": "content", "order": str(i + 1), "documentClass": d.document_class,
            } for i, d in enumerate(body.documents)],
        }
        with self.lock:
            self.envelopes[envelope_id] = envelope
            for document_id, blob in blobs.items():
                self.documents[(envelope_id, document_id)] = blob
            return _copy(envelope)

    def envelope(self, envelope_id: str, account_id: str | None = None) -> dict[str, Any]:
        """One envelope (of ``account_id``, when given); 404 when unknown."""
        with self.lock:
            return _copy(self._held(envelope_id, account_id))

    def _held(self, envelope_id: str, account_id: str | None = None) -> dict[str, Any]:
        """The envelope itself (the caller holds the lock); 404 when unknown."""
        envelope = self.envelopes.get(envelope_id)
        if envelope is None or (account_id is not None and envelope["accountId"] != account_id):
            raise SimError(404, "ENVELOPE_DOES_NOT_EXIST", f"envelope {envelope_id} does not exist")
        return envelope

    def document(self, account_id: str, envelope_id: str, document_id: str) -> bytes:
        """The bytes of one document of an envelope; 404 when unknown."""
        self.envelope(envelope_id, account_id)
        with self.lock:
            blob = self.documents.get((envelope_id, document_id))
        if blob is None:
            raise SimError(404, "DOCUMENT_DOES_NOT_EXIST", f"document {document_id} does not exist")
        return blob

    def sign(self, envelope_id: str) -> dict[str, Any]:
        """Every signer signs a ``sent`` envelope: it is ``completed``; 409 in any other status."""
        with self.lock:
            envelope = self._held(envelope_id)
            if envelope["status"] != "sent":
                raise SimError(409, "ENVELOPE_INVALID_STATUS", f"envelope is {envelope['status']}, not sent")
            now = self.now()
            for signer in envelope["recipients"]["signers"]:
                signer.update(status="completed", signedDateTime=now, deliveredDateTime=now)
            envelope.update(status="completed", completedDateTime=now, statusChangedDateTime=now)
            return _copy(envelope)


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(record))
    return copied

