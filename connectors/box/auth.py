"""The hub's sign-in to Box: a Box Platform app's Client Credentials Grant for the enterprise.

``POST {url}/oauth2/token`` (form) with ``grant_type=client_credentials``, ``client_id``, ``client_secret``,
``box_subject_type=enterprise`` and ``box_subject_id=<enterprise id>`` answers an access token for the app's
service account that lives about an hour. :class:`BoxClientCredentials` is a
:class:`connectors.auth.TokenSource`: the token is kept for the process, renewed before it expires, and
:class:`connectors.auth.BearerAuth` answers a 401 with one retry on a fresh token.

Box refuses a wrong id or secret with 400 ``invalid_client``, an enterprise the app is not authorised in with
400 ``invalid_grant`` (``{"error", "error_description"}``): :class:`~hub.errors.SignInRefused`, naming the
enterprise and the client id, never the secret. A sign-in host that does not answer, or answers 5xx or 429, is
``UpstreamUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from connectors.auth import BearerAuth, TokenSource, read_secret
from connectors.http import RETRYABLE_STATUS, outbound_client
from connectors.settings import BoxSettings
from hub.errors import SignInRefused, UpstreamUnavailable

__all__ = ["BoxClientCredentials", "box_auth"]


class BoxClientCredentials(TokenSource):
    """Client Credentials Grant against Box's token endpoint; ``client``: the ``httpx.Client`` to post with
    (its own by default, closed by :meth:`close`)."""

    def __init__(self, settings: BoxSettings, *, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(margin_s=settings.token_margin_s, clock=clock)
        self.settings = settings
        self._own_client = client is None
        self._client = client or outbound_client(timeout=httpx.Timeout(10.0, connect=3.0))

    @property
    def provider(self) -> str:
        """Box."""
        return "Box"

    @property
    def who(self) -> str:
        """The enterprise and the app."""
        return f"enterprise {self.settings.enterprise_id} (client id {self.settings.client_id})"

    def close(self) -> None:
        """Close the HTTP client, when it is this sign-in's own."""
        if self._own_client:
            self._client.close()

    def _fetch(self) -> tuple[str, float]:
        s = self.settings
        url = f"{s.url}/oauth2/token"
        secret = read_secret(None if s.client_secret_file else s.client_secret, s.client_secret_file,
                             name="HUB_BOX_CLIENT_SECRET")
        form = {"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": secret,
                "box_subject_type": "enterprise", "box_subject_id": s.enterprise_id}
        try:
            response = self._client.post(url, data=form, headers={"accept": "application/json"})
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Box: {url} did not answer ({type(exc).__name__})") from None
        if response.status_code in RETRYABLE_STATUS:
            raise UpstreamUnavailable(f"Box: {url} answered {response.status_code}")
        body = _json_object(response)
        if response.is_success and isinstance(body.get("access_token"), str):
            return body["access_token"], float(body.get("expires_in", 3600))
        error = str(body.get("error") or response.status_code)
        detail = body.get("error_description")
        raise SignInRefused(f"Box refused the sign-in of {self.who}: {error}{f' ({detail})' if detail else ''}",
                            who=s.enterprise_id, code=error)


def box_auth(settings: BoxSettings, *, client: httpx.Client | None = None) -> BearerAuth:
    """The auth flow of Box calls: a Client Credentials token, renewed before expiry and once on a 401."""
    return BearerAuth(BoxClientCredentials(settings, client=client))


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
