"""The DocuSign simulator's envelopes: the request body of a new envelope (DocuSign's camelCase names), the
envelopes with their documents' bytes, and the views DocuSign answers of them.

``GET envelope`` carries recipients, custom fields and documents only when ``include=`` names them, as
DocuSign's does; their own routes (``/recipients``, ``/custom_fields``, ``/documents``) always do. An
envelope created without ``status`` is a draft (``created``); ``status: sent`` sends it.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulators.kit.errors import SimError

#: What ``include=`` may add to ``GET envelope``, and the envelope member each one adds.
INCLUDES = {"recipients": "recipients", "custom_fields": "customFields", "documents": "envelopeDocuments"}

_NO_ENVELOPE = "The envelope specified either does not exist or you have no rights to it."
_INVALID = "The request contained at least one invalid parameter."


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
    #: ``sent`` sends the envelope; left out (or ``created``), it is a draft.
    status: str | None = None
    transaction_id: str | None = Field(default=None, alias="transactionId")


class EnvelopeUpdateIn(_In):
    """The body of ``PUT .../envelopes/{id}``: the simulator takes only ``{"status": "sent"}`` (send a draft)."""

    status: str | None = None


def timestamp(moment: datetime) -> str:
    """``moment`` as DocuSign writes instants (UTC, milliseconds, ``Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def no_envelope() -> SimError:
    """DocuSign's answer for an envelope that does not exist in the account (400, not 404)."""
    return SimError(400, "ENVELOPE_DOES_NOT_EXIST", _NO_ENVELOPE)


def invalid_parameter(detail: str) -> SimError:
    """DocuSign's ``INVALID_REQUEST_PARAMETER`` answer."""
    return SimError(400, "INVALID_REQUEST_PARAMETER", f"{_INVALID} {detail}")


class Envelopes:
    """Envelopes and their document bytes, under one lock."""

    def __init__(self, clock: Callable[[], datetime] | None) -> None:
        self.lock = threading.Lock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.documents: dict[tuple[str, str], bytes] = {}

    def now(self) -> str:
        """The clock's time as DocuSign writes it."""
        return timestamp(self._clock())

    def reset(self) -> None:
        """Forget every envelope."""
        with self.lock:
            self.envelopes.clear()
            self.documents.clear()

    def create(self, account_id: str, body: EnvelopeIn) -> dict[str, Any]:
        """A new envelope: a draft, or ``sent`` to its signers; 400 when a document is not base64, ids repeat
        or the status is neither."""
        if body.status not in (None, "created", "sent"):
            raise invalid_parameter(f"An envelope can be created with status 'created' or 'sent', not {body.status!r}.")
        ids = [d.document_id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise invalid_parameter("documentId values must be unique.")
        blobs: dict[str, bytes] = {}
        for document in body.documents:
            try:
                blobs[document.document_id] = base64.b64decode(document.document_base64, validate=True)
            except (binascii.Error, ValueError):
                raise invalid_parameter(f"Document {document.document_id}: documentBase64 is not base64.") from None
        fields = [{"fieldId": str(i + 1), "name": f.name, "show": "true", "required": "false", "value": f.value}
                  for i, f in enumerate(body.custom_fields.text_custom_fields)]
        first_class = next((d.document_class for d in body.documents if d.document_class), None)
        if first_class and not any(f["name"] == "document_class" for f in fields):
            fields.append({"fieldId": str(len(fields) + 1), "name": "document_class", "show": "true",
                           "required": "false", "value": first_class})
        envelope_id = str(uuid.uuid4())
        now = self.now()
        sent = body.status == "sent"
        status = "sent" if sent else "created"
        envelope = {
            "envelopeId": envelope_id,
            "accountId": account_id,
            "status": status,
            "emailSubject": body.email_subject,
            "transactionId": body.transaction_id,
            "createdDateTime": now,
            "sentDateTime": now if sent else None,
            "deliveredDateTime": None,
            "statusChangedDateTime": now,
            "completedDateTime": None,
            "customFields": {"textCustomFields": fields, "listCustomFields": []},
            "recipients": {
                "signers": [{
                    "recipientId": s.recipient_id or str(i + 1),
                    "routingOrder": s.routing_order or str(i + 1),
                    "status": status, "name": s.name, "email": s.email, "roleName": s.role_name,
                    "signedDateTime": None,
                } for i, s in enumerate(body.recipients.signers)],
                "carbonCopies": [],
                "recipientCount": str(len(body.recipients.signers)),
                "currentRoutingOrder": "1",
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
        """One envelope (of ``account_id``, when given) as the simulator keeps it; 400 when unknown."""
        with self.lock:
            return _copy(self._held(envelope_id, account_id))

    def view(self, account_id: str, envelope_id: str, include: Collection[str] = ()) -> dict[str, Any]:
        """``GET envelope``: the envelope, with recipients, custom fields and documents only when included."""
        envelope = self.envelope(envelope_id, account_id)
        return envelope_view(envelope, include)

    def recipients(self, account_id: str, envelope_id: str) -> dict[str, Any]:
        """``GET .../recipients``."""
        recipients: dict[str, Any] = self.envelope(envelope_id, account_id)["recipients"]
        return recipients

    def custom_fields(self, account_id: str, envelope_id: str) -> dict[str, Any]:
        """``GET .../custom_fields``."""
        fields: dict[str, Any] = self.envelope(envelope_id, account_id)["customFields"]
        return fields

    def document_list(self, account_id: str, envelope_id: str) -> dict[str, Any]:
        """``GET .../documents``: the envelope's documents (and, once sent, its certificate of completion)."""
        envelope = self.envelope(envelope_id, account_id)
        return {"envelopeId": envelope_id, "envelopeDocuments": documents_view(envelope)}

    def document(self, account_id: str, envelope_id: str, document_id: str, *, certificate: bool = True) -> bytes:
        """The bytes of one document, of them all (``combined``, with the certificate of completion of a sent
        envelope unless ``certificate`` is false, as DocuSign's) or of the certificate; 400 when unknown."""
        envelope = self.envelope(envelope_id, account_id)
        order = [d["documentId"] for d in envelope["envelopeDocuments"]]
        with self.lock:
            blobs = {key: self.documents[(envelope_id, key)] for key in order}
        if document_id == "combined":
            # The simulator does not merge PDFs: the documents' bytes in order, then the certificate.
            combined = b"".join(blobs[key] for key in order)
            return combined + (_certificate(envelope) if certificate and envelope["status"] != "created" else b"")
        if document_id == "certificate" and envelope["status"] != "created":
            return _certificate(envelope)
        if document_id not in blobs:
            raise SimError(400, "DOCUMENT_DOES_NOT_EXIST", "The document specified was not found.")
        return blobs[document_id]

    def listing(self, account_id: str, *, since: datetime | None, until: datetime | None,
                statuses: Collection[str], envelope_ids: Collection[str] | None,
                transaction_ids: Collection[str] | None, include: Collection[str] = ()) -> list[dict[str, Any]]:
        """The account's envelopes whose status changed in ``[since, until]`` and match the filters, oldest
        change first."""
        with self.lock:
            found = [_copy(e) for e in self.envelopes.values() if e["accountId"] == account_id]
        chosen = []
        for envelope in sorted(found, key=lambda e: (e["statusChangedDateTime"], e["envelopeId"])):
            changed = datetime.fromisoformat(envelope["statusChangedDateTime"])
            if ((since is not None and changed < since) or (until is not None and changed > until)
                    or (statuses and envelope["status"] not in statuses)
                    or (envelope_ids is not None and envelope["envelopeId"] not in envelope_ids)
                    or (transaction_ids is not None and envelope["transactionId"] not in transaction_ids)):
                continue
            chosen.append(envelope_view(envelope, include))
        return chosen

    def _held(self, envelope_id: str, account_id: str | None = None) -> dict[str, Any]:
        """The envelope itself (the caller holds the lock); 400 when unknown."""
        envelope = self.envelopes.get(envelope_id)
        if envelope is None or (account_id is not None and envelope["accountId"] != account_id):
            raise no_envelope()
        return envelope

    def send(self, envelope_id: str, account_id: str) -> tuple[dict[str, Any], bool]:
        """A draft is sent (``PUT envelope {"status": "sent"}``); returns the envelope and whether it changed."""
        with self.lock:
            envelope = self._held(envelope_id, account_id)
            if envelope["status"] == "sent":
                return _copy(envelope), False
            if envelope["status"] != "created":
                raise SimError(400, "ENVELOPE_CANNOT_CORRECT_INVALID_STATE",
                               f"The envelope is {envelope['status']}: only a draft can be sent.")
            now = self.now()
            for signer in envelope["recipients"]["signers"]:
                signer["status"] = "sent"
            envelope.update(status="sent", sentDateTime=now, statusChangedDateTime=now)
            return _copy(envelope), True

    def deliver(self, envelope_id: str) -> dict[str, Any]:
        """Every signer opens a ``sent`` envelope: it is ``delivered``; 409 in any other status."""
        with self.lock:
            envelope = self._held(envelope_id)
            if envelope["status"] != "sent":
                raise SimError(409, "ENVELOPE_INVALID_STATUS", f"envelope is {envelope['status']}, not sent")
            now = self.now()
            for signer in envelope["recipients"]["signers"]:
                signer.update(status="delivered", deliveredDateTime=now)
            envelope.update(status="delivered", deliveredDateTime=now, statusChangedDateTime=now)
            return _copy(envelope)

    def sign(self, envelope_id: str) -> dict[str, Any]:
        """Every signer signs a ``sent`` or ``delivered`` envelope: it is ``completed``; 409 in any other
        status."""
        with self.lock:
            envelope = self._held(envelope_id)
            if envelope["status"] not in ("sent", "delivered"):
                raise SimError(409, "ENVELOPE_INVALID_STATUS", f"envelope is {envelope['status']}, not sent")
            now = self.now()
            for signer in envelope["recipients"]["signers"]:
                signer.update(status="completed", signedDateTime=now,
                              deliveredDateTime=signer.get("deliveredDateTime") or now)
            envelope.update(status="completed", completedDateTime=now, statusChangedDateTime=now,
                            deliveredDateTime=envelope["deliveredDateTime"] or now)
            return _copy(envelope)


def envelope_view(envelope: dict[str, Any], include: Collection[str] = ()) -> dict[str, Any]:
    """The envelope as ``GET envelope`` answers it: the ``*Uri`` links, and the members ``include`` names."""
    base = f"/envelopes/{envelope['envelopeId']}"
    view = {key: value for key, value in envelope.items()
            if key not in {"recipients", "customFields", "envelopeDocuments", "transactionId"} and value is not None}
    view.update(envelopeUri=base, recipientsUri=f"{base}/recipients", customFieldsUri=f"{base}/custom_fields",
                documentsUri=f"{base}/documents", documentsCombinedUri=f"{base}/documents/combined",
                certificateUri=f"{base}/documents/certificate")
    if envelope.get("transactionId"):
        view["transactionId"] = envelope["transactionId"]
    if "recipients" in include:
        view["recipients"] = envelope["recipients"]
    if "custom_fields" in include:
        view["customFields"] = envelope["customFields"]
    if "documents" in include:
        view["envelopeDocuments"] = documents_view(envelope)
    return view


def documents_view(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """``envelopeDocuments`` as DocuSign lists them: without the simulator's ``documentClass``, with their
    ``uri``, and the certificate of completion (``type: summary``) once the envelope is sent."""
    base = f"/envelopes/{envelope['envelopeId']}/documents"
    listed = [{**{k: v for k, v in d.items() if k != "documentClass"}, "uri": f"{base}/{d['documentId']}"}
              for d in envelope["envelopeDocuments"]]
    if envelope["status"] != "created":
        listed.append({"documentId": "certificate", "name": "Summary", "type": "summary", "order": "999",
                       "uri": f"{base}/certificate"})
    return listed


def _certificate(envelope: dict[str, Any]) -> bytes:
    return f"%PDF-1.7\n% certificate of completion, envelope {envelope['envelopeId']}\n%%EOF\n".encode()


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(record))
    return copied
