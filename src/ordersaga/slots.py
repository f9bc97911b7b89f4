"""Building a frozen, slotted dataclass or a named tuple at a slot's cost: the bottom layer's
helpers.

A frozen dataclass's generated ``__init__`` stores each field through ``object.__setattr__``
(the class's own ``__setattr__`` refuses): a call of a slot wrapper per field, about 1.2k
instructions each. The values made once or more per order avoid it in one of two ways:

* :func:`slot_setter`: a class's own ``__init__`` stores each field with its slot
  descriptor's ``__set__`` (:class:`~ordersaga.protocol.messages.Reply`,
  :class:`~ordersaga.participant.plan.Plan`): about half the instructions, and every
  ``Cls(...)`` call benefits.
* :func:`slot_twin`: a builder function fills a plain twin class with the same slots (plain
  attribute stores), then makes it the class (``__class__`` assignment is allowed between
  classes with the same slots): about a sixth. What comes out is an ordinary instance (same
  type, eq, hash, repr, pickling, frozen). A builder takes every field positionally and does
  no defaults processing and no checks: only for values its caller made itself.

The classes stay frozen either way: assignment from outside still raises.

A named tuple's own ``__new__`` is a generated Python function in front of ``tuple.__new__``
(~1.2k instructions a value): :data:`tuple_new` is ``tuple.__new__`` itself, so
``tuple_new(NT, (a, b))`` makes ``NT(a, b)`` without it; every field given, in order (no
defaults), for the named tuples made per command and per log write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["slot_setter", "slot_twin", "tuple_new"]

T = TypeVar("T")

#: ``tuple.__new__`` itself (see the module docstring).
tuple_new = tuple.__new__


def slot_setter(cls: type[T], name: str) -> Callable[[T, Any], None]:
    """The ``__set__`` of ``cls``'s slot descriptor for field ``name``."""
    setter: Callable[[T, Any], None] = vars(cls)[name].__set__
    return setter


def slot_twin(cls: type) -> type:
    """A plain class with ``cls``'s slots: a builder fills one, then sets ``__class__ = cls``."""
    slots: tuple[str, ...] = vars(cls)["__slots__"]
    twin: type = type(f"_{cls.__name__}Slots", (), {"__slots__": slots})
    return twin
