"""Who may use the console: operators signing in with a key, read-only or operator, in a signed session cookie that
carries a CSRF token every action must send back.

The operators file (``HUB_OPERATORS_FILE``) names each operator, their role and the SHA-256 of their key, never
the key itself::

    operators:
      - {name: alice, role: operator, sha256: 9f86d0...}
      - {name: bob, role: read_only, sha256: 60303a...}

The session cookie is ``<base64 of {name, role, expiry, csrf}>.<HMAC-SHA256>``, HttpOnly and SameSite=Strict,
signed with ``HUB_CONSOLE_SECRET`` (a random secret per process when unset: sessions then last as long as the
process and are not shared by two ingress instances).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.yamlfile import load_model

#: What an operator may do: look, or also act (acknowledge, resolve, replay).
Role = Literal["read_only", "operator"]
#: The session cookie's name.
COOKIE = "hub_console"
#: How long a session lasts (seconds).
SESSION_S = 8 * 3600


class _Operator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _OperatorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operators: list[_Operator] = Field(min_length=1)


@dataclass(frozen=True)
class Operator:
    """One signed-in operator."""

    name: str
    role: Role
    csrf: str = ""

    @property
    def may_act(self) -> bool:
        """Whether they may acknowledge, resolve and replay."""
        return self.role == "operator"


class Operators:
    """The operators who may sign in, by the SHA-256 of their keys."""

    def __init__(self, operators: Sequence[tuple[str, Role, str]]) -> None:
        self._by_digest = {digest: (name, role) for name, role, digest in operators}

    @classmethod
    def load(cls, path: Path) -> Operators:
        """Read an operators file; a ConfigurationError names the file and what is wrong."""
        model, _ = load_model(path, _OperatorsFile, what="operators file")
        return cls([(o.name, o.role, o.sha256) for o in model.operators])

    def sign_in(self, key: str) -> Operator | None:
        """The operator whose key this is (compared in constant time with every known digest)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = None
        for known, (name, role) in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                found = Operator(name, role)
        return found


class Sessions:
    """Signs and reads session cookies."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, operator: Operator, *, now: float | None = None) -> tuple[str, Operator]:
        """A cookie value for ``operator`` and the session it opens (with its CSRF token)."""
        session = Operator(operator.name, operator.role, secrets.token_urlsafe(24))
        body = json.dumps({"n": session.name, "r": session.role, "c": session.csrf,
                           "e": int((now or time.time()) + SESSION_S)}, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}", session

    def read(self, cookie: str | None, *, now: float | None = None) -> Operator | None:
        """The session a cookie carries, if it is genuine and not expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if int(data["e"]) < (now or time.time()) or data["r"] not in ("read_only", "operator"):
                return None
            return Operator(str(data["n"]), data["r"], str(data["c"]))
        except (ValueError, KeyError, TypeError):
            return None

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()


def csrf_ok(session: Operator, sent: str | None) -> bool:
    """Whether a request carries its session's CSRF token."""
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
