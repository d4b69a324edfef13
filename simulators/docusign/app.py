"""A stateful stand-in for DocuSign eSignature (REST v2.1 subset) with Connect (JSON SIM) notifications.

In-process: ``create_app(DocuSignSimConfig(...))`` gives a FastAPI app (serve it with uvicorn or
any ASGI server in a thread, as :mod:`simulators.sandbox` does); standalone: ``run(host, port, config)``.

API under ``/restapi/v2.1/accounts/{accountId}`` (``Authorization: Bearer <token>`` on every call, else 401
``AUTHORIZATION_INVALID_TOKEN`` "The access token provided is expired, revoked or malformed."). The token is the
configured static one, or with ``DocuSignSimConfig.jwt`` only one the JWT grant issued (``POST /oauth/token``,
:mod:`simulators.docusign.oauth`), until it expires. The subset the hub and the ``docusign-esign`` SDK use::

    POST /envelopes                          -> 201 {"envelopeId", "status"}: a draft (``created``) unless
                                                the body says ``"status": "sent"``
    GET  /envelopes?from_date=...            -> {"envelopes": [...], "resultSetSize", ...}; ``from_date`` is
                                                required unless ``envelope_ids`` or ``transaction_ids`` is given;
                                                also ``to_date``, ``status``, ``include``, ``count``,
                                                ``start_position``
    GET  /envelopes/{envelopeId}             -> the envelope; ``include=recipients,custom_fields,documents``
                                                adds ``recipients``, ``customFields``, ``envelopeDocuments``
    PUT  /envelopes/{envelopeId}             -> {"status": "sent"} sends a draft
    GET  /envelopes/{envelopeId}/recipients     GET /envelopes/{envelopeId}/custom_fields
    GET  /envelopes/{envelopeId}/documents   -> {"envelopeId", "envelopeDocuments": [...]}
    GET  /envelopes/{envelopeId}/documents/{documentId|combined|certificate}  -> application/pdf
                                                (``combined`` ends with the certificate unless
                                                ``certificate=false``; the simulator concatenates, it
                                                does not merge PDFs)

Errors are DocuSign's ``{"errorCode": <code>, "message": ...}`` on every route, unknown ones included: an
unknown envelope is 400 ``ENVELOPE_DOES_NOT_EXIST``, a bad parameter 400 ``INVALID_REQUEST_PARAMETER``, a
malformed body 400 ``INVALID_REQUEST_BODY``. Injected faults (``PUT /_sim/faults``) answer the same way: 503
``SERVICE_UNAVAILABLE`` and 429 ``HOURLY_APIINVOCATION_LIMIT_EXCEEDED`` with ``Retry-After``, 500
``UNSPECIFIED_ERROR``.

An envelope is created with ``documents`` (``documentId``, ``name``, ``documentBase64``, and the
simulator's ``documentClass``), ``recipients.signers`` (``name``, ``email``, ``roleName``...) and
``customFields.textCustomFields``; when no ``document_class`` field is given, the first document's
class is added as one (that is where the hub reads it).

Admin endpoints under ``/_sim/`` need no token, so bind the simulator to loopback::

    POST /_sim/envelopes/{envelopeId}/deliver  every signer opens a sent envelope: status ``delivered``
    POST /_sim/envelopes/{envelopeId}/sign     every signer signs: status ``completed``
    GET /_sim/tokens                         the JWT grant's tokens issued per user, its refusals by error
    POST /_sim/tokens/revoke?user_id=U       U's tokens then answer 401
    GET|PUT /_sim/faults (see simulators.kit.faults)   POST /_sim/reset
    GET /_sim/deliveries   POST /_sim/deliveries/flush?timeout_s=10   POST /_sim/deliveries/hold|release|export

When an envelope is sent, delivered or completed, a Connect ``envelope-sent``, ``envelope-delivered`` or
``envelope-completed`` message is POSTed to ``ConnectConfig.url`` (for the events ``ConnectConfig.events``
subscribes to), HMAC-signed (see :mod:`simulators.docusign.connect`), and retried on Connect's schedule
until acknowledged. Envelopes are kept in :mod:`simulators.docusign.envelopes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.docusign.connect import ConnectConfig, ConnectOutbox
from simulators.docusign.envelopes import INCLUDES, EnvelopeIn, Envelopes, EnvelopeUpdateIn, invalid_parameter
from simulators.docusign.oauth import DocuSignJwt, oauth_routes
from simulators.kit.app import ErrorDialect, bearer_guard, serve, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan
from simulators.kit.tokens import TokenIssuer

__all__ = ["ConnectConfig", "DocuSignSimConfig", "create_app", "run"]

_API = "/restapi/v2.1/accounts/{account_id}/envelopes"


@dataclass(frozen=True)
class DocuSignSimConfig:
    """How a simulated DocuSign account behaves: its API token, faults and where Connect posts."""

    token: str = "docusign-sim-token"  # noqa: S105 - a simulator default, not a secret
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    #: ``None``: completions are not notified anywhere.
    connect: ConnectConfig | None = None
    #: The JWT grant (:mod:`simulators.docusign.oauth`): the API then takes only the tokens it issued, not ``token``.
    jwt: DocuSignJwt | None = None
    clock: Callable[[], datetime] | None = None


def _render(exc: SimError) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else exc.headers
    return JSONResponse({"errorCode": exc.code, "message": exc.message}, status_code=exc.status,
                        headers=headers or None)


def _invalid(exc: RequestValidationError) -> SimError:
    errors = exc.errors()
    details = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors)
    if any(e.get("loc", ("body",))[0] == "body" for e in errors):
        return SimError(400, "INVALID_REQUEST_BODY", f"The request body is missing or improperly formatted. {details}")
    return invalid_parameter(details)


def _http_error(exc: StarletteHTTPException) -> SimError:
    if exc.status_code == 404:
        return SimError(404, "INVALID_REQUEST_RESOURCE", "The URL provided does not resolve to a resource.")
    if exc.status_code == 405:
        return SimError(405, "INVALID_REQUEST_RESOURCE", "The HTTP method is not supported by this resource.",
                        headers=dict(exc.headers or {}))
    return SimError(exc.status_code, "HTTP_ERROR", str(exc.detail), headers=dict(exc.headers or {}))


#: What DocuSign answers for each injected fault. Throttling is the account's hourly API limit (DocuSign's
#: "API resource limits": "The maximum number of hourly API invocations has been exceeded"); DocuSign documents
#: no code for an outage, so the simulator says ``SERVICE_UNAVAILABLE``.
_FAULTS = {"outage": (503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
           "error": (500, "UNSPECIFIED_ERROR", "An unspecified error has occurred."),
           "throttle": (429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED",
                        "The maximum number of hourly API invocations has been exceeded.")}


def _fault(kind: str, plan: FaultPlan) -> SimError:
    status, code, message = _FAULTS[kind]
    headers = {} if kind == "error" else {"Retry-After": str(plan.retry_after_s)}
    return SimError(status, code, message, headers=headers)


#: ``{"errorCode": <code>, "message": ...}``, as DocuSign answers: refusals, malformed requests, unknown routes and
#: injected faults.
DOCUSIGN_ERRORS = ErrorDialect(render=_render, invalid=_invalid, http_error=_http_error, fault=_fault)


def _unauthorised() -> SimError:
    return SimError(401, "AUTHORIZATION_INVALID_TOKEN", "The access token provided is expired, revoked or malformed.")


_LISTING_DATE = ("Query parameter 'from_date' must be set to a valid DateTime, or 'envelope_ids' or "
                 "'transaction_ids' must be specified.")

#: Tells Connect that an envelope reached a status: ``(envelope, event)``.
Notify = Callable[[dict[str, Any], str], None]


def _includes(include: str | None) -> set[str]:
    """``include=recipients,custom_fields,documents`` as a set (other values DocuSign knows are ignored)."""
    return {part.strip() for part in (include or "").split(",") if part.strip() in INCLUDES}


def _ids(text: str | None) -> set[str] | None:
    return None if text is None else {part.strip() for part in text.split(",") if part.strip()}


def _date(text: str | None, name: str) -> datetime | None:
    """A listing date as DocuSign takes it: ISO 8601 (a date, or a date and time) or ``MM/DD/YYYY``."""
    if text is None:
        return None
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%m/%d/%Y")):
        try:
            moment = parse(text.strip())
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise invalid_parameter(_LISTING_DATE if name == "from_date"
                            else f"Query parameter '{name}' is not a valid DateTime.")


def _issued_only(tokens: TokenIssuer) -> Callable[[Request], None]:
    """A route dependency taking only valid tokens of ``tokens`` (expired or unknown: the same 401, as DocuSign)."""

    def authorise(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or tokens.check(given.strip()) != "valid":
            raise _unauthorised()

    return authorise


def _api(config: DocuSignSimConfig, envelopes: Envelopes, notify: Notify, tokens: TokenIssuer | None) -> APIRouter:
    """The ``/restapi/v2.1`` routes."""
    guard = _issued_only(tokens) if tokens is not None else bearer_guard(config.token, _unauthorised)
    api = APIRouter(prefix=_API, dependencies=[Depends(guard)])

    @api.post("", status_code=201)
    async def create_envelope(account_id: str, body: EnvelopeIn) -> dict[str, Any]:
        envelope = envelopes.create(account_id, body)
        if envelope["status"] == "sent":
            notify(envelope, "envelope-sent")
        return {"envelopeId": envelope["envelopeId"], "status": envelope["status"],
                "statusDateTime": envelope["statusChangedDateTime"],
                "uri": f"/envelopes/{envelope['envelopeId']}"}

    @api.get("")
    async def list_status_changes(
        account_id: str, from_date: str | None = None, to_date: str | None = None, status: str | None = None,
        envelope_ids: str | None = None, transaction_ids: str | None = None, include: str | None = None,
        count: int = Query(1000, ge=1, le=1000), start_position: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        since = _date(from_date, "from_date")
        if since is None and envelope_ids is None and transaction_ids is None:
            raise invalid_parameter(_LISTING_DATE)
        found = envelopes.listing(account_id, since=since, until=_date(to_date, "to_date"),
                                  statuses=_ids(status) or set(), envelope_ids=_ids(envelope_ids),
                                  transaction_ids=_ids(transaction_ids), include=_includes(include))
        page = found[start_position:start_position + count]
        return {"resultSetSize": str(len(page)), "totalSetSize": str(len(found)),
                "startPosition": str(start_position), "endPosition": str(start_position + len(page) - 1),
                "nextUri": "", "previousUri": "", "envelopes": page}

    @api.get("/{envelope_id}")
    async def get_envelope(account_id: str, envelope_id: str, include: str | None = None) -> dict[str, Any]:
        return envelopes.view(account_id, envelope_id, _includes(include))

    @api.put("/{envelope_id}")
    async def update_envelope(account_id: str, envelope_id: str, body: EnvelopeUpdateIn) -> dict[str, Any]:
        if body.status != "sent":
            raise invalid_parameter("The simulator changes an envelope only to send it: {\"status\": \"sent\"}.")
        envelope, changed = envelopes.send(envelope_id, account_id)
        if changed:
            notify(envelope, "envelope-sent")
        return {"envelopeId": envelope_id}

    @api.get("/{envelope_id}/recipients")
    async def list_recipients(account_id: str, envelope_id: str) -> dict[str, Any]:
        return envelopes.recipients(account_id, envelope_id)

    @api.get("/{envelope_id}/custom_fields")
    async def list_custom_fields(account_id: str, envelope_id: str) -> dict[str, Any]:
        return envelopes.custom_fields(account_id, envelope_id)

    @api.get("/{envelope_id}/documents")
    async def list_documents(account_id: str, envelope_id: str) -> dict[str, Any]:
        return envelopes.document_list(account_id, envelope_id)

    @api.get("/{envelope_id}/documents/{document_id}")
    async def get_document(account_id: str, envelope_id: str, document_id: str,
                           certificate: bool = True) -> Response:
        content = envelopes.document(account_id, envelope_id, document_id, certificate=certificate)
        return Response(content, media_type="application/pdf",
                        headers={"content-disposition": f'file; filename="{document_id}.pdf"'})

    return api


def _admin(envelopes: Envelopes, notify: Notify, tokens: TokenIssuer | None) -> APIRouter:
    """DocuSign's own ``/_sim`` routes: the signers open (``deliver``) or sign (``sign``) an envelope; ``tokens``,
    the JWT grant's tokens issued per user and its refusals, and ``tokens/revoke``."""
    admin = APIRouter()

    @admin.post("/envelopes/{envelope_id}/deliver")
    async def deliver(envelope_id: str) -> dict[str, Any]:
        envelope = envelopes.deliver(envelope_id)
        notify(envelope, "envelope-delivered")
        return envelope

    @admin.get("/tokens")
    async def get_tokens() -> dict[str, object]:
        return tokens.stats() if tokens else {"issued": {}, "live": {}, "refused": {}, "lifetime_s": None}

    @admin.post("/tokens/revoke")
    async def revoke_tokens(user_id: str) -> dict[str, object]:
        return {"revoked": tokens.revoke(user_id) if tokens else 0}

    @admin.post("/envelopes/{envelope_id}/sign")
    async def sign(envelope_id: str) -> dict[str, Any]:
        envelope = envelopes.sign(envelope_id)
        notify(envelope, "envelope-completed")
        return envelope

    return admin


