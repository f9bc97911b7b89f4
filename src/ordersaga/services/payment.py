"""The payment service: authorizes an amount against a user's credit limit, then captures it.

Actions (``ref`` = ``<saga id>:<step>`` of the key)::

    authorize (action)      {"order_id": str, "user_id": int >= 0, "amount_cents": int >= 0,
                             "method": str, "card_number": str | null, "expiry": "MM/YY" | null}
        ok       {"amount_cents": int, "state": "authorized"}
        refused  "payment method 'X' is not accepted" | "card number fails the Luhn check"
                 | "expiry 'X' is not MM/YY" | "card expired at the end of 01/24"
                 | "credit limit exceeded for user 7: limit 50.00, in use 40.00, requested 12.00"
                 | "payment cancelled" (a tombstone: it was voided before it arrived)
                 every refusal but the tombstone one records a ``declined`` payment
    void      (compensate)  {"order_id": str}              ok {"state": "voided" | "declined"}
        authorized → voided (the account's authorized total drops); unseen → tombstone;
        voided or declined → no-op; captured → refused
    capture   (confirm)     {"order_id": str (optional)}   ok {"state": "captured"}
        authorized → captured (authorized total moves to captured); captured → no-op;
        otherwise refused

A card is valid through the last day of month MM of year 20YY; "today" is injected.

Tables (besides the kit's ``schema_version``, ``config``, ``idempotency``)::

    accounts (user_id BIGINT PK, credit_limit_cents BIGINT, authorized_cents BIGINT,
              captured_cents BIGINT, version BIGINT)
        created on a user's first authorization, with the limit the config gives that user;
        invariant (also a CHECK): authorized_cents + captured_cents <= credit_limit_cents
    payments (ref TEXT PK, order_id TEXT, user_id BIGINT (null for a tombstone),
              amount_cents BIGINT, method TEXT,
              state TEXT 'authorized'|'captured'|'voided'|'declined', reason TEXT (a decline's),
              tombstone BIGINT 0|1, version BIGINT, created_at, updated_at DOUBLE PRECISION)

Stored config (``config`` table, service ``payment``)::

    {"methods": [str, ...], "default_credit_limit_cents": int,
     "credit_limits_cents": {"<user id>": int, ...}}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, NamedTuple, Self

from ordersaga.db import Database, Row
from ordersaga.errors import ConfigError
from ordersaga.money import cents_to_str
from ordersaga.participant import fields
from ordersaga.participant.kit import Action, Footprint, Plan, Reader, RunnerOptions, Write
from ordersaga.participant.lifecycle import Lifecycle
from ordersaga.participant.schema import CLUSTERED
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Phase, Reply, ReplyStatus
from ordersaga.services.config import PaymentConfig
from ordersaga.slots import tuple_new

#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_OK = ReplyStatus.OK

__all__ = [
    "AuthorizeRequest",
    "PaymentService",
    "card_refusal",
    "luhn_valid",
    "parse_authorize",
]

# A state CHECK is a chain of ORs, not IN (...): SQLite builds a temporary table for an IN list
# on every INSERT and UPDATE of the row (about 4 µs each), the ORs cost nothing.
DDL = f"""
CREATE TABLE IF NOT EXISTS accounts (
    user_id BIGINT PRIMARY KEY,
    credit_limit_cents BIGINT NOT NULL,
    authorized_cents BIGINT NOT NULL,
    captured_cents BIGINT NOT NULL,
    version BIGINT NOT NULL,
    CHECK (authorized_cents >= 0 AND captured_cents >= 0),
    CHECK (authorized_cents + captured_cents <= credit_limit_cents)
) {CLUSTERED};
CREATE TABLE IF NOT EXISTS payments (
    ref TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id BIGINT,
    amount_cents BIGINT NOT NULL DEFAULT 0,
    method TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL
        CHECK (state = 'authorized' OR state = 'captured' OR state = 'voided'
               OR state = 'declined'),
    reason TEXT,
    tombstone BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
) {CLUSTERED};
CREATE INDEX IF NOT EXISTS payments_order ON payments (order_id);
CREATE INDEX IF NOT EXISTS payments_user ON payments (user_id)
"""

LIFECYCLE = Lifecycle(
    table="payments",
    noun="payment",
    initial="authorized",
    confirmed="captured",
    cancelled="voided",
    compensate_verb="void",
    confirm_verb="capture",
    other_terminal=frozenset({"declined"}),
    columns=("user_id", "amount_cents"),  # what the authorization moves read
)

_EXPIRY = re.compile(r"([0-9]{2})/([0-9]{2})")


class AuthorizeRequest(NamedTuple):
    """A parsed authorization (an immutable value; a named tuple, as ReserveRequest is)."""

    order_id: str
    user_id: int
    amount_cents: int
    method: str
    card_number: str | None
    expiry: str | None


def parse_authorize(payload: Mapping[str, Any]) -> AuthorizeRequest:
    return tuple_new(
        AuthorizeRequest,
        (
            fields.order_id(payload),
            fields.integer(payload, "user_id"),
            fields.integer(payload, "amount_cents"),
            fields.text(payload, "method", max_length=128),
            fields.optional_text(payload, "card_number", max_length=64),
            fields.optional_text(payload, "expiry", max_length=16),
        ),
    )


#: What a doubled digit adds to a Luhn sum (its digits' sum): ``d * 2``, less 9 above 4.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (anything else fails)."""
    if not number or not (number.isascii() and number.isdigit()):
        return False
    # From the right: the digits in odd positions count as they are, the others doubled.
    digits = number[::-1]
    kept = sum(map(int, digits[0::2]))
    doubled = sum(map(_DOUBLED.__getitem__, map(int, digits[1::2])))
    return (kept + doubled) % 10 == 0


