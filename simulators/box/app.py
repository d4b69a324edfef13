"""A Box Platform stand-in speaking the subset the hub uses, over real HTTP: one app serving the API host's
``/2.0`` routes, the upload host's ``/api/2.0`` routes and the sign-in at ``/oauth2/token``, so an SDK points
``base_url`` at it and ``upload_url`` at ``<it>/api``.

- Sign-in (:func:`token_routes`): ``POST /oauth2/token`` with the Client Credentials Grant
  (``grant_type=client_credentials``, ``client_id``, ``client_secret``, ``box_subject_type=enterprise``,
  ``box_subject_id``); a wrong id or secret is 400 ``invalid_client``, another enterprise 400 ``invalid_grant``,
  in Box's OAuth body ``{"error", "error_description"}``. Tokens live ``token_lifetime_s``.
- Every API call needs ``Authorization: Bearer <token>`` it issued: otherwise 401 with an empty body and
  ``WWW-Authenticate: Bearer realm="Service", error="invalid_token", ...`` (as Box answers).
- Routes: folders, groups, collaborations (:mod:`.routes`); metadata and retention (:mod:`.governance`);
  files (:mod:`.files`); events and webhooks (:mod:`.changes`). Errors are Box's
  ``{"type": "error", "status", "code", "message", "context_info"?, "help_url", "request_id"}`` on every
  refusal, malformed request, unknown route and injected fault (429 ``rate_limit_exceeded`` with
  ``Retry-After``, 500 ``internal_server_error``, 503 ``unavailable``).
- Webhooks V2 signed with both keys (:mod:`.webhooks`).
- Admin, loopback only: ``GET /_sim/state``, ``GET /_sim/requests`` (the authorised API requests counted by
  method and path: ``{"calls": {"GET /2.0/folders/123/collaborations": 1}}``), ``GET /_sim/tokens``,
  ``POST /_sim/tokens/revoke?client_id=`` (the client's tokens then answer 401), ``POST /_sim/reset``,
  ``GET|PUT /_sim/faults``, ``/_sim/deliveries``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.box.changes import change_routes
from simulators.box.config import BoxSimConfig
from simulators.box.files import Transfers, download_routes, file_routes, upload_routes
from simulators.box.governance import governance_routes
from simulators.box.model import HELP_URL, BoxError, Json, request_id
from simulators.box.routes import folder_routes
from simulators.box.state import BoxState, Webhook
from simulators.box.webhooks import WebhookOutbox, webhook_event
from simulators.kit.app import ErrorDialect, serve, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan
from simulators.kit.tokens import TokenIssuer

__all__ = ["BOX_ERRORS", "create_app", "run"]


def _render(exc: SimError) -> Response:
    headers = dict(exc.headers)
    if exc.status == 401:  # Box answers an unusable token with no body, only the challenge
        return Response(status_code=401, headers=headers)
    body: Json = {"type": "error", "status": exc.status, "code": exc.code, "message": exc.message}
    context = exc.context_info if isinstance(exc, BoxError) else None
    if context:
        body["context_info"] = context
    body.update(help_url=HELP_URL, request_id=request_id())
    return JSONResponse(body, status_code=exc.status, headers=headers or None)


def _invalid(exc: RequestValidationError) -> SimError:
    errors = [{"name": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": str(e.get("msg", ""))}
              for e in exc.errors()[:5]]
    return BoxError(400, "bad_request", "Bad Request", context_info={"errors": errors})


def _http_error(exc: StarletteHTTPException) -> SimError:
    if exc.status_code == 404:
        return BoxError(404, "not_found", "Not Found")
    if exc.status_code == 405:
        return BoxError(405, "method_not_allowed", "Method Not Allowed", headers=dict(exc.headers or {}))
    return BoxError(exc.status_code, "bad_request", str(exc.detail))


_FAULTS = {"outage": (503, "unavailable", "Unavailable"),
           "error": (500, "internal_server_error", "Internal Server Error"),
           "throttle": (429, "rate_limit_exceeded", "Request rate limit exceeded, please try again later")}


def _fault(kind: str, plan: FaultPlan) -> SimError:
    status, code, message = _FAULTS[kind]
    headers = {} if kind == "error" else {"Retry-After": str(plan.retry_after_s)}
    return BoxError(status, code, message, headers=headers)


#: Box's error body on every answer that is not a success.
BOX_ERRORS = ErrorDialect(render=_render, invalid=_invalid, http_error=_http_error, fault=_fault)

_CHALLENGE = 'Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid."'


def _bearer(tokens: TokenIssuer, count: Callable[[str], None]) -> Callable[..., None]:
    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or tokens.check(given.strip()) != "valid":
            raise BoxError(401, "unauthorized", "Unauthorized", headers={"WWW-Authenticate": _CHALLENGE})
        count(f"{request.method} {request.url.path}")
    return check


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def token_routes(config: BoxSimConfig, tokens: TokenIssuer) -> APIRouter:
    """``POST /oauth2/token``: the Client Credentials Grant for the configured app and enterprise."""
    routes = APIRouter()

    @routes.post("/oauth2/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            tokens.refused("unsupported_grant_type")
            return _oauth_error("unsupported_grant_type", "Grant type is not supported by this simulator")
        given_id, given_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not (hmac.compare_digest(given_id.encode(), config.client_id.encode())
                and hmac.compare_digest(given_secret.encode(), config.client_secret.encode())):
            tokens.refused("invalid_client")
            return _oauth_error("invalid_client", "The client credentials are invalid")
        if form.get("box_subject_type") != "enterprise" or form.get("box_subject_id") != config.enterprise_id:
            tokens.refused("invalid_grant")
            return _oauth_error("invalid_grant", "Grant credentials are invalid")
        issued = tokens.issue(given_id, "root_readwrite")
        return JSONResponse({"access_token": issued.token, "expires_in": issued.expires_in, "token_type": "bearer",
                             "restricted_to": [], "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})

    return routes


def _loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    if not (host.startswith("127.") or host in {"::1", "testclient"}):
        raise BoxError(403, "forbidden", "the simulator's admin endpoints answer loopback callers only")


def create_app(config: BoxSimConfig | None = None) -> FastAPI:
    """A fresh simulator: its own enterprise, tokens, fault injector and webhook thread."""
    config = config or BoxSimConfig()
    outbox = WebhookOutbox(config)
    state: BoxState

    def deliver(hook: Webhook, trigger: str, source: Json) -> None:
        outbox.enqueue(hook.address, webhook_event(hook.id, trigger, source, state.account))

    state = BoxState(config, deliver=deliver)
    tokens = TokenIssuer(lifetime_s=config.token_lifetime_s)
    transfers = Transfers()
    faults = FaultInjector(config.faults)
    admin = APIRouter()

    @admin.get("/state")
    def get_state() -> Json:
        return {**state.snapshot(), "faults": {"plan": faults.plan.to_json(), "injected": dict(faults.injected)},
                "upload_sessions": len(transfers.sessions)}

    @admin.get("/requests")
    def get_requests() -> Json:
        with state.lock:
            return {"calls": dict(state.calls)}

    @admin.get("/tokens")
    def get_tokens() -> Json:
        return tokens.stats()

    @admin.post("/tokens/revoke")
    def revoke_tokens(client_id: str) -> Json:
        return {"revoked": tokens.revoke(client_id)}

    guarded = [Depends(_bearer(tokens, state.count_call))]
    api = APIRouter(prefix="/2.0", dependencies=guarded)
    for routes in (folder_routes(state), governance_routes(state), file_routes(state, transfers),
                   change_routes(state)):
        api.include_router(routes)
    uploads = APIRouter(prefix="/api/2.0", dependencies=guarded)
    uploads.include_router(upload_routes(state, transfers))
    app = simulator_app("Box simulator (Box Platform API subset)", api=_unguarded_tokens(api, config, tokens),
                        admin=admin, dialect=BOX_ERRORS, faults=faults, outbox=outbox,
                        resets=(state.reset, transfers.reset, tokens.reset), admin_dependencies=[Depends(_loopback)],
                        docs=False)
    app.include_router(uploads)
    app.include_router(download_routes(state, transfers))
    app.state.box = state
    app.state.tokens = tokens
    return app


def _unguarded_tokens(api: APIRouter, config: BoxSimConfig, tokens: TokenIssuer) -> APIRouter:
    root = APIRouter()
    root.include_router(token_routes(config, tokens))
    root.include_router(api)
    return root


def run(host: str = "127.0.0.1", port: int = 8094, config: BoxSimConfig | None = None) -> None:
    """Serve the simulator until interrupted; bind loopback unless told."""
    serve(create_app(config), host=host, port=port, access_log=False)
