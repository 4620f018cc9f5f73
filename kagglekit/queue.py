"""``kagglekit queue``: keep the account's accelerator slots busy with experiments, within the quota.

Kaggle runs a few batch sessions per accelerator at once (2 GPU), each running session *reserves*
its remaining allowance up to its limit, and a push that would break either rule is refused
("Maximum batch GPU session count of 2 reached", "... projected to exceed maximum weekly GPU
quota"; kaggle-prod-behaviour §3, §4). A refusal is not a failure: it means "later". The queue:

- pushes an experiment (experiments.py: each its own kernel) while a slot is free, never more
  than the account's cap per accelerator (``--slots`` lower), and only when the admission rule
  (quota.admits: used + reserved < allowance, the push preflight's rule) says Kaggle would take
  it; a refusal anyway ("projected", "session count") backs off and retries;
- follows each running session with one status request per interval; when it ends (after the
  save phase, §5) pulls its outputs once, and continues a session its time guard ended through
  the resume relay (chain.py: the next session on the sibling kernel);
- stops pushing at ``--max-gpu-hours`` and leaves the rest queued.

Everything lives in the ledger (tables ``queue_items``, ``queue_leases``, ``queue_pulls``): a
killed ``queue run`` loses nothing, and running it again picks up the running sessions. One
process at a time pushes for a queue: it holds a lease (renewed every tick; taken over when it
expired or its process is gone), so two ``queue run`` never push the same experiment twice.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit import paths
from kagglekit.constants import (
    FINAL_STATUSES,
    MAX_BATCH_SESSIONS,
    SESSION_LIMIT_SECONDS,
    STATUS_COMPLETE,
    accelerator_kind,
)
from kagglekit.errors import CLI, ApiError, KagglekitError, KaggleRefusedError, NotFoundError, QueueBusyError
from kagglekit.experiments import Experiment, experiment_kernel
from kagglekit.kernel_ref import KernelRef

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.ledger import Ledger, RunRecord
    from kagglekit.run_options import RunOptions
    from kagglekit.settings import ProjectSettings

# Item states.
QUEUED = "queued"  # not pushed yet
RESUME = "resume"  # its last session ended by its time guard: the next one waits for a slot
PUSHING = "pushing"  # a push is (or was, when the process died) under way
RUNNING = "running"  # a session is queued/running on Kaggle (or saving its outputs)
ENDING = "ending"  # its session ended (the slot is free): outputs to pull, then continue or finish
CANCELLING = "cancelling"  # `queue cancel` stopped its session; its outputs are pulled when it ends
DONE = "done"
FAILED = "failed"
STOPPED = "stopped"  # its session was stopped outside the queue (web UI, session limit)
CANCELLED = "cancelled"
HALTED = "halted"  # ended COMPLETE-or-not in a way kagglekit does not continue blindly
WAITING = (QUEUED, RESUME)
ACTIVE = (PUSHING, RUNNING, CANCELLING)  # holding a slot on Kaggle
PENDING = (*ACTIVE, ENDING)  # work left for `queue run` before it may end
ENDED = (DONE, FAILED, STOPPED, CANCELLED, HALTED)

LEASE_TTL_S = 120.0
ADOPT_GRACE_S = 120.0  # a brand-new kernel may answer 404/403 for a while after its push (§3)
DEFAULT_INTERVAL_S = 30.0
MAX_SESSIONS = 20  # per experiment, as push --until-done's default --max-sessions
MAX_BACKOFF_S = 600.0


@dataclasses.dataclass(frozen=True)
class Item:
    """One experiment in the queue and where it stands (frozen: ``QueueStore.items`` hands out the same ones)."""

    id: int
    queue: str
    account: str
    name: str
    kernel: str  # the experiment's own kernel (the chain's first; the relay sibling is <kernel>-relay)
    experiment: Experiment
    position: int
    state: str
    chain_id: int | None
    cur_kernel: str | None
    cur_version: int | None
    pushing_since: datetime | None
    note: str | None

    @property
    def current(self) -> KernelRef | None:
        """Its newest session (None before the first push)."""
        if self.cur_kernel is None or self.cur_version is None:
            return None
        return KernelRef.from_id(self.cur_kernel, self.cur_version)


def _item(row: Any) -> Item:
    from kagglekit.ledger import parse_time

    return Item(id=row["id"], queue=row["queue"], account=row["account"], name=row["name"], kernel=row["kernel"],
                experiment=Experiment.from_json(row["spec"]), position=row["position"], state=row["state"],
                chain_id=row["chain_id"], cur_kernel=row["cur_kernel"], cur_version=row["cur_version"],
                pushing_since=parse_time(row["pushing_since"]), note=row["note"])


class QueueStore:
    """The queue's rows in the ledger (one queue per project kernel and account)."""

    def __init__(self, ledger: Ledger, queue: str, account: str) -> None:
        self.ledger, self.queue, self.account = ledger, queue, account
        self.holder = uuid.uuid4().hex
        self.host = socket.gethostname()
        self._read: tuple[tuple[int, int], list[Item]] | None = None  # (the ledger's change mark, the items)

    def _now(self) -> str:
        return self.ledger.now().isoformat()

    def items(self) -> list[Item]:
        """The queue's items, read again only when the ledger changed since (here or in another process):
        a tick asks several times, and the ledger, not this copy, stays the one truth."""
        mark = self.ledger.change_mark()  # taken before the read: a change during it is seen next time
        if self._read is not None and self._read[0] == mark:
            return list(self._read[1])
        rows = self.ledger.query("SELECT * FROM queue_items WHERE queue=? AND account=? ORDER BY position, id",
                                 (self.queue, self.account))
        items = [_item(r) for r in rows]
        self._read = (mark, items)
        return list(items)

    def get(self, name: str) -> Item | None:
        return next((i for i in self.items() if i.name == name), None)

    def add(self, experiments: Sequence[Experiment], project_kernel: str) -> list[Item]:
        """Enqueue the experiments not in the queue yet (by name); returns the ones added."""
        added = []
        with self.ledger.transaction() as conn:
            known = {r[0]: r[1] for r in conn.execute(
                "SELECT name, spec FROM queue_items WHERE queue=? AND account=?", (self.queue, self.account))}
            position = conn.execute("SELECT COALESCE(MAX(position), 0) FROM queue_items WHERE queue=? AND account=?",
                                    (self.queue, self.account)).fetchone()[0]
            for e in experiments:
                if e.name in known:
                    if Experiment.from_json(known[e.name]) != e:
                        raise KagglekitError(
                            f"The queue already has an experiment '{e.name}' with other settings "
                            f"({Experiment.from_json(known[e.name]).overrides_text() or 'no overrides'}).",
                            hint=f"Give it another name, or `{CLI} queue cancel {e.name}` and `{CLI} queue "
                                 "forget` it first.")
                    continue
                position += 1
                now = self._now()
                conn.execute("INSERT INTO queue_items (queue, account, name, kernel, spec, position, state, "
                             "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                             (self.queue, self.account, e.name, experiment_kernel(project_kernel, e.name),
                              e.to_json(), position, QUEUED, now, now))
                added.append(e.name)
        return [i for i in self.items() if i.name in added]

    def forget(self, names: Sequence[str]) -> int:
        """Remove ended or waiting items from the queue (their runs stay in the ledger)."""
        with self.ledger.transaction() as conn:
            marks = ",".join("?" * len(names))
            cur = conn.execute(f"DELETE FROM queue_items WHERE queue=? AND account=? AND name IN ({marks}) "
                               f"AND state NOT IN ('{PUSHING}', '{RUNNING}', '{CANCELLING}')",
                               (self.queue, self.account, *names))
            return int(cur.rowcount)

    def transition(self, item_id: int, states: Sequence[str], **fields: Any) -> bool:
        """Change an item only while it is in one of ``states`` (a cancel meanwhile wins)."""
        fields["updated_at"] = self._now()
        for key in ("pushing_since", "push_sent_at"):
            if isinstance(fields.get(key), datetime):
                fields[key] = fields[key].isoformat()
        cols = ", ".join(f"{k}=?" for k in fields)
        marks = ",".join("?" * len(states))
        with self.ledger.transaction() as conn:
            cur = conn.execute(f"UPDATE queue_items SET {cols} WHERE id=? AND state IN ({marks})",
                               (*fields.values(), item_id, *states))
            return bool(cur.rowcount)

    # --- the lease: one pushing process per queue -------------------------------------------------

    def acquire(self, ttl_s: float = LEASE_TTL_S) -> None:
        """Take the queue's lease, or raise QueueBusyError naming the process that holds it."""
        now = time.time()
        with self.ledger.transaction() as conn:
            row = conn.execute("SELECT * FROM queue_leases WHERE queue=?", (self.queue,)).fetchone()
            held = row is not None and row["holder"] != self.holder and row["expires_at"] > now
            if held and not (row["host"] == self.host and not paths.pid_alive(int(row["pid"]))):
                raise QueueBusyError(
                        f"Another `kagglekit queue run` (pid {row['pid']} on {row['host']}) is running this queue; "
                        "two would push the same experiments.",
                        hint=f"Watch it with `{CLI} queue status`. If that process is gone, its lease expires "
                             f"within {int(ttl_s)} s.")
            conn.execute("INSERT OR REPLACE INTO queue_leases (queue, holder, host, pid, expires_at, note) VALUES "
                         "(?,?,?,?,?,NULL)", (self.queue, self.holder, self.host, os.getpid(), now + ttl_s))

    def renew(self, ttl_s: float = LEASE_TTL_S, note: str | None = None) -> None:
        """Extend the lease (and say why nothing is pushed, for `queue status`); lost it (expired and taken
        over): QueueBusyError, push nothing more."""
        with self.ledger.transaction() as conn:
            cur = conn.execute("UPDATE queue_leases SET expires_at=?, note=? WHERE queue=? AND holder=?",
                               (time.time() + ttl_s, note, self.queue, self.holder))
            if not cur.rowcount:
                raise QueueBusyError("This `queue run` lost its lease to another process (it was paused longer than "
                                     f"{int(ttl_s)} s); it stops so that the other one alone pushes.",
                                     hint=f"`{CLI} queue status` shows what runs.")

    def release(self) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("DELETE FROM queue_leases WHERE queue=? AND holder=?", (self.queue, self.holder))

    def lease_holder(self) -> dict[str, Any] | None:
        rows = self.ledger.query("SELECT * FROM queue_leases WHERE queue=?", (self.queue,))
        if not rows or rows[0]["expires_at"] < time.time():
            return None
        if rows[0]["host"] == self.host and not paths.pid_alive(int(rows[0]["pid"])):
            return None  # killed without releasing it: the next `queue run` takes it over at once
        return {"pid": rows[0]["pid"], "host": rows[0]["host"], "waiting": rows[0]["note"]}

    # --- outputs pulled once ----------------------------------------------------------------------

    def pulled(self, kernel: str, version: int) -> str | None:
        rows = self.ledger.query("SELECT target FROM queue_pulls WHERE account=? AND kernel=? AND version=?",
                                 (self.account, kernel, version))
        return str(rows[0]["target"]) if rows else None

    def mark_pulled(self, kernel: str, version: int, target: Path) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO queue_pulls (account, kernel, version, target, pulled_at) "
                         "VALUES (?,?,?,?,?)", (self.account, kernel, version, str(target), self._now()))