def _notifier(envelopes: Envelopes, outbox: ConnectOutbox | None) -> Notify:
    def notify(envelope: dict[str, Any], event: str) -> None:
        if outbox is not None:
            outbox.notify(envelope, event=event, generated_at=envelopes.now())

    return notify


def create_app(config: DocuSignSimConfig | None = None) -> FastAPI:
    """The simulated DocuSign account as a FastAPI app; ``app.state`` holds ``outbox`` and ``faults``."""
    config = config or DocuSignSimConfig()
    envelopes = Envelopes(config.clock)
    outbox = ConnectOutbox(config.connect) if config.connect else None
    notify = _notifier(envelopes, outbox)
    tokens = TokenIssuer(lifetime_s=config.jwt.token_lifetime_s) if config.jwt else None
    api = APIRouter()
    api.include_router(_api(config, envelopes, notify, tokens))
    if config.jwt is not None and tokens is not None:
        api.include_router(oauth_routes(config.jwt, tokens))
    app = simulator_app("DocuSign eSignature simulator", api=api, admin=_admin(envelopes, notify, tokens),
                        dialect=DOCUSIGN_ERRORS, faults=FaultInjector(config.faults), outbox=outbox,
                        resets=(envelopes.reset, *((tokens.reset,) if tokens else ())))
    app.state.tokens = tokens
    return app


def run(host: str = "127.0.0.1", port: int = 8093, config: DocuSignSimConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``/_sim`` endpoints are open: keep ``host`` on loopback)."""
    serve(create_app(config), host=host, port=port)
