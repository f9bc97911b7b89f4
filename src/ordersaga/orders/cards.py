"""Card numbers: masking them for people, and making them for workloads and tests.

Masking. A full card number (PAN) is never shown: wherever a card appears for people (a
rejection reason, ``--json``, the order API, a log line, the audit) it goes through
:func:`mask_card`, which keeps the last four digits of every card-like run of a text and replaces
the other digits with ``*``. A card-like run is 12 or more digits in a row, each pair separated
by at most two characters among spaces, dashes, dots, underscores and ASCII letters, so
malformed numbers (``4111-1111-1111-1111``, ``4111 1111 1111 1111``, ``4111x1111x1111x1111``)
are masked too. :func:`mask_card_field` masks a value known to be a card number (the
``card_number`` field) whatever it looks like: only its last four digits survive.

Parsing never applies the Luhn check (a card that fails it must reach the payment service and be
declined there); :func:`make_card_number` lets generators and tests make both kinds on purpose.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "MIN_CARD_DIGITS",
    "last_four",
    "luhn_check_digit",
    "luhn_valid",
    "make_card_number",
    "mask_card",
    "mask_card_field",
]

#: The fewest digits a run must have to be masked as a card number (the shortest PAN is 12).
MIN_CARD_DIGITS = 12
# A digit, then digits each preceded by at most two separator characters. The separators exclude
# ',' and ':' so that lists of numbers in a reason ("limit 50.00, in use 40.00") stay apart, and
# '/' and a separated MM/YY so that an expiry after a card stays apart ("4111 ... 1111 12/30").
_RUN = re.compile(r"[0-9](?:[0-9]|[ \-._A-Za-z]{1,2}(?![0-9]{2}/[0-9]{2})[0-9])+")
_DIGIT = re.compile(r"[0-9]")


def mask_card(text: str) -> str:
    """``text`` with every card-like run masked to its last four digits (see the module doc).

    Idempotent, and cheap on text without long digit runs (a failed regex search).
    """
    if len(text) < MIN_CARD_DIGITS:
        return text
    return _RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = sum(c.isdigit() for c in run)
    if digits < MIN_CARD_DIGITS:
        return run
    hidden = digits - 4
    out: list[str] = []
    for char in run:
        if char.isdigit() and hidden > 0:
            out.append("*")
            hidden -= 1
        else:
            out.append(char)
    return "".join(out)


def last_four(card: str) -> str:
    """The last four digits of ``card`` (fewer if it has fewer); '' when it has none."""
    return "".join(_DIGIT.findall(card)[-4:])


def mask_card_field(card: str) -> str:
    """A card field's value for people: ``****1234`` (its last four digits), whatever it holds."""
    return f"****{last_four(card)}"


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