# --- what the queue shows -------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    name: str
    state: str
    kernel: str
    session: str | None  # kernel vN of the newest session
    status: str | None
    sessions: int
    gpu_hours: float
    overrides: str
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class View:
    """The queue at one moment (the live view, ``queue status``, ``--json``)."""

    queue: str
    rows: list[Row]
    running: dict[str, int]
    slots: dict[str, int]
    queue_gpu_hours: float
    max_gpu_hours: float | None
    quota: dict[str, Any] | None
    waiting: str | None  # why nothing more is pushed now
    holder: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rows"] = [r.as_dict() for r in self.rows]
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out


def sessions_of(ledger: Ledger, item: Item) -> list[RunRecord]:
    """The item's sessions, oldest first (its chain; or its one pushed version)."""
    if item.chain_id is not None:
        return ledger.chain_runs(item.chain_id)
    if item.current is not None:
        record = ledger.get(item.account, item.current.kernel_id, item.current.version or 0)
        return [record] if record is not None else []
    return []


def accelerator_hours(records: Sequence[RunRecord], now: datetime | None = None) -> float:
    """GPU/TPU hours of sessions: ended ones' durations, running ones' time so far."""
    return sum((r.elapsed_s(now) or 0.0) for r in records if r.kind in ("gpu", "tpu")) / 3600


