"""Hypothesis strategies for valid orders (every field within the input rules)."""

from __future__ import annotations

from hypothesis import strategies as st

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo

_NON_PRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")


def printable(exclude: str = "", *, space: bool = False) -> st.SearchStrategy[str]:
    """Single printable characters, without ``exclude``; ASCII space only when ``space``."""
    chars = st.characters(blacklist_categories=_NON_PRINTABLE, blacklist_characters=exclude)
    return chars | st.just(" ") if space else chars


def _stripped(text: str) -> bool:
    return text == text.strip()


order_ids = st.text(printable(","), min_size=1, max_size=128)
user_ids = st.integers(min_value=0, max_value=2**63 - 1)
item_ids = st.text(printable(",{}[]", space=True), min_size=1, max_size=20).filter(_stripped)
quantities = st.integers(min_value=1, max_value=10**9)
methods = st.text(printable(","), min_size=1, max_size=64)
card_numbers = st.text(st.sampled_from("0123456789"), min_size=12, max_size=19)
expiries = st.builds(
    lambda month, year: f"{month:02d}/{year:02d}",
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=99),
)
address_parts = st.text(printable(",", space=True), max_size=40).filter(_stripped)
countries = address_parts.filter(bool)

line_items = st.lists(
    st.builds(LineItem, item_ids, quantities), min_size=1, max_size=5, unique_by=lambda i: i.item_id
).map(tuple)

payments = st.builds(PaymentInfo, methods, st.none() | card_numbers, st.none() | expiries)
addresses = st.builds(Address, address_parts, address_parts, countries)

orders = st.builds(Order, order_ids, user_ids, line_items, payments, addresses)