def card_refusal(card_number: str | None, expiry: str | None, today: date) -> str | None:
    """Why a card is refused (bad number, malformed or past expiry), or ``None`` when it is fine."""
    if card_number is not None and not luhn_valid(card_number):
        return "card number fails the Luhn check"
    if expiry is None:
        return None
    match = _EXPIRY.fullmatch(expiry)
    if match is None or not 1 <= int(match[1]) <= 12:
        return f"expiry {expiry!r} is not MM/YY"
    month, year = int(match[1]), 2000 + int(match[2])
    # Valid through the end of its month: expired once today is in a later month.
    if (today.year, today.month) > (year, month):
        return f"card expired at the end of {expiry}"
    return None


def config_to_json(config: PaymentConfig) -> dict[str, Any]:
    """The stored form of ``config``, validated (a bad one is a :class:`ConfigError`)."""

    def cents(value: object, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"payment: {what} must be an integer number of cents >= 0")
        if value > fields.MAX_BIGINT:
            raise ConfigError(f"payment: {what} is too large")
        return value

    if not all(isinstance(m, str) and m for m in config.methods):
        raise ConfigError("payment: methods must be non-empty strings")
    limits: dict[str, int] = {}
    for user, limit in config.credit_limits_cents.items():
        if not isinstance(user, int) or isinstance(user, bool) or user < 0:
            raise ConfigError(f"payment: bad user id {user!r} in credit limits")
        limits[str(user)] = cents(limit, f"credit limit of user {user}")
    return {
        "methods": sorted(config.methods),
        "default_credit_limit_cents": cents(config.default_credit_limit_cents, "default limit"),
        "credit_limits_cents": limits,
    }


