"""Sealing card fields: they open with the key that sealed them, for the order they belong to."""

from __future__ import annotations

import hmac
import json

import pytest

from ordersaga.orders.vault import CardVault, SealedCardError, redact

KEY = bytes(range(32))
ORDER = {
    "order_id": "o1",
    "user_id": 7,
    "items": [{"item_id": "A", "quantity": 1}],
    "payment_info": {"method": "CreditCard", "card_number": "4111111111111111", "expiry": "12/30"},
    "shipping_address": {"street": "", "city": "", "country": "US"},
}


def test_sealed_fields_hold_no_card_and_open_again() -> None:
    vault = CardVault(KEY)
    sealed = vault.seal(ORDER)
    assert ORDER["payment_info"]["card_number"] == "4111111111111111"  # not modified
    text = json.dumps(sealed)
    assert "4111111111111111" not in text and "12/30" not in text
    assert sealed["payment_info"]["card_last4"] == "1111"
    assert vault.open(sealed) == ("4111111111111111", "12/30")
    assert vault.seal(ORDER) != sealed  # a fresh nonce each time


def test_a_card_opens_only_with_its_key_and_for_its_order() -> None:
    sealed = CardVault(KEY).seal(ORDER)
    with pytest.raises(SealedCardError, match="does not open"):
        CardVault(bytes(32)).open(sealed)
    with pytest.raises(SealedCardError):
        CardVault(KEY).open({**sealed, "order_id": "o2"})  # moved to another saga


def test_orders_without_a_card_are_left_alone() -> None:
    paypal = {**ORDER, "payment_info": {"method": "PayPal", "card_number": None, "expiry": None}}
    vault = CardVault(KEY)
    assert vault.seal(paypal) is paypal and redact(paypal) is paypal
    assert vault.open(paypal) == (None, None)
    expiry_only = {**ORDER, "payment_info": {"method": "CreditCard", "expiry": "01/29"}}
    assert vault.open(vault.seal(expiry_only)) == (None, "01/29")


def test_redaction_erases_the_sealed_fields_for_good() -> None:
    vault = CardVault(KEY)
    kept = redact(vault.seal(ORDER))
    assert kept["payment_info"] == {"method": "CreditCard", "card_last4": "1111"}
    with pytest.raises(ValueError, match="erased"):
        vault.open(kept)
    # A plain card (a log written before sealing) is erased too.
    assert redact(ORDER)["payment_info"] == {"method": "CreditCard", "card_last4": "1111"}


def test_fingerprints_are_keyed() -> None:
    digest = "ab" * 32
    assert CardVault(KEY).fingerprint(digest) == CardVault(KEY).fingerprint(digest)
    assert CardVault(KEY).fingerprint(digest) != CardVault(bytes(32)).fingerprint(digest)
    assert CardVault(KEY).fingerprint(digest) != digest


def test_a_fingerprint_is_the_hmac_sha256_of_the_digest_under_the_derived_key() -> None:
    """What ``hmac.digest`` gives, whatever was fingerprinted before (the keyed HMAC is copied,
    never updated itself)."""
    vault = CardVault(KEY)
    mac_key = hmac.digest(KEY, b"ordersaga/order-fingerprint/v1", "sha256")
    for digest in ["ab" * 32, "", "0" * 64, "ab" * 32, "f" * 64]:
        expected = hmac.digest(mac_key, digest.encode("ascii"), "sha256").hex()
        assert vault.fingerprint(digest) == expected
