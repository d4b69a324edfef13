"""The one error a simulated service raises; each service's error dialect answers it in its vendor's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SimError(Exception):
    """A request the simulated service refuses: HTTP status, the vendor's error code and message.

    ``headers`` go on the answer; ``details`` are the dialect's to show (the ERP adds them to its body).
    """

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        self.details = details
