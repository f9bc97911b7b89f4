"""Group commit of the saga log: the writes of concurrent sagas share one transaction and commit.

The machinery is :class:`ordersaga.db.groupcommit.GroupCommitter` (shared with the participant
services). For the saga log it means: every ``create``/``update`` of a SQL store is queued, the
writes that concurrent sagas make in one loop iteration are applied together by
:func:`ordersaga.saga.store.sqlbatch.apply_batch` in one transaction, and no call returns before
the commit that carries its write is durable — so a decision is still durable before the engine
acts on it. A write that breaks the status life cycle is that write's error, not its batch's.
"""

from __future__ import annotations

from ordersaga.db.groupcommit import DEFAULT_MAX_BATCH, ApplyBatch, Counters, GroupCommitter

__all__ = ["DEFAULT_MAX_BATCH", "ApplyBatch", "Counters", "GroupCommitter"]
