"""The participant kit: how every service runs a command exactly once under optimistic locking.

A service declares its actions; the kit does the rest. Running one command::

    validate the envelope        service name, action name, key (messages.parse_key), key phase
                                 == action phase, payload size and JSON-ness   → else ``invalid``
    parse the payload            the action's ``parse``                         → else ``invalid``
    ┌► look the key up           same fingerprint → the stored reply, exactly
    │                            other fingerprint → ``conflict``
    │  decide (read phase)       the action's ``decide`` reads rows (with their ``version``)
    │                            and returns a :class:`Plan`: the reply and the writes that
    │                            carry it out
    │  apply (write phase)       in a write transaction: insert the idempotency record (key,
    │                            fingerprint, reply), then each write, checking that it changed
    │                            exactly the rows it expects; commit (a group commit, below)
    └─ ConflictError             a version moved (``UPDATE ... WHERE version = ?`` changed 0
                                 rows), or a unique key was taken (the same key committed by a
                                 concurrent duplicate, a tombstone racing an action): roll back,
                                 back off with full jitter, re-read, decide again

Why this is safe:

* Every write of a resource's state is a compare-and-swap on the version read in the read phase
  (or, for a shortcut, on the state: below), or an insert under a primary key, so a plan decided
  on a stale snapshot never commits: no lost update, no oversell. (Counters moved by a
  transition — held stock sold, an authorization captured — are relative updates made in the
  same transaction as the transition's CAS.)
* The idempotency record commits in the same transaction as the business change, so "applied"
  and "recorded" cannot diverge, whatever crashes when. Refusals are recorded too: a repeat gets
  the same refusal even if the state has changed since.
* The record is inserted before the business writes: concurrent duplicates of one key collide on
  its primary key before they touch business rows (on PostgreSQL the second waits for the first,
  then fails and re-reads the stored reply), and no lock is ever taken on business rows while
  waiting for a key.
* A refusal that writes nothing is decided on a snapshot that existed during the call, so it is
  linearizable at its read.

Group commit. Concurrent commands share one local transaction and one commit
(:class:`ordersaga.db.groupcommit.GroupCommitter`): commands that arrive in the same event-loop
iteration form a batch; each caller gets its reply only after the commit that carries its command,
so "replied" still implies "durable". A command that fails in a batch (a lost race, a database
error, a bug) must not fail the others: the batch runs as one plain transaction first and, if a
command failed, again with a SAVEPOINT around each command, so the failure is rolled back alone
and reported to its own caller (who retries it as above) while the others commit. A batch that
applied nothing (only replays) is rolled back rather than committed.

Where a command is decided. By default its read phase runs *inside* the batch's transaction, after
the commands before it: it sees their effects, so the commands of one batch never conflict with
each other (on SQLite, which holds the write lock for the whole batch, they never conflict at all),
a repeat of a key applied earlier in the batch replays it, and the version checks still catch
writers on other connections or in other processes (PostgreSQL, several replicas). The key is not
even looked up first: the record's INSERT tells a repeat (one read less per command). On SQLite a
failed INSERT undoes only itself, so the repeat is then replayed in place; in PostgreSQL's
savepoint run (below) the record's INSERT does nothing on a recorded key instead. With
:attr:`RunnerOptions.pause` set, the read phase runs outside any transaction as a snapshot read,
then the pause, then the batch applies the plan: the classic optimistic path, which tests use to
make in-process writers race for real.

Pipelining (PostgreSQL, :mod:`ordersaga.db.pipelined`). The first, plain run of a batch is a
pipelined transaction there: writes are queued and go with the next read, their row counts checked
before the COMMIT; the commands are decided side by side, their reads sent in waves
(:mod:`ordersaga.participant.waves`, which says why each command still reads what it would one
command after the other). The record and the claim are plain INSERTs on this path: a repeat, or an
action on a taken resource, fails the batch's transaction, which is then run again with a
SAVEPOINT per command, unpipelined, where each command gets its precise outcome as above.

Shortcuts. A confirmation whose action declares a :class:`~.plan.Shortcut` (a state change that
needs nothing read first) is applied, one statement after another, by recording its usual reply
and then a write guarded by the row's state (``WHERE ref = ? AND state = 'held'``) instead of a
read and a compare-and-swap on the version: the same row changes under the same write lock, and
where the guard finds the row in another state the command is decided as usual and its record
corrected, in the same transaction. Pipelined batches decide as usual.

:meth:`CommandRunner.apply` runs one already-decided command inside a transaction it is given and
does not commit.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ordersaga.db import Database, Tx
from ordersaga.db.groupcommit import GroupCommitter
from ordersaga.errors import ConflictError
from ordersaga.participant.age import expired
from ordersaga.participant.applier import Applier, Job
from ordersaga.participant.envelope import Envelope
from ordersaga.participant.fields import BadPayload
from ordersaga.participant.options import (
    DEFAULT_MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    KitStats,
    LockingPolicy,
    RunnerOptions,
)
from ordersaga.participant.plan import (
    Action,
    Cancelled,
    Existing,
    Footprint,
    Plan,
    Prepared,
    Reader,
    Shortcut,
    Write,
)
from ordersaga.participant.records import is_canonical as _is_canonical  # noqa: F401 (tests)
from ordersaga.participant.records import probe as probe_key
from ordersaga.participant.records import (
    replay,
    stored,
)
from ordersaga.participant.waves import apply_in_waves
from ordersaga.protocol.messages import (
    Command,
    Probe,
    Reply,
    ReplyStatus,
)
from ordersaga.telemetry.histogram import Histogram

__all__ = [
    "DEFAULT_MAX_BATCH",
    "MAX_PAYLOAD_BYTES",
    "Action",
    "CommandRunner",
    "Footprint",
    "KitStats",
    "LockingPolicy",
    "Plan",
    "Prepared",
    "Reader",
    "RunnerOptions",
    "Shortcut",
    "Write",
]


@dataclass(slots=True)
class _BatchCounters:
    """What the group committer counts itself (its commits include empty, rolled-back ones)."""

    commits: int = 0
    writes: int = 0


class _NothingToCommit(Exception):
    """Raised inside a batch's transaction that applied nothing, to roll it back."""