def build_view(store: QueueStore, *, slots: dict[str, int] | None = None, max_gpu_hours: float | None = None,
               quota: dict[str, Any] | None = None, waiting: str | None = None) -> View:
    ledger = store.ledger
    now = ledger.now()
    rows, running = [], {"gpu": 0, "tpu": 0, "cpu": 0}
    total = 0.0
    for item in store.items():
        records = sessions_of(ledger, item)
        hours = accelerator_hours(records, now)
        total += hours
        newest = records[-1] if records else None
        if item.state in ACTIVE and newest is not None:
            running[newest.kind] = running.get(newest.kind, 0) + 1
        rows.append(Row(name=item.name, state=item.state, kernel=item.kernel,
                        session=f"{newest.kernel} v{newest.version}" if newest else None,
                        status=newest.status if newest else None, sessions=len(records), gpu_hours=round(hours, 4),
                        overrides=item.experiment.overrides_text(), note=item.note))
    holder = store.lease_holder()
    if waiting is None and holder is not None:
        waiting = holder["waiting"]
    return View(queue=store.queue, rows=rows, running=running, slots=slots or dict(MAX_BATCH_SESSIONS),
                queue_gpu_hours=round(total, 4), max_gpu_hours=max_gpu_hours, quota=quota, waiting=waiting,
                holder=holder)


