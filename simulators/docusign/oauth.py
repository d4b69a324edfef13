"""DocuSign's account server for the JWT grant: ``POST /oauth/token`` exchanging an RS256 assertion for an access
token (the hub is configured with the account's API host, so ``/oauth/userinfo`` is not simulated).

DocuSign's auth host (``account-d.docusign.com``) is another host than the API's (``demo.docusign.net``); the
simulator serves both from one app, and takes the host a client posted to (its ``Host`` header) as the
audience the assertion must name, as DocuSign checks ``aud`` against its own host name. An assertion is
checked as DocuSign checks it, in this order, each refusal a 400 with DocuSign's OAuth body
(``{"error": ..., "error_description": ...}``):

- ``grant_type`` other than ``urn:ietf:params:oauth:grant-type:jwt-bearer``: ``unsupported_grant_type``;
- not a JWT, or ``iss`` not a known integration key: ``invalid_grant`` / ``issuer_not_found``;
- a signature the integration key's public key does not verify: ``invalid_grant`` /
  ``no_valid_keys_or_signatures``;
- expired, or ``exp`` more than an hour after ``iat``: ``invalid_grant`` / ``expired``;
- ``aud`` other than the host: ``invalid_grant`` / ``invalid_audience``;
- ``sub`` not a user of the account: ``invalid_grant`` / ``user_not_found``;
- the user has not consented to ``signature impersonation`` for this integration key: ``consent_required``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simulators.kit.tokens import TokenIssuer

__all__ = ["JWT_BEARER", "DocuSignJwt", "oauth_routes"]

#: The grant type of DocuSign's JWT grant.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MAX_ASSERTION_S = 3_600


@dataclass(frozen=True)
class DocuSignJwt:
    """The JWT grant of one integration key: its RSA public key (PEM), the account's users (ids) and those of
    them who granted consent, and how long a token lives."""

    integration_key: str
    public_key: str
    users: tuple[str, ...]
    consented: tuple[str, ...]
    token_lifetime_s: float = 3_600.0


def _refused(tokens: TokenIssuer, error: str, description: str | None = None) -> JSONResponse:
    tokens.refused(error if description is None else f"{error}:{description}")
    body = {"error": error} if description is None else {"error": error, "error_description": description}
    return JSONResponse(body, status_code=400, headers={"cache-control": "no-store"})


def oauth_routes(grant: DocuSignJwt, tokens: TokenIssuer) -> APIRouter:
    """``/oauth/token`` for ``grant``, issuing tokens from ``tokens``."""
    router = APIRouter(prefix="/oauth")

    @router.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER:
            return _refused(tokens, "unsupported_grant_type")
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _refused(tokens, "invalid_grant", "issuer_not_found")
        if unverified.get("iss") != grant.integration_key:
            return _refused(tokens, "invalid_grant", "issuer_not_found")
        try:
            claims: dict[str, Any] = jwt.decode(assertion, grant.public_key, algorithms=["RS256"],
                                                options={"verify_aud": False, "verify_exp": False})
        except jwt.PyJWTError:
            return _refused(tokens, "invalid_grant", "no_valid_keys_or_signatures")
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float) or exp <= now \
                or exp - iat > _MAX_ASSERTION_S:
            return _refused(tokens, "invalid_grant", "expired")
        if claims.get("aud") != request.headers.get("host"):
            return _refused(tokens, "invalid_grant", "invalid_audience")
        user = claims.get("sub")
        if user not in grant.users:
            return _refused(tokens, "invalid_grant", "user_not_found")
        scopes = set(str(claims.get("scope", "")).split())
        if user not in grant.consented or not {"signature", "impersonation"} <= scopes:
            return _refused(tokens, "consent_required")
        issued = tokens.issue(str(user), " ".join(sorted(scopes)))
        return JSONResponse({"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in},
                            headers={"cache-control": "no-store"})

    return router
