"""The hub's own sign-in to Microsoft Graph and DocuSign: tokens got, cached per process, refreshed before they
expire, and sent by an ``httpx`` auth flow that answers a 401 with one retry on a fresh token.

- :class:`EntraClientCredentials`: OAuth 2.0 client credentials against Entra ID
  (``{authority}/{tenant}/oauth2/v2.0/token``, scope ``https://graph.microsoft.com/.default``) through ``msal``,
  Microsoft's own library, with a client secret or a certificate (private key and SHA-1 thumbprint).
- :class:`DocuSignJwtGrant`: DocuSign's JWT grant (``POST {auth host}/oauth/token`` with an RS256 assertion:
  ``iss`` the integration key, ``sub`` the user id, ``aud`` the auth host, scope ``signature impersonation``).
- :class:`BearerAuth`: the ``httpx.Auth`` both use. A 401 from the API (a token revoked or expired early)
  gets one retry with a fresh token; a second 401 is the API's answer and the caller's error.

A token is fetched once for every thread of the process (the lock is held while signing in, so a burst of
calls signs in once) and kept until ``margin_s`` before it expires; a margin longer than half the token's
lifetime is cut to half, so a short-lived token is still used before it is renewed. A refused sign-in is
:class:`~hub.errors.SignInRefused`, naming the tenant or account and the provider's error code; a sign-in
host that does not answer, or answers 5xx or 429, is ``UpstreamUnavailable`` (retried). No secret, key,
assertion or token appears in an error, a log line or a span.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msal
import msal.exceptions
import requests
from pydantic import SecretStr

from connectors.http import RETRYABLE_STATUS, outbound_client
from connectors.settings import DocuSignJwtSignIn, EntraSignIn
from hub.errors import ConfigurationError, SignInRefused, UpstreamUnavailable
from observability.logging import get_logger
from observability.metrics import TOKEN_FAILURES

__all__ = ["BearerAuth", "DocuSignJwtGrant", "EntraClientCredentials", "TokenSource", "docusign_auth", "entra_auth",
           "read_secret"]

log = get_logger(__name__)

#: How long a DocuSign JWT assertion is valid (DocuSign accepts at most an hour).
ASSERTION_LIFETIME_S = 3600
#: Entra ID and DocuSign errors that say "try again", not "you are refused".
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def read_secret(value: SecretStr | None, path: Path | None, *, name: str) -> str:
    """A secret given in the environment or as a file (stripped of surrounding white space)."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        raise ConfigurationError(f"{name} is not set")
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read {path} ({type(exc).__name__})") from None


