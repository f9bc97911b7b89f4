"""Card numbers for workloads and tests: the Luhn check digit, valid and declined numbers.

Parsing never applies the Luhn check (a card that fails it must reach the payment service and be
declined there); these helpers let generators and tests make both kinds on purpose.
"""

from __future__ import annotations

import random
import re

__all__ = ["luhn_check_digit", "luhn_valid", "make_card_number", "mask_card"]


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:  # doubled: these sit at odd positions once the check digit is appended
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when ``number`` is ASCII digits whose Luhn checksum is 0 (mod 10)."""
    if not number.isascii() or not number.isdigit() or len(number) < 2:
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def make_card_number(
    rng: random.Random, *, valid: bool = True, prefix: str = "4", length: int = 16
) -> str:
    """A random card number of ``length`` digits starting with ``prefix``.

    ``valid=False`` gives a number that fails the Luhn check (its check digit is off by 1-9).
    """
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    check = int(luhn_check_digit(body))
    if not valid:
        check = (check + rng.randrange(1, 10)) % 10
    return body + str(check)


_CARD_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){11,18}(?![0-9])")


def mask_card(text: str) -> str:
    """``text`` with every card-number-like run of 12-19 digits (spaces or dashes allowed in
    between) replaced by asterisks but its last four digits: ``************1111``."""

    def hide(match: re.Match[str]) -> str:
        digits = [c for c in match.group() if c.isdigit()]
        return "*" * (len(digits) - 4) + "".join(digits[-4:])

    return _CARD_RUN.sub(hide, text)