def render(view: View) -> str:
    """The queue as a table (the live view and ``queue status``)."""
    from kagglekit.display import duration

    head = [f"Queue {view.queue}: " + ", ".join(f"{n} {s}" for s, n in sorted(view.counts().items()))]
    slots = ", ".join(f"{k.upper()} {view.running.get(k, 0)}/{n}" for k, n in sorted(view.slots.items())
                      if k in ("gpu", "tpu"))
    budget = f" of --max-gpu-hours {view.max_gpu_hours:g}" if view.max_gpu_hours is not None else ""
    head.append(f"slots {slots}; the queue used {view.queue_gpu_hours:.2f} accelerator h{budget}")
    if view.quota:
        q = view.quota
        head.append(f"GPU quota: {duration(q['used'])} used + {duration(q['reserved'])} reserved of "
                    f"{duration(q['total'])}")
    if view.waiting:
        head.append(f"waiting: {view.waiting}")
    width = max([len(r.name) for r in view.rows] + [10])
    lines = [f"  {'NAME':<{width}}  {'STATE':<10}  {'SESSION':<34}  {'STATUS':<18}  {'GPU h':>6}  NOTE"]
    for r in view.rows:
        lines.append(f"  {r.name:<{width}}  {r.state:<10}  {(r.session or '-'):<34}  {(r.status or '-'):<18}  "
                     f"{r.gpu_hours:>6.2f}  {r.note or ''}".rstrip())
    return "\n".join(head + lines)


# --- running the queue ----------------------------------------------------------------------------

@dataclasses.dataclass
class QueueOptions:
    """How ``queue run`` runs (the callbacks print; the CLI owns the words)."""

    slots: int | None = None  # per accelerator, at most the account's cap
    max_gpu_hours: float | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    max_backoff_s: float = MAX_BACKOFF_S
    defaults: RunOptions | None = None  # --test/--full/--gpu/--timeout given to `queue run`
    pull: bool = True
    event: Callable[[str], None] = print
    tick: Callable[[View], None] = lambda view: None
    sleep: Callable[[float], None] = time.sleep


@dataclasses.dataclass
class QueueResult:
    view: View
    pushes: int
    refusals: int
    polls: int
    seconds: float
    push_seconds: list[float]


