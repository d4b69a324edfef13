"""Outbound client of the DocuSign eSignature REST API (v2.1 subset), on the shared :class:`Http` policy.

Reads only: an envelope's state and a completed envelope's documents. DocuSign's ``GET envelope`` carries
recipients, custom fields and documents only when ``include=`` asks for them, so every caller names what
it reads. Errors follow the hub's tree: DocuSign's 400 ``ENVELOPE_DOES_NOT_EXIST`` or
``DOCUMENT_DOES_NOT_EXIST`` (and a 404) is :class:`EnvelopeNotFound`, other 4xx ``UpstreamRejected``, 5xx,
429, timeouts and an open circuit ``UpstreamUnavailable`` (retryable).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import quote

import httpx

from connectors.auth import BearerAuth, docusign_auth
from connectors.http import Http, outbound_client
from connectors.settings import DocuSignSettings
from hub.errors import UpstreamRejected

__all__ = ["DEFAULT_TIMEOUT", "DocuSignClient", "EnvelopeNotFound"]

#: Documents can be large: a longer read timeout than for JSON calls.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=2.0)


#: DocuSign's error codes (with HTTP 400) for an envelope or document the account does not have.
_NOT_FOUND_CODES = frozenset({"ENVELOPE_DOES_NOT_EXIST", "DOCUMENT_DOES_NOT_EXIST"})


class EnvelopeNotFound(UpstreamRejected):
    """DocuSign has no such envelope or document in this account (400 ``ENVELOPE_DOES_NOT_EXIST``...)."""


class DocuSignClient:
    """Typed calls to one DocuSign account; the injected :class:`Http` carries base URL, token and resilience."""

    def __init__(self, http: Http, *, account_id: str) -> None:
        self.http = http
        self.account_id = account_id

    @classmethod
    def create(cls, base_url: str, token: str, *, account_id: str, client: httpx.Client | None = None
               ) -> DocuSignClient:
        """A client for ``base_url`` (the host, without ``/restapi``) with bearer ``token``.

        A given ``client`` keeps its transport and timeouts but gets the base URL and token.
        """
        if client is None:
            client = outbound_client(timeout=DEFAULT_TIMEOUT)
        client.base_url = httpx.URL(base_url)
        client.headers["authorization"] = f"Bearer {token}"
        return cls(Http(client, target="docusign"), account_id=account_id)

    @classmethod
    def from_settings(cls, settings: DocuSignSettings, *, client: httpx.Client | None = None) -> DocuSignClient:
        """A client for ``settings.account_id`` at ``settings.url``, signing in with the JWT grant when the
        settings say how (:func:`connectors.auth.docusign_auth`), else with ``settings.token``."""
        auth = docusign_auth(settings, account_id=settings.account_id)
        if auth is None:
            return cls.create(settings.url, settings.token.get_secret_value(), account_id=settings.account_id,
                              client=client)
        if client is None:
            client = outbound_client(timeout=DEFAULT_TIMEOUT)
        client.base_url = httpx.URL(settings.url)
        client.auth = auth
        return cls(Http(client, target="docusign"), account_id=settings.account_id)

    def close(self) -> None:
        """Close the underlying ``httpx.Client`` (and the sign-in's)."""
        if isinstance(self.http.client.auth, BearerAuth):
            self.http.client.auth.close()
        self.http.client.close()

    def get_envelope(self, envelope_id: str, *, include: Collection[str] = ()) -> dict[str, Any]:
        """The envelope as DocuSign answers it: its status and dates, and what ``include`` names
        (``recipients``, ``custom_fields``, ``documents``: ``recipients``, ``customFields``,
        ``envelopeDocuments``), which DocuSign leaves out unless asked."""
        params = {"include": ",".join(sorted(include))} if include else None
        body = self._get(self._envelope_path(envelope_id), params=params).json()
        if not isinstance(body, dict):
            raise UpstreamRejected(f"docusign: envelope {envelope_id!r} is not a JSON object")
        return body

    def download_document(self, envelope_id: str, document_id: str) -> bytes:
        """One document's bytes (the signed PDF once the envelope is completed)."""
        path = f"{self._envelope_path(envelope_id)}/documents/{quote(document_id, safe='')}"
        return self._get(path, accept="application/pdf").content

    def _envelope_path(self, envelope_id: str) -> str:
        return (f"/restapi/v2.1/accounts/{quote(self.account_id, safe='')}"
                f"/envelopes/{quote(envelope_id, safe='')}")

    def _get(self, path: str, *, accept: str = "application/json",
             params: dict[str, str] | None = None) -> httpx.Response:
        response = self.http.request("GET", path, params=params, headers={"accept": accept},
                                     ok_statuses=frozenset({400, 404}))
        if response.status_code == 404:
            raise EnvelopeNotFound(f"docusign: {path} not found")
        if response.status_code == 400:
            code = _error_code(response)
            if code in _NOT_FOUND_CODES:
                raise EnvelopeNotFound(f"docusign: {path}: {code}")
            # The code only: DocuSign's message may quote the request.
            raise UpstreamRejected(f"docusign: GET {path} answered 400 {code or 'without an errorCode'}")
        return response


def _error_code(response: httpx.Response) -> str | None:
    """DocuSign's ``errorCode`` from an error body ``{"errorCode", "message"}``."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("errorCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