class TokenSource(ABC):
    """A bearer token kept for the process, renewed ``margin_s`` before it expires (thread-safe)."""

    def __init__(self, *, margin_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.margin_s = margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        #: Successful sign-ins of this process.
        self.sign_ins = 0

    def token(self) -> str:
        """A token that has at least the margin left (signing in when it does not)."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._sign_in()
            assert self._token is not None
            return self._token

    def renew(self, refused: str) -> str:
        """A token other than ``refused`` (which the API answered 401): a new sign-in, unless another thread
        already renewed it."""
        with self._lock:
            if self._token is None or self._token == refused:
                self._sign_in()
            assert self._token is not None
            return self._token

    def _sign_in(self) -> None:
        started = self._clock()
        try:
            token, expires_in = self._fetch()
        except Exception:
            TOKEN_FAILURES.labels(self.provider.lower().replace(" ", "_")).inc()
            raise
        margin = min(self.margin_s, expires_in / 2)
        self._token, self._renew_at = token, started + max(0.0, expires_in - margin)
        self.sign_ins += 1
        log.info("signed in", provider=self.provider, who=self.who, expires_in_s=expires_in)

    def close(self) -> None:
        """Release what signing in holds (an HTTP client); nothing by default."""
        return None

    @property
    @abstractmethod
    def provider(self) -> str:
        """The identity provider, as errors and logs name it."""

    @property
    @abstractmethod
    def who(self) -> str:
        """The tenant or account signing in, as errors and logs name it."""

    @abstractmethod
    def _fetch(self) -> tuple[str, float]:
        """Sign in: a new access token and its lifetime in seconds."""


class BearerAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <token>`` from a :class:`TokenSource`; a 401 gets one retry on a fresh
    token."""

    requires_request_body = True  # a retried request is sent again with its body

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current token; on a 401, once more with a fresh one."""
        token = self.tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        log.info("token refused by the API, signing in again", provider=self.tokens.provider, who=self.tokens.who)
        request.headers["Authorization"] = f"Bearer {self.tokens.renew(token)}"
        yield request

    def close(self) -> None:
        """Release the token source's resources."""
        self.tokens.close()


def entra_auth(settings: EntraSignIn) -> BearerAuth | None:
    """Graph's auth flow when the settings sign in to Entra ID; ``None``: the static token is sent instead."""
    return BearerAuth(EntraClientCredentials(settings)) if settings.signs_in else None


def docusign_auth(settings: DocuSignJwtSignIn, *, account_id: str) -> BearerAuth | None:
    """DocuSign's auth flow when the settings sign in with the JWT grant; ``None``: the static token is sent."""
    return BearerAuth(DocuSignJwtGrant(settings, account_id=account_id)) if settings.signs_in else None


class EntraClientCredentials(TokenSource):
    """Client credentials against Entra ID through ``msal.ConfidentialClientApplication``.

    The msal application is made on the first sign-in (it reads the tenant's OpenID configuration then, so
    building the hub makes no call), and again after a refused one, so a secret or key file fixed or rotated in
    place is read without a restart. ``instance_discovery`` is off: the authority is the operator's setting,
    and msal would otherwise ask ``login.microsoftonline.com`` to vouch for a host it does not know (a national
    cloud's is known anyway). msal's own token cache is emptied before each sign-in: this class decides when
    a token is renewed, and a token the API refused must not come back from msal's cache.
    """

    def __init__(self, settings: EntraSignIn, *, clock: Callable[[], float] = time.monotonic,
                 timeout_s: float = 10.0) -> None:
        if not settings.signs_in or settings.tenant_id is None or settings.client_id is None:
            raise ConfigurationError("Entra ID sign-in needs HUB_GRAPH_TENANT_ID and HUB_GRAPH_CLIENT_ID")
        super().__init__(margin_s=settings.token_margin_s, clock=clock)
        self.settings = settings
        self.tenant_id: str = settings.tenant_id
        self.client_id: str = settings.client_id
        self._timeout_s = timeout_s
        self._cache = msal.TokenCache()
        self._app: msal.ConfidentialClientApplication | None = None
        self._session: _Session | None = None

    @property
    def provider(self) -> str:
        """Entra ID."""
        return "Entra ID"

    @property
    def who(self) -> str:
        """The tenant and app."""
        return f"tenant {self.tenant_id} (client id {self.client_id})"

    def _credential(self) -> str | dict[str, str]:
        s = self.settings
        if s.client_secret is not None or s.client_secret_file is not None:
            return read_secret(s.client_secret, s.client_secret_file, name="HUB_GRAPH_CLIENT_SECRET")
        key = read_secret(s.certificate_key, s.certificate_key_file, name="HUB_GRAPH_CERTIFICATE_KEY")
        assert s.certificate_thumbprint is not None  # the settings refuse a key without it
        return {"private_key": key, "thumbprint": s.certificate_thumbprint}

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            s = self.settings
            self.close()
            self._session = _Session(timeout_s=self._timeout_s, ca_file=s.sign_in_ca_file)
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._credential(),
                    authority=f"{s.authority_url}/{self.tenant_id}", token_cache=self._cache,
                    instance_discovery=False, http_client=self._session)
            except requests.RequestException as exc:
                raise UpstreamUnavailable(f"Entra ID: {s.authority_url} did not answer the OpenID configuration "
                                          f"of {self.who} ({type(exc).__name__})") from None
            except ValueError:  # msal: the OpenID configuration was refused (4xx: an unknown tenant)
                raise SignInRefused(f"Entra ID refused the sign-in of {self.who}: invalid_tenant (no OpenID "
                                    f"configuration at {s.authority_url}/{self.tenant_id})", who=self.tenant_id,
                                    code="invalid_tenant") from None
        return self._app

    def close(self) -> None:
        """Close msal's HTTP client (its kept-alive connections to Entra ID)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _fetch(self) -> tuple[str, float]:
        app = self._application()
        for cached in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            self._cache.remove_at(cached)
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[self.settings.scope])
        except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:  # unreachable, or 5xx
            raise UpstreamUnavailable(f"Entra ID: no token for {self.who} ({type(exc).__name__})") from None
        except (ValueError, TypeError):  # the certificate's key could not sign the client assertion
            raise SignInRefused(f"Entra ID sign-in of {self.who}: HUB_GRAPH_CERTIFICATE_KEY is not a usable private "
                                "key", who=self.tenant_id, code="invalid_credential") from None
        if "access_token" in result:
            return str(result["access_token"]), float(result.get("expires_in", 3599))
        error = str(result.get("error", "unknown"))
        codes = ", ".join(f"AADSTS{c}" for c in result.get("error_codes") or ())
        if error in _TRANSIENT_ERRORS:
            raise UpstreamUnavailable(f"Entra ID: {error} for {self.who}")
        self._app = None  # the next sign-in reads the secret or key again: a fixed or rotated file is taken up
        raise SignInRefused(f"Entra ID refused the sign-in of {self.who}: {error}{f' ({codes})' if codes else ''}",
                            who=self.tenant_id, code=error)


class _Session(requests.Session):
    """msal's HTTP client: a timeout on every call, and ``ca_file`` (when given) trusted even where
    ``REQUESTS_CA_BUNDLE`` is set (requests lets that variable win over a session's own ``verify``)."""

    def __init__(self, *, timeout_s: float, ca_file: Path | None) -> None:
        super().__init__()
        self._timeout_s = timeout_s
        self._ca_file = str(ca_file) if ca_file else None

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """As ``requests.Session.request``, with the timeout and CA bundle."""
        kwargs.setdefault("timeout", self._timeout_s)
        if self._ca_file is not None:
            kwargs.setdefault("verify", self._ca_file)
        return super().request(method, url, *args, **kwargs)


class DocuSignJwtGrant(TokenSource):
    """DocuSign's JWT grant: an RS256 assertion for the impersonated user, exchanged at ``/oauth/token``.

    ``client``: the ``httpx.Client`` to post with (its own by default). ``account_id`` only names the account in
    errors and logs.
    """

    def __init__(self, settings: DocuSignJwtSignIn, *, account_id: str, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        if not settings.signs_in or settings.integration_key is None or settings.user_id is None:
            raise ConfigurationError("DocuSign sign-in needs HUB_DOCUSIGN_INTEGRATION_KEY and HUB_DOCUSIGN_USER_ID")
        super().__init__(margin_s=settings.token_margin_s, clock=clock)
        self.settings = settings
        self.account_id = account_id
        self.integration_key: str = settings.integration_key
        self.user_id: str = settings.user_id
        self._client = client or outbound_client(timeout=httpx.Timeout(10.0, connect=3.0))
        self._wall_clock = wall_clock

    @property
    def provider(self) -> str:
        """DocuSign."""
        return "DocuSign"

    @property
    def who(self) -> str:
        """The account, integration key and user."""
        return f"account {self.account_id} (integration key {self.integration_key}, user {self.user_id})"

    def assertion(self) -> str:
        """A fresh RS256 assertion: ``iss`` integration key, ``sub`` user, ``aud`` auth host, ``scope``."""
        s = self.settings
        key = read_secret(s.private_key, s.private_key_file, name="HUB_DOCUSIGN_PRIVATE_KEY")
        now = int(self._wall_clock())
        claims = {"iss": self.integration_key, "sub": self.user_id, "aud": httpx.URL(s.auth_url).netloc.decode(),
                  "iat": now, "exp": now + ASSERTION_LIFETIME_S, "scope": s.scope, "jti": str(uuid.uuid4())}
        try:
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ConfigurationError(f"HUB_DOCUSIGN_PRIVATE_KEY is not a PEM RSA private key "
                                     f"({type(exc).__name__})") from None

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def _fetch(self) -> tuple[str, float]:
        url = f"{self.settings.auth_url}/oauth/token"
        data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": self.assertion()}
        try:
            response = self._client.post(url, data=data, headers={"accept": "application/json"})
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"DocuSign: {url} did not answer ({type(exc).__name__})") from None
        if response.status_code in RETRYABLE_STATUS:
            raise UpstreamUnavailable(f"DocuSign: {url} answered {response.status_code}")
        body = _json_object(response)
        if response.is_success and isinstance(body.get("access_token"), str):
            return body["access_token"], float(body.get("expires_in", 3600))
        error = str(body.get("error") or response.status_code)
        detail = body.get("error_description")
        if error in _TRANSIENT_ERRORS:
            raise UpstreamUnavailable(f"DocuSign: {error} signing in {self.who}")
        raise SignInRefused(f"DocuSign refused the sign-in of {self.who}: {error}{f' ({detail})' if detail else ''}",
                            who=self.account_id, code=error)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