class QueueRunner:
    """One ``queue run``: follow, continue, pull, push, until nothing runs and nothing can be pushed."""

    def __init__(self, client: KaggleApiClient, ledger: Ledger, store: QueueStore, settings: ProjectSettings,
                 opts: QueueOptions) -> None:
        self.client, self.ledger, self.store, self.settings, self.opts = client, ledger, store, settings, opts
        self.account = client.account
        self.backoff_until: dict[str, float] = {}
        self.backoff_s: dict[str, float] = {}
        self.waiting: str | None = None
        self.quota_seen: dict[str, Any] | None = None
        self.pushes = self.refusals = self.polls = 0
        self.push_s: list[float] = []  # how long each push took (bundle, preflight, SaveKernel)
        self._wait_key: str | None = None

    # -- the loop --

    def run(self) -> QueueResult:
        started = time.monotonic()
        self.store.acquire()
        try:
            while True:
                self.store.renew()
                self._recover()
                self._follow()
                self._launch()  # an ended session's slot first, then its outputs: the slot idles less
                if self._finish():
                    self._launch()
                self.store.renew(note=self.waiting)
                view = self.view()
                self.opts.tick(view)
                if not any(i.state in PENDING for i in self.store.items()) and not self._can_wait():
                    return QueueResult(view, self.pushes, self.refusals, self.polls, time.monotonic() - started,
                                       self.push_s)
                self.opts.sleep(self.opts.interval_s)
        finally:
            self.store.release()

    def view(self) -> View:
        return build_view(self.store, slots=self.slots(), max_gpu_hours=self.opts.max_gpu_hours,
                          quota=self.quota_seen, waiting=self.waiting)

    def slots(self) -> dict[str, int]:
        return {k: min(n, self.opts.slots) if self.opts.slots else n for k, n in MAX_BATCH_SESSIONS.items()}

    def _can_wait(self) -> bool:
        """Something is still to push and only time stands in the way (not the budget)."""
        waiting = [i for i in self.store.items() if i.state in WAITING]
        return bool(waiting) and not self._over_budget()

    def _over_budget(self) -> bool:
        if self.opts.max_gpu_hours is None:
            return False
        used = sum(accelerator_hours(sessions_of(self.ledger, i), self.ledger.now()) for i in self.store.items())
        return used >= self.opts.max_gpu_hours

    # -- a push that the previous process may or may not have completed --

    def _recover(self) -> None:
        for item in self.store.items():
            if item.state == PUSHING:
                self._adopt(item)

    def _target(self, item: Item) -> str:
        from kagglekit.chain import target_kernel

        return item.kernel if item.cur_kernel is None else target_kernel(item.kernel, item.cur_kernel)

    def _adopt(self, item: Item) -> None:
        """An item left PUSHING by a killed process: the push Kaggle took becomes its session; none: push again."""
        from kagglekit.chain import adopt_unrecorded

        target = self._target(item)
        since = item.pushing_since or self.ledger.now()
        recorded = [r for r in self.ledger.runs(kernel=target, account=self.account)
                    if r.pushed_at is not None and r.pushed_at >= since - timedelta(seconds=1)]
        if recorded:
            self._started(item, recorded[-1].kernel, recorded[-1].version, resumed=item.cur_kernel is not None)
            self.opts.event(f"{item.name}: {recorded[-1].kernel} v{recorded[-1].version} was pushed before the "
                            "interruption: following it.")
            return
        chain = None
        if item.current is not None and item.chain_id is not None:
            prior = self.ledger.get(self.account, item.current.kernel_id, item.current.version or 0)
            chain = (item.chain_id, ((prior.chain_seq if prior else None) or 0) + 1)
        # A new kernel's 403 is not waited through here: the next tick checks again (ADOPT_GRACE_S, below).
        current = adopt_unrecorded(self.client, self.ledger, self.account, target, chain,
                                   message="adopted by queue run", accelerator=self._kind(item),
                                   mode=item.experiment.mode, overrides=dict(item.experiment.sets),
                                   resume_from=str(item.current) if item.current else None)
        if current is not None:
            self._started(item, target, current, resumed=item.cur_kernel is not None)
            self.opts.event(f"{item.name}: found {target} v{current} on Kaggle, pushed before the interruption: "
                            "following it.")
            return
        sent = self.ledger.query("SELECT push_sent_at FROM queue_items WHERE id=?", (item.id,))
        age = (self.ledger.now() - since).total_seconds()
        if sent and sent[0]["push_sent_at"] is not None and age < ADOPT_GRACE_S:  # a brand-new kernel can be invisible for a while: do not push it twice
            self.store.transition(item.id, [PUSHING], note="checking whether the interrupted push reached Kaggle")
            return
        self.store.transition(item.id, [PUSHING], state=RESUME if item.cur_kernel else QUEUED, pushing_since=None,
                              push_sent_at=None, note="the interrupted push never reached Kaggle: queued again")

    # -- following running sessions --

    def _follow(self) -> None:
        from kagglekit.watch import check_status

        for item in self.store.items():
            ref = item.current
            if item.state not in (RUNNING, CANCELLING) or ref is None:
                continue
            try:
                report = check_status(self.client, ref, self.ledger, with_log_tail=False)
            except KagglekitError as exc:
                self.store.transition(item.id, [item.state], note=f"status unknown: {exc.message}")
                continue
            finally:
                self.polls += 1
            if report.status not in FINAL_STATUSES:
                note = report.note or ("saving outputs or running" if report.status == "RUNNING" else None)
                if note != item.note and item.state == RUNNING:
                    self.store.transition(item.id, [RUNNING], note=note)
                continue
            if item.state == CANCELLING:
                self._ended(item, ref, report.status, report.failure_message)
            else:
                self.store.transition(item.id, [RUNNING], state=ENDING, note=f"ended {report.status}")

    def _finish(self) -> bool:
        """Pull and judge the sessions that ended (their status is in the ledger); True: one did."""
        done = False
        for item in self.store.items():
            ref = item.current
            if item.state != ENDING or ref is None:
                continue
            record = self.ledger.get(self.account, ref.kernel_id, ref.version or 0)
            if record is None or record.status is None:
                continue
            self._ended(item, ref, record.status, record.failure_message)
            done = True
        return done

    def _ended(self, item: Item, ref: KernelRef, status: str, failure: str | None) -> None:
        from kagglekit.chain import CONTINUE, FINISHED, decide
        from kagglekit.chain import FAILED as C_FAILED
        from kagglekit.chain import STOPPED as C_STOPPED

        where = f"{ref.kernel_id} v{ref.version}"
        training = self._pull(item, ref)
        if training is False:
            return  # the pull failed: try again next tick (the session stays ours to finish)
        if item.state == CANCELLING:
            self.store.transition(item.id, [CANCELLING], state=CANCELLED, note=f"cancelled; {where} ended {status}")
            self.opts.event(f"{item.name}: {where} ended {status} (cancelled).")
            return
        decision = decide(where, status, failure, training if isinstance(training, dict) else None)
        stalled = decision.action == CONTINUE and self._stalled(item, training if isinstance(training, dict) else {})
        if stalled:
            state, chain_state = HALTED, "halted"
            decision = dataclasses.replace(decision, message=f"{where} ended by its time guard without training an "
                                           "epoch more than the session before: another session would do the same. "
                                           "Give it a longer timeout, or shorter epochs.")
        elif decision.action == CONTINUE and len(sessions_of(self.ledger, item)) >= MAX_SESSIONS:
            state, chain_state = HALTED, "halted"
            decision = dataclasses.replace(decision, message=f"{where}: {MAX_SESSIONS} sessions ran and the training "
                                           "has not finished; the queue stops carrying it on.")
        elif decision.action == CONTINUE:
            state, chain_state = RESUME, None
        elif decision.action == FINISHED or (status == STATUS_COMPLETE and not training):
            state, chain_state = DONE, FINISHED
        elif decision.action == C_FAILED:
            state, chain_state = FAILED, C_FAILED
        elif decision.action == C_STOPPED:
            state, chain_state = STOPPED, C_STOPPED
        else:
            state, chain_state = HALTED, "halted"
        if chain_state is not None and item.chain_id is not None:
            self.ledger.update_chain(item.chain_id, state=chain_state, note=decision.message)
        self.store.transition(item.id, [ENDING, RUNNING], state=state, note=decision.message)
        self.opts.event(f"{item.name}: {decision.message}")

    def _stalled(self, item: Item, training: dict[str, Any]) -> bool:
        """A time-guarded session that got no further than the one before it (or trained nothing)."""
        epoch = training.get("epoch")
        if not isinstance(epoch, int):
            return False
        records = sessions_of(self.ledger, item)
        before = (records[-2].training or {}).get("epoch") if len(records) >= 2 else None
        return isinstance(before, int) and epoch <= before

    def _pull(self, item: Item, ref: KernelRef) -> dict[str, Any] | bool | None:
        """Pull an ended session's outputs once; its reported training progress (False: the pull failed)."""
        from kagglekit.download import default_target, pull_outputs

        version = ref.version or 0
        record = self.ledger.get(self.account, ref.kernel_id, version)
        done = self.store.pulled(ref.kernel_id, version)
        if done is None and self.opts.pull:
            target = default_target(ref.slug, version, self.settings.root)
            try:
                summary = pull_outputs(self.client, ref, target=target, ledger=self.ledger, progress=False,
                                       raise_on_failure=False)
            except KagglekitError as exc:
                self.opts.event(f"{item.name}: could not pull {ref.kernel_id} v{version} yet ({exc.message}); "
                                "trying again.")
                return False
            if not summary.ok:
                self.opts.event(f"{item.name}: {len(summary.failed)} file(s) of {ref.kernel_id} v{version} failed to "
                                "download; trying again.")
                return False
            self.store.mark_pulled(ref.kernel_id, version, target)
            self.opts.event(f"{item.name}: pulled {ref.kernel_id} v{version} ({summary.listed} files) into {target}.")
            done = str(target)
            record = self.ledger.get(self.account, ref.kernel_id, version)
        if record is not None and record.training is not None:
            return record.training
        if done is not None:
            return _training_from(Path(done))
        return None

    # -- pushing --

    def _kind(self, item: Item) -> str:
        from kagglekit.settings import resolve_machine_shape

        acc = item.experiment.accelerator or (self.opts.defaults.accelerator if self.opts.defaults else None)
        if acc is None:
            return self.settings.accelerator_kind
        return accelerator_kind(resolve_machine_shape(acc))

    def _limit_s(self, item: Item) -> float:
        from kagglekit.settings import parse_duration

        kind = self._kind(item)
        raw = item.experiment.timeout or (self.opts.defaults.timeout if self.opts.defaults else None)
        if raw is not None:
            return float(parse_duration(raw))
        return float(self.settings.timeout_s or SESSION_LIMIT_SECONDS[kind])

    def _running(self) -> dict[str, int]:
        """Sessions holding a slot: the queue's own, and other runs the ledger knows as active."""
        active = [i for i in self.store.items() if i.state in ACTIVE]
        mine = {i.cur_kernel for i in active if i.cur_kernel}
        counts = {"gpu": 0, "tpu": 0, "cpu": 0}
        for item in active:
            kind = self._kind(item)
            counts[kind] = counts.get(kind, 0) + 1
        for run in self.ledger.active_runs(self.account):
            if run.kernel in mine:
                continue
            try:  # another project's run (push --wait elsewhere, a run never looked at again): ask, not trust
                status = self.client.status(run.kernel_ref).status
                self.polls += 1
                self.ledger.record_status(run.account, run.kernel, run.version, status)
            except NotFoundError:
                status = run.status or "QUEUED"  # pushed moments ago: no run yet (§3)
            except KagglekitError:
                status = run.status or "QUEUED"
            if status not in FINAL_STATUSES:
                counts[run.kind] = counts.get(run.kind, 0) + 1
        return counts

    def _launch(self) -> None:
        waiting = [i for i in self.store.items() if i.state in WAITING]
        waiting.sort(key=lambda i: (i.state != RESUME, i.position))  # a started training first
        self.waiting = None
        if not waiting:
            return
        if self._over_budget():
            self.waiting = (f"the queue used its --max-gpu-hours {self.opts.max_gpu_hours:g}: "
                            f"{len(waiting)} experiment(s) stay queued")
            if self._wait_key != "budget":
                self.opts.event(f"Budget reached: {self.waiting}.")
            self._wait_key = "budget"
            return
        running = self._running()
        slots = self.slots()
        reserved_now: dict[str, float] = {}
        blocked: set[str] = set()
        reasons: list[str] = []
        for item in waiting:
            kind = self._kind(item)
            if kind in blocked:
                continue
            if running.get(kind, 0) >= slots.get(kind, 2):
                blocked.add(kind)
                reasons.append(f"{kind.upper()} slots full ({running.get(kind, 0)}/{slots.get(kind, 2)})")
                continue
            if time.monotonic() < self.backoff_until.get(kind, 0.0):
                blocked.add(kind)
                left = self.backoff_until[kind] - time.monotonic()
                reasons.append(f"Kaggle refused a {kind.upper()} push; retrying in {left:.0f} s")
                continue
            if kind in ("gpu", "tpu"):
                refusal = self._predict(kind, reserved_now.get(kind, 0.0))
                if refusal is not None:
                    blocked.add(kind)
                    reasons.append(refusal)
                    continue
            if self._push(item, kind):
                running[kind] = running.get(kind, 0) + 1
                reserved_now[kind] = reserved_now.get(kind, 0.0) + self._limit_s(item)
            elif item.state in WAITING and kind not in blocked:
                blocked.add(kind)
        self.waiting = "; ".join(reasons) or None
        self._say_wait(reasons)

    def _say_wait(self, reasons: list[str]) -> None:
        """Off a terminal the waits that last (quota, budget) are said once each time they begin."""
        key = next((k for k in ("used up", "projected") if any(k in r for r in reasons)), None)
        if key is not None and key != self._wait_key:
            self.opts.event("Waiting: " + next(r for r in reasons if key in r) + ".")
        self._wait_key = key

    def _predict(self, kind: str, pending_reserve: float) -> str | None:
        """Would Kaggle admit a session now? The push preflight's rule (quota.admits); None: yes."""
        from kagglekit.display import duration
        from kagglekit.quota import admits, quota_numbers

        try:
            info = self.client.quota()
        except KagglekitError as exc:
            return f"could not read the quota ({exc.message})"
        self.polls += 1
        used, reserved, total, refresh = quota_numbers(info, kind)
        if used is None or total is None:
            return None  # Kaggle did not say: let its answer to the push decide
        reserved = (reserved or 0.0) + pending_reserve
        if kind == "gpu":
            self.quota_seen = {"used": used, "reserved": reserved, "total": total,
                               "refresh": refresh.isoformat() if refresh else None}
        if admits(used, reserved, total):
            return None
        reset = f"; the quota resets {refresh.strftime('%a %H:%M UTC')}" if refresh else ""
        if used >= total:
            return f"the weekly {kind.upper()} quota is used up ({duration(used)} of {duration(total)}){reset}"
        return (f"Kaggle would refuse a {kind.upper()} session (projected: {duration(used)} used + {duration(reserved)} "
                f"reserved by running sessions >= {duration(total)}): waiting for a running session to end{reset}")

    def _push(self, item: Item, kind: str) -> bool:
        """Push the item's next session; False when Kaggle refused (backing off) or it failed here."""
        from kagglekit.push import PushRequest, push

        previous = item.state
        if not self.store.transition(item.id, [previous], state=PUSHING, pushing_since=self.ledger.now(),
                                     push_sent_at=None, note=None):
            return False  # cancelled meanwhile
        run = item.experiment.run_options(self.opts.defaults)
        run = dataclasses.replace(run, kernel=item.kernel)
        resume = item.current is not None
        req = PushRequest(project_dir=self.settings.root, run=run, resume=resume,
                          resume_from=str(item.current) if resume else None, strict=False,
                          message=f"queue: {item.name}" + (" (next session)" if resume else ""))
        notes: list[str] = []
        began = time.monotonic()
        try:
            outcome = push(_MarksSent(self.client, self.store, item.id), req, self.ledger,  # type: ignore[arg-type]
                           info=notes.append)
        except KaggleRefusedError as exc:
            if refusal_kind(exc.message) is None:  # not a "later": e.g. a source Kaggle will never take
                self.store.transition(item.id, [PUSHING], state=FAILED, pushing_since=None, note=exc.message)
                self.opts.event(f"{item.name}: {exc.message}")
                return False
            self.refusals += 1
            self._back_off(kind)
            self.store.transition(item.id, [PUSHING], state=previous, pushing_since=None,
                                  note=f"refused, retrying: {exc.message}")
            self.opts.event(f"{item.name}: {exc.message} Retrying in {self.backoff_s[kind]:.1f} s.")
            return False
        except ApiError as exc:  # Kaggle may have taken it: the next tick adopts it, or pushes again
            self.opts.event(f"{item.name}: the push did not answer ({exc.message}); checking next time.")
            return False
        except KagglekitError as exc:
            self.store.transition(item.id, [PUSHING], state=FAILED, pushing_since=None, note=exc.message)
            self.opts.event(f"{item.name}: cannot be pushed: {exc.message}")
            return False
        self.pushes += 1
        self.push_s.append(time.monotonic() - began)
        self.backoff_s.pop(kind, None)
        assert outcome.version is not None
        self._started(item, outcome.kernel, outcome.version, resumed=resume)
        what = "next session" if resume else "pushed"
        self.opts.event(f"{item.name}: {what} {outcome.kernel} v{outcome.version}"
                        + (f" ({item.experiment.overrides_text()})" if item.experiment.sets else "") + ".")
        return True

    def _back_off(self, kind: str) -> None:
        delay = min(self.opts.max_backoff_s, max(self.opts.interval_s, self.backoff_s.get(kind, 0.0) * 2))
        self.backoff_s[kind] = delay
        self.backoff_until[kind] = time.monotonic() + delay

    def _started(self, item: Item, kernel: str, version: int, *, resumed: bool) -> None:
        """The item follows ``kernel`` vN now; a first session starts the item's chain."""
        from kagglekit.chain import RUNNING as CHAIN_RUNNING
        from kagglekit.chain import record_session

        record = self.ledger.get(self.account, kernel, version)
        chain_id = record.chain_id if record is not None else None
        if chain_id is None:
            chain_id = record_session(self.ledger, self.account, None, kernel, version, item.kernel)
        self.ledger.update_chain(chain_id, state=CHAIN_RUNNING)
        self.store.transition(item.id, [PUSHING, item.state], state=RUNNING, chain_id=chain_id, cur_kernel=kernel,
                              cur_version=version, pushing_since=None, push_sent_at=None, note=None)