def _without_card(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """What an authorization's idempotency fingerprint covers: the card only by its last four
    digits, so the payment database holds nothing a card number could be recovered from."""
    card = payload.get("card_number")
    if not isinstance(card, str):
        return payload
    last_four = "".join(filter(str.isdigit, card))[-4:]
    return {**payload, "card_number": f"****{last_four}"}


def _parse_order(payload: Mapping[str, Any]) -> str:
    return fields.order_id(payload)


def _parse_optional_order(payload: Mapping[str, Any]) -> str | None:
    return None if payload.get("order_id") is None else fields.order_id(payload)


_CLAIM = (
    "INSERT INTO payments (ref, order_id, user_id, amount_cents, method, state, reason,"
    " tombstone, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, ?, ?)"
)
#: What an authorization reads of its user's account (not ``*``: it knows the user).
_ACCOUNT = (
    "SELECT credit_limit_cents, authorized_cents, captured_cents, version FROM accounts"
    " WHERE user_id = ?"
)
#: An authorization's compare-and-swap of its account (the captured total stays as read).
_AUTHORIZE = (
    "UPDATE accounts SET authorized_cents = ?, version = version + 1"
    " WHERE user_id = ? AND version = ?"
)


# Moving an authorization on (released, or captured) is a relative update, not a
# compare-and-swap: the payment's own state transition (a CAS in the same transaction) makes it
# happen once, and the totals stay exact however other payments of the user moved them meanwhile.
_RELEASE = (
    "UPDATE accounts SET authorized_cents = authorized_cents - ?, version = version + 1"
    " WHERE user_id = ?"
)
_CAPTURE = (
    "UPDATE accounts SET authorized_cents = authorized_cents - ?,"
    " captured_cents = captured_cents + ?, version = version + 1 WHERE user_id = ?"
)


async def _release_authorization(reader: Reader, payment: Row) -> list[Write]:
    return [tuple_new(Write, (_RELEASE, (payment["amount_cents"], payment["user_id"]), 1))]


async def _capture_authorization(reader: Reader, payment: Row) -> list[Write]:
    amount = payment["amount_cents"]
    return [tuple_new(Write, (_CAPTURE, (amount, amount, payment["user_id"]), 1))]


# _CAPTURE with the payment's amount and user read by the statement itself (capture's shortcut).
_CAPTURE_BY_REF = (
    "UPDATE accounts SET"
    " authorized_cents = authorized_cents - (SELECT amount_cents FROM payments WHERE ref = ?),"
    " captured_cents = captured_cents + (SELECT amount_cents FROM payments WHERE ref = ?),"
    " version = version + 1 WHERE user_id = (SELECT user_id FROM payments WHERE ref = ?)"
)


async def _capture_by_ref(reader: Reader, ref: str) -> tuple[Write, ...]:
    """:func:`_capture_authorization`'s writes, the payment read by the statement itself."""
    return (tuple_new(Write, (_CAPTURE_BY_REF, (ref, ref, ref), 1)),)


def _authorizing(ref: str, req: AuthorizeRequest) -> Footprint:
    """An authorization reads and writes its user's account (and claims its own row)."""
    return LIFECYCLE.own(ref, ("accounts", req.user_id))


#: A void or a capture moves the amount of its payment on its user's account (read from its row).
_MOVING = LIFECYCLE.footprint("accounts")


class PaymentService(KitService):
    """The payment participant; see the module docstring for its commands and tables."""

    name = "payment"
    ddl = DDL
    lifecycle = LIFECYCLE

    methods: frozenset[str]
    default_limit_cents: int
    limits_cents: dict[int, int]

    def __init__(
        self,
        db: Database,
        stored_config: Mapping[str, Any],
        options: RunnerOptions,
        today: Callable[[], date] = date.today,
    ) -> None:
        self._today = today
        super().__init__(db, stored_config, options)

    @classmethod
    async def open(
        cls,
        db: Database,
        config: PaymentConfig | None = None,
        *,
        options: RunnerOptions | None = None,
        today: Callable[[], date] = date.today,
    ) -> Self:
        """Open (creating and seeding a new database from ``config``) the service on ``db``."""
        options = options or RunnerOptions()
        wanted = None if config is None else config_to_json(config)
        stored = await cls._prepare_database(db, wanted, [], options)
        return cls(db, stored, options, today)

    def _load_config(self, stored: Mapping[str, Any]) -> None:
        self.methods = frozenset(stored["methods"])
        self.default_limit_cents = int(stored["default_credit_limit_cents"])
        self.limits_cents = {int(u): int(c) for u, c in stored["credit_limits_cents"].items()}

    def credit_limit_cents(self, user_id: int) -> int:
        return self.limits_cents.get(user_id, self.default_limit_cents)

    def actions(self) -> Sequence[Action[Any]]:
        return (
            Action(
                "authorize",
                Phase.ACTION,
                parse_authorize,
                self._authorize,
                _without_card,
                _authorizing,
            ),
            Action(
                "void",
                Phase.COMPENSATE,
                _parse_order,
                LIFECYCLE.compensator(_release_authorization),
                footprint=_MOVING,
            ),
            Action(
                "capture",
                Phase.CONFIRM,
                _parse_optional_order,
                LIFECYCLE.confirmer(_capture_authorization),
                footprint=_MOVING,
                shortcut=LIFECYCLE.confirm_shortcut(_capture_by_ref),
            ),
        )

    async def _authorize(self, reader: Reader, ref: str, req: AuthorizeRequest, now: float) -> Plan:
        if req.method not in self.methods:
            return self._decline(ref, req, now, f"payment method {req.method!r} is not accepted")
        if req.card_number is not None or req.expiry is not None:  # else nothing to refuse
            card = card_refusal(req.card_number, req.expiry, self._today())
            if card is not None:
                return self._decline(ref, req, now, card)
        account = await reader.fetchone(_ACCOUNT, req.user_id)
        new = account is None
        if account is None:
            # Created lazily, with this authorization in it: one statement, not an INSERT and a
            # CAS. Inserting only if absent is the compare-and-swap on "no account yet": if a
            # concurrent writer created it first, no row changes and the plan is decided again.
            limit = self.credit_limit_cents(req.user_id)
            account = {"credit_limit_cents": limit, "authorized_cents": 0, "captured_cents": 0}
        used = account["authorized_cents"] + account["captured_cents"]
        if used + req.amount_cents > account["credit_limit_cents"]:
            reason = (
                f"credit limit exceeded for user {req.user_id}: limit "
                f"{cents_to_str(account['credit_limit_cents'])}, in use {cents_to_str(used)}, "
                f"requested {cents_to_str(req.amount_cents)}"
            )
            return self._decline(ref, req, now, reason)
        authorized = account["authorized_cents"] + req.amount_cents
        if new:
            write = Write(
                "INSERT INTO accounts (user_id, credit_limit_cents, authorized_cents,"
                " captured_cents, version) VALUES (?, ?, ?, 0, 1)"
                " ON CONFLICT (user_id) DO NOTHING",
                (req.user_id, account["credit_limit_cents"], authorized),
            )
        else:
            params = (authorized, req.user_id, account["version"])
            write = tuple_new(Write, (_AUTHORIZE, params, 1))
        claim = self._insert(ref, req, now, "authorized", None)
        amount = req.amount_cents
        body = {"amount_cents": amount, "state": "authorized"}
        # The body's canonical JSON alongside it (an int and a fixed word: nothing to escape;
        # an int subclass from an in-process caller is left to the kit to encode).
        text = f'{{"amount_cents":{amount},"state":"authorized"}}' if type(amount) is int else None
        return Plan(Reply(_OK, body, None, text), (write,), claim)

    def _decline(self, ref: str, req: AuthorizeRequest, now: float, reason: str) -> Plan:
        return Plan(Reply.refused(reason), claim=self._insert(ref, req, now, "declined", reason))

    def _insert(
        self, ref: str, req: AuthorizeRequest, now: float, state: str, reason: str | None
    ) -> Write:
        order_id, user_id, amount, method = req.order_id, req.user_id, req.amount_cents, req.method
        params = (ref, order_id, user_id, amount, method, state, reason, now, now)
        return tuple_new(Write, (_CLAIM, params, 1))
