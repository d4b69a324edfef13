"""Amounts as people write them ("125,000.00") in minor units of an ISO 4217 currency, and milestones as
people write them (``Phase 2 build;50,000.00;2027-08-31``)."""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

__all__ = ["milestone", "minor_units"]

# ISO 4217 currencies whose minor unit is not the cent; every other code has two decimals.
_MINOR_DIGITS = {"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
                 "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0}
# Integer digits an amount may have: its minor units must fit an Avro long whatever the currency.
_MAX_MAJOR_DIGITS = 14


def minor_units(amount: str, currency: str) -> int:
    """``amount`` in minor units of ``currency``; ValueError names what is wrong.

    Thousands separators (``,``) are dropped and the point is the decimal mark.
    """
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"{currency!r} is not an ISO 4217 code")
    digits = _MINOR_DIGITS.get(currency, 2)
    try:
        value = Decimal(amount.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a decimal amount") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a decimal amount")
    if value.adjusted() > _MAX_MAJOR_DIGITS:
        raise ValueError(f"{amount!r} is too large an amount")
    if value != value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_DOWN):
        raise ValueError(f"{amount!r} has more decimals than {currency} allows")
    return int(value.scaleb(digits))


def milestone(text: str, currency: str) -> dict[str, Any]:
    """``name;amount;due date`` (the due date may be left out or empty) as a ``hub.common.Milestone``
    record in ``currency``; ValueError names what is wrong."""
    parts = [part.strip() for part in text.split(";")]
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"{text.strip()!r} must be 'name;amount;due date'")
    due = parts[2] if len(parts) == 3 else ""
    try:
        due_date = date.fromisoformat(due) if due else None
    except ValueError:
        raise ValueError(f"{text.strip()!r} has a due date that is not YYYY-MM-DD") from None
    return {"name": parts[0], "amount": {"amount_minor": minor_units(parts[1], currency), "currency": currency},
            "due_date": due_date}
