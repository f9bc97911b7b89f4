"""The built-in demo world, packaged as ``ordersaga/orders/demo_world.json``.

``ordersaga run`` without ``--world`` starts a new data dir from it. Its shape, in brief:

- 25 items. ``A`` (12.50, stock 1000) and ``B`` (3.00, stock 500) as in the original example;
  ``C`` is out of stock (stock 0); ``GPU`` (stock 3) and ``CONSOLE`` (stock 5) are hot items
  with little stock; ``ANVIL`` (45 kg) can never ship alone and two ``DESK`` (24 kg) neither.
- Methods ``CreditCard``, ``DebitCard``, ``PayPal``; credit limit 1000.00 by default, with
  users 7 (25.00), 13 (100.00), 42 (50.00), 99 (0.00) and 500 (5000.00) set apart.
- Shipping to AU, CA, DE, ES, FR, GB, IT, JP, NL, US: 4.99 + 1.50 per kg, at most 30 kg.

With it, ``examples/seed.txt`` prints ``Order 123 confirmed`` then ``Order 456 failed``.
"""

from __future__ import annotations

from importlib import resources

from ordersaga.orders.world import World, parse_world_text

__all__ = ["DEMO_WORLD_RESOURCE", "demo_world", "demo_world_text"]

DEMO_WORLD_RESOURCE = "demo_world.json"


def demo_world_text() -> str:
    """The demo world file's JSON text, as packaged."""
    return resources.files("ordersaga.orders").joinpath(DEMO_WORLD_RESOURCE).read_text("utf-8")


def demo_world() -> World:
    """The built-in demo world (a fresh value on each call)."""
    return parse_world_text(demo_world_text(), source="built-in demo world")
