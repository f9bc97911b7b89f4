"""Setting a field of a frozen, slotted dataclass from its own ``__init__``, at a slot's cost.

A frozen dataclass's generated ``__init__`` stores each field through ``object.__setattr__``
(the class's own ``__setattr__`` refuses). The records built once or more per command
(:class:`~ordersaga.protocol.messages.Reply`, :class:`~ordersaga.participant.plan.Plan`) write
their own ``__init__`` with the slot descriptors' ``__set__`` instead: the same stores, about
half the instructions. The classes stay frozen: assignment from outside still raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["slot_setter"]

T = TypeVar("T")


def slot_setter(cls: type[T], name: str) -> Callable[[T, Any], None]:
    """The ``__set__`` of ``cls``'s slot descriptor for field ``name``."""
    setter: Callable[[T, Any], None] = vars(cls)[name].__set__
    return setter