async def _answered(reply: Reply) -> Reply:
    return reply


class CommandRunner:
    """Runs one service's commands: validation, idempotency, optimistic-locking retries, probes."""

    def __init__(
        self,
        db: Database,
        service: str,
        actions: Sequence[Action[Any]],
        cancelled: Cancelled,
        options: RunnerOptions,
        existing: Existing | None = None,
    ) -> None:
        self._db = db
        self._existing = existing
        self._service = service
        self._envelope = Envelope(service, actions, options.max_payload_bytes)
        self._cancelled = cancelled
        self._options = options
        self.stats = KitStats()
        self._applier = Applier(service, db.dialect, existing)
        self._committer: GroupCommitter[Job, Reply] = GroupCommitter(
            self._apply_batch,
            _BatchCounters(),
            max_batch=options.max_batch,
            name=f"{service} service",
        )

    @property
    def batch_sizes(self) -> Histogram:
        """Commands per group commit (for the metrics)."""
        return self._committer.batch_sizes

    async def close(self) -> None:
        """Refuse new commands and wait until every pending one is committed."""
        await self._committer.close()

    def handle(self, command: Command) -> Coroutine[Any, Any, Reply]:
        """Apply ``command`` at most once (see the module docstring); never raises for bad input.

        Checks ``command`` now and gives the coroutine that runs it (:meth:`run`, itself: no
        coroutine of its own around it), to be awaited at once.
        """
        self.stats.commands += 1
        prepared = self.prepare(command)
        if isinstance(prepared, Reply):
            if prepared.status is ReplyStatus.EXPIRED:
                self.stats.expired += 1
            else:
                self.stats.invalid += 1
            return _answered(prepared)
        return self.run(prepared)

    def prepare(self, command: Command) -> Prepared | Reply:
        """Validate the envelope and parse the payload; an ``invalid`` reply when it is bad.

        A command older than the message-age limit gets ``expired`` before anything else is
        looked at (:func:`ordersaga.participant.retention.expired`).
        """
        limit = self._options.max_message_age
        sent_at = command.sent_at
        # Within the limit (the usual case) without a call of expired's own: its own test.
        if limit is not None and sent_at is not None:
            now = float(self._options.clock.time())  # _now's, without a call of its own
            if not now - float(sent_at) <= limit:
                late = expired(command, limit, now)
                if late is not None:
                    return late
        try:
            return self._envelope.prepare(command)
        except BadPayload as exc:
            return Reply.invalid(str(exc))

    async def run(self, cmd: Prepared) -> Reply:
        """The read → write loop, retried while optimistic locking loses races."""
        policy = self._options.locking
        pause = self._options.pause
        for attempt in range(1, policy.max_attempts + 1):
            plan = None
            if pause is not None:
                record = await stored(self._db, cmd.key)
                if record is not None:
                    reply = replay(cmd.key, cmd.fingerprint, record)
                    self.stats.replays += reply.status is not ReplyStatus.CONFLICT
                    return reply
                plan = await cmd.action.decide(self._db, cmd.resource, cmd.request, self._now())
                await pause()
            try:
                return await self._committer.enqueue((cmd, plan))
            except ConflictError:
                self.stats.conflicts += 1
                if attempt < policy.max_attempts:
                    await self._options.clock.sleep(policy.backoff(attempt, self._options.rng))
        raise ConflictError(
            f"{self._service}: {cmd.key}: still conflicting after {policy.max_attempts} attempts"
        )

    async def _apply_batch(self, jobs: Sequence[Job]) -> list[Reply | Exception]:
        """Run ``jobs`` in one transaction (see the module docstring); one outcome per job.

        Commands decided inside the batch almost never fail, so a batch first runs as one plain
        transaction (pipelined where the database can: :meth:`Database.pipeline`). Only if a
        command fails (which rolls everything back) is it run again with a SAVEPOINT around each
        command, unpipelined, so the failure stays that command's own. Raises only when the
        transaction itself fails (or, unpipelined, the single command of a batch of one does);
        the committer then runs each command in a transaction of its own.
        """
        if len(jobs) == 1 or all(plan is None for _, plan in jobs):
            try:
                return await self._transact(jobs, isolated=False)
            except Exception:
                # Pipelined, even a lone command's repeat or taken resource fails its batch.
                if len(jobs) == 1 and not self._db.pipelined:
                    raise
        return await self._transact(jobs, isolated=True)

    async def _transact(self, jobs: Sequence[Job], *, isolated: bool) -> list[Reply | Exception]:
        outcomes: list[Reply | Exception] = []
        applied = replayed = 0
        try:
            async with self._db.transaction() if isolated else self._db.pipeline() as tx:
                now = self._now()  # one time for the batch: its commands commit together
                if tx.pipelined and all(plan is None for _, plan in jobs):
                    commands = [cmd for cmd, _ in jobs]
                    await apply_in_waves(tx, commands, now, outcomes, self._applier.unless_existing)
                    applied = len(jobs)  # pipelined, every command writes (or all fail)
                else:
                    applied, replayed = await self._apply_each(tx, jobs, now, isolated, outcomes)
                if not applied:
                    raise _NothingToCommit
        except _NothingToCommit:
            pass
        else:
            self.stats.commits += 1
            self.stats.applied += applied
        self.stats.replays += replayed
        return outcomes

    async def _apply_each(
        self,
        tx: Tx,
        jobs: Sequence[Job],
        now: float,
        isolated: bool,
        outcomes: list[Reply | Exception],
    ) -> tuple[int, int]:
        """Apply ``jobs`` one after the other (``isolated``: each in a savepoint of its own),
        appending each outcome; how many wrote, and how many were replayed."""
        applied = replayed = 0
        apply_job = self._applier.apply_job
        for job in jobs:
            if isolated:
                await tx.execute("SAVEPOINT command")
            try:
                reply, wrote = await apply_job(tx, job, now)
            except Exception as exc:
                if not isolated:
                    raise
                # This command's own failure, reported to it. If the rollback itself fails, the
                # transaction is lost: the whole batch fails.
                await tx.execute("ROLLBACK TO SAVEPOINT command")
                outcomes.append(exc)
            else:
                outcomes.append(reply)
                applied += wrote
                replayed += not wrote and reply.status is not ReplyStatus.CONFLICT
            if isolated:
                await tx.execute("RELEASE SAVEPOINT command")
        return applied, replayed

    async def apply(self, tx: Tx, cmd: Prepared, plan: Plan) -> Reply:
        """Record ``cmd``'s reply and run its writes inside ``tx``, without committing
        (:meth:`Applier.apply`)."""
        return await self._applier.apply(tx, cmd, plan, self._now())

    async def probe(self, key: str) -> Probe:
        """What became of ``key``: applied, refused (also: cancelled by a tombstone), unknown."""
        return await probe_key(self._db, key, self._cancelled)

    def _now(self) -> float:
        return float(self._options.clock.time())
