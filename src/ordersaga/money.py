"""Exact money: amounts are integer cents; decimal strings are parsed without binary floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = ["cents_from_str", "cents_to_str", "round_half_up_cents"]

CENT = Decimal("0.01")


def cents_from_str(text: str) -> int:
    """Parse a decimal string such as ``"12.50"`` to cents; at most two decimals, not negative."""
    if not isinstance(text, str):
        raise ValueError(f"money must be a decimal string, got {type(text).__name__}")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount must be a non-negative finite decimal: {text!r}")
    if value != value.quantize(CENT):
        raise ValueError(f"amount has more than two decimals: {text!r}")
    return int(value * 100)


def cents_to_str(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def round_half_up_cents(amount: Decimal) -> int:
    """Round an amount in currency units to whole cents, half up."""
    return int((amount.quantize(CENT, rounding=ROUND_HALF_UP)) * 100)
