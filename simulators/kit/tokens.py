"""Opaque access tokens that expire, as a simulated identity provider issues them and its API checks them.

Entra ID and DocuSign issue tokens that live about an hour; a simulator issues them for ``lifetime_s`` seconds
(two in a test that wants to see several renewals). A token is a random string with no meaning of its own:
the API asks the issuer whether it is ``valid``, ``expired`` (the API answers 401 with the vendor's "expired"
message) or ``unknown`` (never issued, or revoked). Expired tokens are remembered for a while, so an expired
token is told apart from a forged one, as the real services do. The issuer counts the tokens it issued per
client, those still valid, and the requests it refused, for a test to read at the simulator's admin endpoint.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Issued", "TokenIssuer", "TokenState"]

#: What the API makes of a bearer token.
TokenState = Literal["valid", "expired", "unknown"]
#: How long an expired token is still recognised as expired (then it is unknown).
_REMEMBER_S = 3_600.0


@dataclass(frozen=True)
class Issued:
    """One access token: who it was issued to and until when (issuer clock)."""

    token: str
    client_id: str
    scope: str
    expires_at: float
    expires_in: int


class TokenIssuer:
    """Issues and checks opaque expiring tokens (thread-safe)."""

    def __init__(self, *, lifetime_s: float = 3_600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, Issued] = {}
        self._issued: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()

    def issue(self, client_id: str, scope: str) -> Issued:
        """A new token for ``client_id`` living ``lifetime_s``."""
        now = self._clock()
        issued = Issued(token=secrets.token_urlsafe(32), client_id=client_id, scope=scope,
                        expires_at=now + self.lifetime_s, expires_in=max(1, round(self.lifetime_s)))
        with self._lock:
            self._forget_old(now)
            self._tokens[issued.token] = issued
            self._issued[client_id] += 1
        return issued

    def check(self, token: str) -> TokenState:
        """Whether ``token`` is valid now, expired, or unknown to this issuer."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            return "unknown"
        return "valid" if self._clock() < issued.expires_at else "expired"

    def refused(self, reason: str) -> None:
        """Count a refused token request (``reason``: the error code answered)."""
        with self._lock:
            self._refused[reason] += 1

    def revoke(self, client_id: str) -> int:
        """Forget every token of ``client_id`` (then unknown to the API); returns how many."""
        with self._lock:
            gone = [t for t, issued in self._tokens.items() if issued.client_id == client_id]
            for token in gone:
                del self._tokens[token]
        return len(gone)

    def stats(self) -> dict[str, object]:
        """Tokens issued per client, tokens still valid per client, refusals per error code, and the lifetime."""
        now = self._clock()
        with self._lock:
            live = Counter(issued.client_id for issued in self._tokens.values() if now < issued.expires_at)
            return {"issued": dict(self._issued), "live": dict(live), "refused": dict(self._refused),
                    "lifetime_s": self.lifetime_s}

    def reset(self) -> None:
        """Forget every token and count."""
        with self._lock:
            self._tokens.clear()
            self._issued.clear()
            self._refused.clear()

    def _forget_old(self, now: float) -> None:
        old = [t for t, issued in self._tokens.items() if issued.expires_at + _REMEMBER_S < now]
        for token in old:
            del self._tokens[token]
