"""A stateful stand-in for DocuSign eSignature (REST v2.1 subset) with Connect (JSON SIM) notifications.

In-process: ``create_app(DocuSignSimConfig(...))`` gives a FastAPI app (serve it with uvicorn or
any ASGI server in a thread, as :mod:`simulators.sandbox` does); standalone: ``run(host, port, config)``.

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
    GET|PUT /_sim/faults (see simulators.kit.faults)   POST /_sim/reset
    GET /_sim/deliveries   POST /_sim/deliveries/flush?timeout_s=10

On completion a Connect ``envelope-completed`` message is POSTed to ``ConnectConfig.url``, HMAC-signed
(see :mod:`simulators.docusign.connect`), and retried on Connect's schedule until acknowledged. Envelopes are
kept in :mod:`simulators.docusign.envelopes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.docusign.connect import ConnectConfig, ConnectOutbox, connect_message
from simulators.docusign.envelopes import EnvelopeIn, Envelopes
from simulators.kit.app import ErrorDialect, bearer_guard, serve, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan

__all__ = ["ConnectConfig", "DocuSignSimConfig", "create_app", "run"]

_API = "/restapi/v2.1/accounts/{account_id}/envelopes"


@dataclass(frozen=True)
class DocuSignSimConfig:
    """How a simulated DocuSign account behaves: its API token, faults and where Connect posts."""

    token: str = "docusign-sim-token"  # noqa: S105 - a simulator default, not a secret
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    #: ``None``: completions are not notified anywhere.
    connect: ConnectConfig | None = None
    clock: Callable[[], datetime] | None = None


def _render(exc: SimError) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else exc.headers
    return JSONResponse({"errorCode": exc.code, "message": exc.message}, status_code=exc.status,
                        headers=headers or None)


def _invalid(exc: RequestValidationError) -> SimError:
    details = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
    return SimError(400, "INVALID_REQUEST_BODY", details)


def _http_error(exc: StarletteHTTPException) -> SimError:
    return SimError(exc.status_code, "HTTP_ERROR", str(exc.detail), headers=dict(exc.headers or {}))


#: ``{"errorCode": <code>, "message": ...}``, as DocuSign answers.
DOCUSIGN_ERRORS = ErrorDialect(render=_render, invalid=_invalid, http_error=_http_error)


def _unauthorised() -> SimError:
    return SimError(401, "AUTHORIZATION_INVALID_TOKEN", "a valid bearer token is required")


def _api(config: DocuSignSimConfig, envelopes: Envelopes) -> APIRouter:
    """The ``/restapi/v2.1`` routes."""
    api = APIRouter(prefix=_API, dependencies=[Depends(bearer_guard(config.token, _unauthorised))])

    @api.post("", status_code=201)
    async def create_envelope(account_id: str, body: EnvelopeIn) -> dict[str, Any]:
        envelope = envelopes.create(account_id, body)
        return {"envelopeId": envelope["envelopeId"], "status": envelope["status"],
                "statusDateTime": envelope["statusChangedDateTime"],
                "uri": f"/envelopes/{envelope['envelopeId']}"}

    @api.get("/{envelope_id}")
    async def get_envelope(account_id: str, envelope_id: str) -> dict[str, Any]:
        return envelopes.envelope(envelope_id, account_id)

    @api.get("/{envelope_id}/documents/{document_id}")
    async def get_document(account_id: str, envelope_id: str, document_id: str) -> Response:
        return Response(envelopes.document(account_id, envelope_id, document_id), media_type="application/pdf")

    return api


def _admin(envelopes: Envelopes, outbox: ConnectOutbox | None) -> APIRouter:
    """DocuSign's own ``/_sim`` route: ``POST /envelopes/{id}/sign``, every signer signs (Connect notified)."""
    admin = APIRouter()

    @admin.post("/envelopes/{envelope_id}/sign")
    async def sign(envelope_id: str) -> dict[str, Any]:
        envelope = envelopes.sign(envelope_id)
        if outbox is not None:
            outbox.enqueue(connect_message(envelope, generated_at=envelopes.now()))
        return envelope

    return admin


def create_app(config: DocuSignSimConfig | None = None) -> FastAPI:
    """The simulated DocuSign account as a FastAPI app; ``app.state`` holds ``outbox`` and ``faults``."""
    config = config or DocuSignSimConfig()
    envelopes = Envelopes(config.clock)
    outbox = ConnectOutbox(config.connect) if config.connect else None
    return simulator_app("DocuSign eSignature simulator", api=_api(config, envelopes), admin=_admin(envelopes, outbox),
                         dialect=DOCUSIGN_ERRORS, faults=FaultInjector(config.faults), outbox=outbox,
                         resets=(envelopes.reset,))


def run(host: str = "127.0.0.1", port: int = 8093, config: DocuSignSimConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``/_sim`` endpoints are open: keep ``host`` on loopback)."""
    serve(create_app(config), host=host, port=port)
