"""A stateful stand-in for DocuSign eSignature (REST v2.1 subset) with Connect (JSON SIM) notifications.

In-process: ``create_app(DocuSignSimConfig(...))`` gives a FastAPI app (serve it with uvicorn or
``hub.ingress.server.serve_in_thread`` in tests); standalone: ``run(host, port, config)``.

API (``Authorization: Bearer <token>`` on every call, 401 JSON otherwise; errors are
``{"errorCode": <code>, "message": ...}`` as DocuSign answers them)::

    POST /restapi/v2.1/accounts/{accountId}/envelopes                        -> 201 {"envelopeId", "status": "sent"}
    GET  /restapi/v2.1/accounts/{accountId}/envelopes/{envelopeId}           -> the envelope
    GET  /restapi/v2.1/accounts/{accountId}/envelopes/{envelopeId}/documents/{documentId}  -> application/pdf

An envelope is created with ``documents`` (``documentId``, ``name``, ``documentBase64``, and the
simulator's ``documentClass``), ``recipients.signers`` (``name``, ``email``, ``roleName``...) and
``customFields.textCustomFields``; when no ``document_class`` field is given, the first document's
class is added as one (that is where the hub reads it).

Admin endpoints under ``/_sim/`` need no token, so bind the simulator to loopback::

    POST /_sim/envelopes/{envelopeId}/sign   every signer signs: status ``completed``, Connect notified
    GET|PUT /_sim/faults (see connectors.faults)   POST /_sim/reset
    GET /_sim/deliveries   POST /_sim/deliveries/flush?timeout_s=10

On completion a Connect ``envelope-completed`` message (JSON SIM, envelope summary with recipients,
custom fields and documents) is POSTed to ``ConnectConfig.url`` with ``X-DocuSign-Signature-1`` =
base64(HMAC-SHA256(hmac_key, raw body)), from one background thread; any answer but 2xx, and any
network error, is retried with exponential backoff until ``attempts`` run out. Imports nothing of
the hub runtime: the simulator stands for another company's system.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from connectors.faults import FaultInjector, FaultMiddleware, FaultPlan
from connectors.sim_outbox import Outbox, delivery_routes, outbox_lifespan

__all__ = ["ConnectConfig", "ConnectOutbox", "DocuSignSimConfig", "connect_signature", "create_app", "run"]

_API = "/restapi/v2.1/accounts/{account_id}/envelopes"


@dataclass(frozen=True)
class ConnectConfig:
    """Where and how Connect notifications are posted."""

    #: The hub's DocuSign webhook endpoint.
    url: str
    #: The Connect HMAC key the hub also knows (used as UTF-8 bytes, as DocuSign does).
    hmac_key: str
    #: Delivery attempts per notification, the first included.
    attempts: int = 5
    #: First retry delay; doubled on each further attempt, never past ``max_backoff_s``.
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    #: Per-attempt HTTP timeout.
    timeout_s: float = 5.0


@dataclass(frozen=True)
class DocuSignSimConfig:
    """How a simulated DocuSign account behaves: its API token, faults and where Connect posts."""

    token: str = "docusign-sim-token"  # noqa: S105 - a simulator default, not a secret
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    #: ``None``: completions are not notified anywhere.
    connect: ConnectConfig | None = None
    clock: Callable[[], datetime] | None = None


class SimError(Exception):
    """An API error answered as ``{"errorCode", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- request bodies (DocuSign's camelCase names) ---------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class DocumentIn(_In):
    document_id: str = Field(alias="documentId")
    name: str
    document_base64: str = Field(alias="documentBase64")
    #: The simulator's own field: SOW, contract, change order, engagement letter...
    document_class: str | None = Field(default=None, alias="documentClass")


class SignerIn(_In):
    name: str
    email: str
    recipient_id: str | None = Field(default=None, alias="recipientId")
    routing_order: str | None = Field(default=None, alias="routingOrder")
    role_name: str | None = Field(default=None, alias="roleName")


class RecipientsIn(_In):
    signers: list[SignerIn] = Field(min_length=1)


class TextFieldIn(_In):
    name: str
    value: str = ""


class CustomFieldsIn(_In):
    text_custom_fields: list[TextFieldIn] = Field(default_factory=list, alias="textCustomFields")


class EnvelopeIn(_In):
    email_subject: str = Field(default="Please DocuSign", alias="emailSubject")
    documents: list[DocumentIn] = Field(min_length=1)
    recipients: RecipientsIn
    custom_fields: CustomFieldsIn = Field(default_factory=CustomFieldsIn, alias="customFields")


# -- helpers ------------------------------------------------------------------------------------


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect_signature(hmac_key: str, body: bytes) -> str:
    """The ``X-DocuSign-Signature-N`` value: base64 HMAC-SHA256 of the raw body under ``hmac_key``."""
    return base64.b64encode(hmac.new(hmac_key.encode("utf-8"), body, hashlib.sha256).digest()).decode()


class _State:
    """Envelopes and their document bytes, under one lock."""

    def __init__(self, clock: Callable[[], datetime] | None) -> None:
        self.lock = threading.Lock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.documents: dict[tuple[str, str], bytes] = {}

    def now(self) -> str:
        return _timestamp(self._clock())

    def reset(self) -> None:
        with self.lock:
            self.envelopes.clear()
            self.documents.clear()

    def create(self, account_id: str, body: EnvelopeIn) -> dict[str, Any]:
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
        with self.lock:
            envelope = self.envelopes.get(envelope_id)
            if envelope is None or (account_id is not None and envelope["accountId"] != account_id):
                raise SimError(404, "ENVELOPE_DOES_NOT_EXIST", f"envelope {envelope_id} does not exist")
            return _copy(envelope)

    def document(self, account_id: str, envelope_id: str, document_id: str) -> bytes:
        self.envelope(envelope_id, account_id)
        with self.lock:
            blob = self.documents.get((envelope_id, document_id))
        if blob is None:
            raise SimError(404, "DOCUMENT_DOES_NOT_EXIST", f"document {document_id} does not exist")
        return blob

    def sign(self, envelope_id: str) -> dict[str, Any]:
        with self.lock:
            envelope = self.envelopes.get(envelope_id)
            if envelope is None:
                raise SimError(404, "ENVELOPE_DOES_NOT_EXIST", f"envelope {envelope_id} does not exist")
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


def connect_message(envelope: dict[str, Any], *, generated_at: str) -> dict[str, Any]:
    """The Connect JSON SIM ``envelope-completed`` message for a completed envelope."""
    summary = {key: value for key, value in envelope.items() if key not in {"envelopeId", "accountId"}}
    summary["envelopeDocuments"] = [{k: v for k, v in d.items() if k != "documentClass"}
                                    for d in envelope["envelopeDocuments"]]
    summary["envelopeDocuments"].append(
        {"documentId": "certificate", "name": "Summary", "type": "summary", "order": "999"})
    return {
        "event": "envelope-completed",
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{envelope['accountId']}/envelopes/{envelope['envelopeId']}",
        "retryCount": 0,
        "configurationId": 1,
        "generatedDateTime": generated_at,
        "data": {"accountId": envelope["accountId"], "envelopeId": envelope["envelopeId"],
                 "envelopeSummary": summary},
    }


class ConnectOutbox(Outbox):
    """Posts queued Connect messages in order from one daemon thread and keeps the delivery log."""

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(timeout_s=config.timeout_s, thread_name="docusign-sim-connect")
        self.config = config

    def enqueue(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for delivery; returns at once."""
        self._enqueue(message, {"envelope_id": message["data"]["envelopeId"], "event": message["event"]})

    def _deliver(self, client: httpx.Client, message: dict[str, Any], entry: dict[str, Any]) -> None:
        for attempt in range(1, self.config.attempts + 1):
            # Like Connect, a retry says so in retryCount: the body (and its HMAC) change per attempt.
            body = json.dumps({**message, "retryCount": attempt - 1}, separators=(",", ":")).encode()
            headers = {"content-type": "application/json; charset=utf-8",
                       "x-docusign-signature-1": connect_signature(self.config.hmac_key, body)}
            status: int | None = None
            error: str | None = None
            try:
                status = client.post(self.config.url, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if self._record(entry, attempt, status, error):
                return
            wait = min(self.config.backoff_s * 2 ** (attempt - 1), self.config.max_backoff_s)
            if attempt == self.config.attempts or self._stop.wait(wait):
                self._give_up(entry)
                return


class _Api:
    """The routes, bound to one simulator's state and outbox."""

    def __init__(self, config: DocuSignSimConfig, state: _State, outbox: ConnectOutbox | None) -> None:
        self.config, self.state, self.outbox = config, state, outbox

    def authorise(self, request: Request) -> None:
        """Refuse a missing or wrong bearer token with 401."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.token.encode()):
            raise SimError(401, "AUTHORIZATION_INVALID_TOKEN", "a valid bearer token is required")

    def router(self) -> APIRouter:
        """The ``/restapi/v2.1`` routes."""
        api = APIRouter(prefix=_API, dependencies=[Depends(self.authorise)])
        state = self.state

        @api.post("", status_code=201)
        async def create_envelope(account_id: str, body: EnvelopeIn) -> dict[str, Any]:
            envelope = state.create(account_id, body)
            return {"envelopeId": envelope["envelopeId"], "status": envelope["status"],
                    "statusDateTime": envelope["statusChangedDateTime"],
                    "uri": f"/envelopes/{envelope['envelopeId']}"}

        @api.get("/{envelope_id}")
        async def get_envelope(account_id: str, envelope_id: str) -> dict[str, Any]:
            return state.envelope(envelope_id, account_id)

        @api.get("/{envelope_id}/documents/{document_id}")
        async def get_document(account_id: str, envelope_id: str, document_id: str) -> Response:
            return Response(state.document(account_id, envelope_id, document_id), media_type="application/pdf")

        return api

    def admin(self, injector: FaultInjector) -> APIRouter:
        """The ``/_sim`` routes (no token; ``/_sim/faults`` is served by the fault middleware)."""
        admin = APIRouter(prefix="/_sim", tags=["simulator admin"])

        @admin.post("/envelopes/{envelope_id}/sign")
        async def sign(envelope_id: str) -> dict[str, Any]:
            envelope = self.state.sign(envelope_id)
            if self.outbox is not None:
                self.outbox.enqueue(connect_message(envelope, generated_at=self.state.now()))
            return envelope

        @admin.post("/reset")
        async def reset() -> dict[str, Any]:
            self.state.reset()
            if self.outbox is not None:
                self.outbox.reset()
            injector.set(self.config.faults)
            return {"reset": True}

        admin.include_router(delivery_routes(self.outbox))
        return admin


def create_app(config: DocuSignSimConfig | None = None) -> FastAPI:
    """The simulated DocuSign account as a FastAPI app; ``app.state`` holds ``outbox`` and ``faults``."""
    config = config or DocuSignSimConfig()
    state = _State(config.clock)
    outbox = ConnectOutbox(config.connect) if config.connect else None
    injector = FaultInjector(config.faults)
    routes = _Api(config, state, outbox)

    app = FastAPI(title="DocuSign eSignature simulator", version="1", lifespan=outbox_lifespan(outbox))
    app.state.outbox, app.state.faults = outbox, injector
    app.include_router(routes.router())
    app.include_router(routes.admin(injector))
    app.add_middleware(FaultMiddleware, injector=injector)

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"errorCode": code, "message": message}, status_code=status, headers=headers)

    @app.exception_handler(SimError)
    async def sim_error(_: Request, exc: SimError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, {"www-authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return error(400, "INVALID_REQUEST_BODY", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "HTTP_ERROR", str(exc.detail), dict(exc.headers or {}))

    return app


def run(host: str = "127.0.0.1", port: int = 8093, config: DocuSignSimConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``/_sim`` endpoints are open: keep ``host`` on loopback)."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
