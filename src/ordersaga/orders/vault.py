"""Card data at rest: the card fields of a saga's input sealed with AES-256-GCM, then erased.

The one design (README, "Security"): an order's card number and expiry never reach the saga
log in clear. When an order becomes a saga, :meth:`CardVault.seal` replaces its
``payment_info`` with::

    {"method": "CreditCard", "card_last4": "1111", "sealed": "v1.<base64 nonce|ciphertext|tag>"}

where the ciphertext holds ``<card number>|<expiry>`` (either may be empty: absent; neither
can hold a ``|``, the input rules allow only digits and MM/YY), encrypted under a key derived
from the data key, with the saga's order id as associated data (a sealed card moved to another
saga does not open). The payment step opens it to build its call (:meth:`CardVault.open`); a
resumed saga that is not yet decided opens it again and sends the very same call. The order saga's
``redact`` (:func:`redact`) drops ``sealed`` in the same write as the saga's decision: after the
pivot no call needs the card, and from then on the log holds only ``card_last4`` (crypto-
shredding by deletion: the ciphertext is gone, not merely unreadable).

Fingerprints. A SHA-256 of an order is not safe next to the rest of the order: a card number
has few unknown digits once its last four are known, so a plain hash could be brute-forced.
:meth:`CardVault.fingerprint` turns an order's fingerprint into an HMAC-SHA-256 under another
key derived from the data key; resubmission compares these, so it works after shredding, and
the stored value reveals nothing without the key.

The data key is 32 random bytes. Where it comes from (``ORDERSAGA_DATA_KEY``, a key file) is
decided at the edge (:mod:`ordersaga.local.datakey`); this module only uses it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ordersaga.errors import ConfigError
from ordersaga.orders.cards import last_four

__all__ = ["KEY_BYTES", "CardVault", "SealedCardError", "redact"]

KEY_BYTES = 32
_PREFIX = "v1."
_NONCE_BYTES = 12


class SealedCardError(ConfigError):
    """A sealed card does not open: the data key is not the one that sealed it (or it was
    tampered with). A configuration error: every process of a saga log needs the same key."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.digest(key, b"ordersaga/" + purpose, "sha256")


class CardVault:
    """Seals and opens the card fields of order saga inputs under one data key."""

    __slots__ = ("_aead", "_mac")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a data key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(_derive(key, b"card-encryption/v1"))
        #: The fingerprints' HMAC-SHA-256, keyed once: each fingerprint copies it (a keyed
        #: context's copy costs about two thirds of ``hmac.digest``, which sets a new context
        #: up with the key every time; callgrind: ~18k instructions against ~26k).
        self._mac = hmac.new(_derive(key, b"order-fingerprint/v1"), digestmod="sha256")

    @classmethod
    def ephemeral(cls) -> CardVault:
        """A vault with a random key nobody keeps (for logs that do not outlive the process)."""
        return cls(os.urandom(KEY_BYTES))

    def fingerprint(self, digest: str) -> str:
        """The keyed fingerprint stored for an order whose plain fingerprint is ``digest``."""
        mac = self._mac.copy()
        mac.update(digest.encode("ascii"))
        return mac.hexdigest()

    def seal(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (an order's canonical JSON form) with its card fields sealed.

        An order without card fields is returned unchanged. ``data`` itself is not modified.
        """
        payment = data.get("payment_info")
        if not isinstance(payment, dict):
            return data
        card, expiry = payment.get("card_number"), payment.get("expiry")
        if card is None and expiry is None:
            return data
        if "|" in (card or "") or "|" in (expiry or ""):
            raise ValueError("a card number or an expiry with '|' breaks the input rules")
        secret = f"{card or ''}|{expiry or ''}"
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), _associated(data))
        sealed_payment = {
            "method": payment.get("method"),
            "card_last4": None if card is None else last_four(card),
            "sealed": _PREFIX + base64.b64encode(nonce + sealed).decode("ascii"),
        }
        return {**data, "payment_info": sealed_payment}

    @staticmethod
    def plain(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The card fields of an input that holds none sealed (no key needed)."""
        return _plain(data)

    def open(self, data: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The card number and expiry of a saga input (sealed, or plain from an older log).

        Raises :class:`SealedCardError` when the sealed fields do not open with this key, and
        ``ValueError`` when they were erased (a decided saga never needs them).
        """
        sealed = data["payment_info"].get("sealed")
        if sealed is None:
            return self.plain(data)
        try:
            if not isinstance(sealed, str) or not sealed.startswith(_PREFIX):
                raise ValueError("unknown format")
            raw = base64.b64decode(sealed[len(_PREFIX) :], validate=True)
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated(data))
            card, _, expiry = plain.decode().partition("|")
        except (InvalidTag, ValueError, binascii.Error):
            raise SealedCardError(
                f"the card of order {data.get('order_id')!r} does not open with this data key"
                " (every process on one saga log needs the same ORDERSAGA_DATA_KEY)"
            ) from None
        return card or None, expiry or None


def _plain(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    payment = data["payment_info"]
    if "card_last4" in payment:
        raise ValueError("the card of this saga was erased once the saga was decided")
    return payment.get("card_number"), payment.get("expiry")


def _associated(data: Mapping[str, Any]) -> bytes:
    return str(data.get("order_id")).encode("utf-8", "surrogatepass")


def redact(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a decided order saga keeps of its input: everything but the sealed card fields."""
    payment = data.get("payment_info")
    if not isinstance(payment, Mapping) or "sealed" not in payment:
        if isinstance(payment, Mapping) and payment.get("card_number") is not None:
            # A plain card from a log written before sealing: erase it all the same.
            kept = {"method": payment.get("method")}
            kept["card_last4"] = last_four(str(payment["card_number"]))
            return {**data, "payment_info": kept}
        return data
    return {**data, "payment_info": {k: v for k, v in payment.items() if k != "sealed"}}