class _MarksSent:
    """The client, except that a push first notes in the ledger that it is being sent: a ``queue run``
    killed before that point pushed nothing, and the next one pushes again at once; killed after it,
    the next one looks on Kaggle for the version first (and never pushes the same session twice)."""

    def __init__(self, client: KaggleApiClient, store: QueueStore, item_id: int) -> None:
        self._client, self._store, self._item_id = client, store, item_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def push(self, *args: Any, **kwargs: Any) -> Any:
        self._store.transition(self._item_id, [PUSHING], push_sent_at=self._store.ledger.now())
        return self._client.push(*args, **kwargs)


def refusal_kind(message: str) -> str | None:
    """What a refused push means for the queue: "session count" (the cap), "projected" (reservations),
    "used up" (the week's hours); each means "later". None: a refusal that waiting does not fix."""
    text = message.lower()
    if "session count" in text or "concurrent" in text:
        return "session count"
    if "projected" in text:
        return "projected"
    if "quota" in text:
        return "used up"
    return None


def _training_from(target: Path) -> dict[str, Any] | None:
    from kagglekit.constants import RUN_MANIFEST_RELPATH
    from kagglekit.ledger import training_of

    try:
        return training_of((target / RUN_MANIFEST_RELPATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, or not UTF-8
        return None


# --- the commands' core ---------------------------------------------------------------------------

def queue_name(settings: ProjectSettings) -> str:
    """The queue of a project: its kernel slug (one queue per project and account; the slug, not the
    owner/slug id, so that commands that never ask Kaggle who is signed in find it too)."""
    return settings.kernel_slug or str(settings.root)


def stores_of(ledger: Ledger, settings: ProjectSettings) -> list[QueueStore]:
    """The project's queues as the ledger has them, one per account that ran it (no request to Kaggle)."""
    rows = ledger.query("SELECT account, MAX(updated_at) AS seen FROM queue_items WHERE queue=? GROUP BY account "
                        "ORDER BY seen", (queue_name(settings),))
    return [QueueStore(ledger, queue_name(settings), r["account"]) for r in rows]


def open_store(ledger: Ledger, settings: ProjectSettings, account: str) -> QueueStore:
    return QueueStore(ledger, queue_name(settings), account)


def cancel(client: KaggleApiClient | None, store: QueueStore, name: str, *,
           info: Callable[[str], None] = print) -> Item:
    """Dequeue ``name``; a running one is stopped through ``kagglekit stop`` (its outputs are pulled when it ends)."""
    item = store.get(name)
    if item is None:
        names = ", ".join(i.name for i in store.items()) or "none"
        raise NotFoundError(f"The queue has no experiment '{name}' (it has: {names}).",
                            hint=f"`{CLI} queue status` lists them.")
    if item.state in WAITING or (item.state == PUSHING and item.current is None and client is None):
        store.transition(item.id, [item.state], state=CANCELLED, note="cancelled before it ran")
        info(f"{name}: dequeued.")
    elif item.state in (RUNNING, PUSHING) and item.current is not None:
        if client is None:
            raise KagglekitError(f"{name} is running: stopping it needs Kaggle.")
        from kagglekit.stop import stop

        store.transition(item.id, [item.state], state=CANCELLING, note="cancelling")
        stop(client, item.current, store.ledger, yes=True, info=info)
        info(f"{name}: stopping {item.current}; its outputs are pulled when it ends (`kagglekit queue run`).")
    elif item.state == PUSHING:
        raise KagglekitError(f"{name} is being pushed right now.", hint="Try again in a moment.")
    else:
        info(f"{name} already ended ({item.state}): nothing to cancel.")
    return store.get(name) or item
