"""Entra ID's sign-in host for the simulated tenant: OpenID discovery and the v2.0 token endpoint, client
credentials only (a client secret, or a certificate's signed client assertion).

It is an app of its own, beside the Graph app, sharing its :class:`~simulators.kit.tokens.TokenIssuer`: Entra ID
is a different host from Graph (``login.microsoftonline.com`` against ``graph.microsoft.com``), and ``msal``
accepts only an ``https`` authority, so the sandbox serves this app over TLS while Graph's stays plain HTTP.
``msal`` reads ``{authority}/v2.0/.well-known/openid-configuration`` and posts to the ``token_endpoint`` it
names; both are answered as Entra ID answers them::

    GET  /{tenant}/v2.0/.well-known/openid-configuration   the tenant's OpenID configuration (400 AADSTS90002)
    POST /{tenant}/oauth2/v2.0/token                         client_credentials: client_secret, or
                                                             client_assertion (RS256, x5t = SHA-1 thumbprint)

``{tenant}`` is the tenant id or its domain name. Errors are Entra ID's OAuth bodies (``error``,
``error_description`` starting ``AADSTSnnnn:``, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``, ``error_uri``): an unknown tenant, an unknown client (``unauthorized_client``), a wrong
secret or assertion (``invalid_client``, 401), a scope other than a resource's ``/.default``
(``invalid_scope``). Tokens are the Graph app's to check; ``GET /_sim/tokens`` on the Graph app counts them.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulators.kit.app import NO_TELEMETRY
from simulators.kit.tokens import TokenIssuer

__all__ = ["EntraApp", "EntraTenant", "create_login_app", "form_fields"]

#: The scopes a client-credentials token for Graph may ask for.
GRAPH_SCOPES = frozenset({"https://graph.microsoft.com/.default", "00000003-0000-0000-c000-000000000000/.default"})
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class EntraApp:
    """An app registration: its client id and credentials (a secret, and/or a certificate's public key with
    its SHA-1 thumbprint in hex)."""

    client_id: str
    secret: str | None = None
    certificate_public_key: str | None = None
    certificate_thumbprint: str | None = None


@dataclass(frozen=True)
class EntraTenant:
    """The tenant's sign-in: its domain name, app registrations and how long a token lives."""

    apps: tuple[EntraApp, ...]
    domain: str = "simfirm.onmicrosoft.com"
    token_lifetime_s: float = 3_599.0


class _Refused(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description


def _error(exc: _Refused) -> JSONResponse:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    description = (f"AADSTS{exc.code}: {exc.description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
                   f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}")
    return JSONResponse({"error": exc.error, "error_description": description, "error_codes": [exc.code],
                         "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}", "trace_id": trace_id,
                         "correlation_id": correlation_id,
                         "error_uri": f"https://login.microsoftonline.com/error?code={exc.code}"},
                        status_code=exc.status, headers={"cache-control": "no-store, no-cache"})


def create_login_app(*, tenant_id: str, tenant: EntraTenant, tokens: TokenIssuer) -> FastAPI:
    """Entra ID's sign-in host for one tenant, issuing tokens from ``tokens`` (the Graph app's issuer)."""
    app = FastAPI(title="Entra ID simulator (client credentials)", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_TELEMETRY)
    apps = {a.client_id: a for a in tenant.apps}

    def known(name: str) -> None:
        if name.lower() not in {tenant_id.lower(), tenant.domain.lower()}:
            raise _Refused(400, "invalid_tenant", 90002,
                           f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
                           "signing into the correct cloud.")

    @app.exception_handler(_Refused)
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, _Refused)
        tokens.refused(exc.error)
        return _error(exc)

    @app.get("/{tenant_name}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant_name: str, request: Request) -> dict[str, Any]:
        known(tenant_name)
        base = str(request.base_url).rstrip("/")
        return {
            "token_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                                 "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{base}/{tenant_id}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    @app.post("/{tenant_name}/oauth2/v2.0/token")
    async def token(tenant_name: str, request: Request) -> JSONResponse:
        known(tenant_name)
        form = await form_fields(request)
        if "grant_type" not in form:
            raise _Refused(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'grant_type'.")
        if form["grant_type"] != "client_credentials":
            raise _Refused(400, "unsupported_grant_type", 70003,
                           "The app requested an unsupported grant type (the simulator knows client_credentials).")
        client_id = form.get("client_id", "")
        registration = apps.get(client_id)
        if registration is None:
            raise _Refused(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the directory "
                           f"'{tenant_id}'. This can happen if the application has not been installed by the "
                           "administrator of the tenant or consented to by any user in the tenant.")
        _authenticate(registration, form, token_endpoint=f"{str(request.base_url).rstrip('/')}{request.url.path}")
        scope = form.get("scope", "")
        if scope not in GRAPH_SCOPES:
            raise _Refused(400, "invalid_scope", 1002012,
                           f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                           "scope value with /.default suffixed to the resource identifier "
                           "(application ID URI).")
        issued = tokens.issue(client_id, scope)
        return JSONResponse({"token_type": "Bearer", "expires_in": issued.expires_in,
                             "ext_expires_in": issued.expires_in, "access_token": issued.token},
                            headers={"cache-control": "no-store, no-cache"})

    return app


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (a body of another type has none)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def _authenticate(app: EntraApp, form: dict[str, str], *, token_endpoint: str) -> None:
    """A client secret equal to the app's, or a client assertion signed by the app's certificate."""
    if "client_secret" in form:
        if app.secret is None or not _same(form["client_secret"], app.secret):
            raise _Refused(401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the secret being sent in the request is the "
                           f"client secret value, not the client secret ID, for a secret added to app "
                           f"'{app.client_id}'.")
        return
    assertion = form.get("client_assertion")
    if assertion is None or form.get("client_assertion_type") != _ASSERTION_TYPE:
        raise _Refused(401, "invalid_client", 7000218,
                       "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _Refused(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from None
    if (app.certificate_public_key is None or app.certificate_thumbprint is None
            or _thumbprint_hex(header.get("x5t")) != app.certificate_thumbprint.upper()):
        raise _Refused(401, "invalid_client", 700027,
                       "The certificate with identifier used to sign the client assertion is not registered on "
                       f"application. [Reason - The key was not found., Thumbprint of key used by client: "
                       f"'{_thumbprint_hex(header.get('x5t'))}']")
    try:
        claims = jwt.decode(assertion, app.certificate_public_key, algorithms=["RS256", "PS256"],
                            audience=token_endpoint, issuer=app.client_id,
                            options={"require": ["exp", "aud", "iss", "sub", "jti"]})
    except jwt.ExpiredSignatureError:
        raise _Refused(401, "invalid_client", 700024, "Client assertion is not within its valid time range.") from None
    except jwt.InvalidAudienceError:
        raise _Refused(401, "invalid_client", 700027,
                       f"Client assertion contains an invalid audience; expected '{token_endpoint}'.") from None
    except jwt.PyJWTError:
        raise _Refused(401, "invalid_client", 700027, "Client assertion failed signature validation.") from None
    if claims.get("sub") != app.client_id:
        raise _Refused(401, "invalid_client", 700021,
                       "Client assertion application identifier doesn't match 'client_id' parameter.")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _thumbprint_hex(x5t: object) -> str:
    """The thumbprint (hex) an ``x5t`` header names: base64url of the SHA-1 digest, padded or not."""
    if not isinstance(x5t, str):
        return ""
    try:
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()
    except ValueError:
        return ""
