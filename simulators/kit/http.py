"""The simulators' and the sandbox's HTTP clients: one TLS context per process.

httpx reads the whole CA bundle again for every client it makes (about 80 ms of CPU), and so for every
``httpx.get``; the simulators make one per webhook run and per gate call, the sandbox one per admin request. These
clients verify with a context made once (the same authorities httpx would trust) and cost about 2 ms each.
The connectors do the same (``connectors.http.outbound_client``); a simulator stands for another company's service
and imports nothing of the hub's, so the few lines are its own.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

import httpx

__all__ = ["async_client", "client", "get", "post", "put", "trusted_authorities"]


@functools.cache
def trusted_authorities(trust_env: bool = True) -> ssl.SSLContext:
    """The authorities httpx trusts by default (``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when ``trust_env`` and set,
    else certifi's bundle), read once per process."""
    import certifi

    if trust_env and os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if trust_env and os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


def client(**options: Any) -> httpx.Client:
    """``httpx.Client(**options)``, verifying with the shared context unless ``verify`` is given."""
    options.setdefault("verify", trusted_authorities(options.get("trust_env", True)))
    return httpx.Client(**options)


def async_client(**options: Any) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**options)``, verifying with the shared context unless ``verify`` is given."""
    options.setdefault("verify", trusted_authorities(options.get("trust_env", True)))
    return httpx.AsyncClient(**options)


def _one(method: str, url: str, *, timeout: float, **options: Any) -> httpx.Response:
    with client(timeout=timeout) as one:
        return one.request(method, url, **options)


def get(url: str, *, timeout: float, **options: Any) -> httpx.Response:
    """``httpx.get``, on a client with the shared context."""
    return _one("GET", url, timeout=timeout, **options)


def post(url: str, *, timeout: float, **options: Any) -> httpx.Response:
    """``httpx.post``, on a client with the shared context."""
    return _one("POST", url, timeout=timeout, **options)


def put(url: str, *, timeout: float, **options: Any) -> httpx.Response:
    """``httpx.put``, on a client with the shared context."""
    return _one("PUT", url, timeout=timeout, **options)
