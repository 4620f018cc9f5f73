"""The run ledger: what kagglekit pushed, what it saw of each run, what each run cost.

One SQLite file in the per-user data dir (``paths.ledger_path()``), keyed by Kaggle
account + kernel (``owner/slug``) + version. Why SQLite and not a JSON file: several
kagglekit processes (a ``push --wait`` in one terminal, ``status --watch`` or
``pull-outputs`` in another) write at once, and a crash must never lose or corrupt
a record. So: WAL journal, a busy timeout, every write in one ``BEGIN IMMEDIATE``
transaction, and the schema versioned with ``PRAGMA user_version`` plus ordered
migrations (a newer kagglekit upgrades an older file in place).

Times come from three sources of decreasing precision, and each stored time says
which one it came from: ``run.json`` (written inside the kernel, exact), ``log``
(the log's time offsets), ``polling`` (when kagglekit saw the status change). A
better source always replaces a worse one, never the other way round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kagglekit import paths
from kagglekit.constants import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    STATUS_COMPLETE,
    STATUS_RUNNING,
    accelerator_kind,
)
from kagglekit.errors import ConfigError, KagglekitError
from kagglekit.kernel_ref import KernelRef

SOURCE_RUN_JSON = "run.json"
SOURCE_LOG = "log"
SOURCE_POLLING = "polling"
SOURCE_RANK = {SOURCE_RUN_JSON: 3, SOURCE_LOG: 2, SOURCE_POLLING: 1}

BUSY_TIMEOUT_MS = 30_000
KIND_UNKNOWN = "unknown"


class LedgerError(KagglekitError):
    """The ledger file cannot be opened or is newer than this kagglekit."""


def unreadable_ledger(path: Path, why: object) -> LedgerError:
    """The error for a corrupt, truncated or foreign ledger file: which file, and how to get going again."""
    return LedgerError(
        f"The run ledger {path} cannot be used: {why}. It may be truncated, corrupted, or another "
        "program's file.",
        hint=f"Move it aside (mv '{path}' '{path}.broken'); kagglekit then starts a new, empty ledger "
             "(the runs it recorded leave the local history; Kaggle still has them). bundle, push --dry-run "
             "and status/logs/pull-outputs of a KERNEL work without it meanwhile.",
    )


def _guard_sqlite(cls: type) -> type:
    """Every public method of ``cls`` turns an SQLite failure into a ``LedgerError`` naming the file.

    A truncated file can open fine and fail on the first page read, in any method; a class-wide
    guard means no method is left that reports it as a kagglekit bug.
    """
    import functools

    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                raise unreadable_ledger(self.path, exc) from exc

        return call

    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and callable(value):
            setattr(cls, name, guarded(value))
    return cls


@dataclasses.dataclass(frozen=True)
class StatusEvent:
    """One status transition kagglekit saw, and when."""

    status: str
    seen_at: datetime
    failure_message: str | None = None


@dataclasses.dataclass
class RunRecord:
    """Everything the ledger knows about one kernel version."""

    account: str
    kernel: str
    version: int
    pushed_at: datetime | None = None
    mode: str | None = None
    accelerator: str | None = None  # gpu / tpu / cpu
    machine_shape: str | None = None
    bundle_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    message: str | None = None
    parent_version: int | None = None
    resume_from: str | None = None
    overrides: dict[str, str] | None = None  # the --set NAME=VALUE pairs of the push
    args: list[str] | None = None  # the entry point's command-line arguments
    chain_id: int | None = None  # the resume chain this version is a session of (chains table)
    chain_seq: int | None = None  # its place in the chain: 1, 2, ...
    session_id: int | None = None  # Kaggle's kernel session id (run.json / the log), for CancelKernelSession
    status: str | None = None
    status_seen_at: datetime | None = None
    failure_message: str | None = None
    started_at: datetime | None = None
    started_source: str | None = None
    ended_at: datetime | None = None
    ended_source: str | None = None
    duration_s: float | None = None
    duration_source: str | None = None
    output_bytes: int | None = None
    output_files: int | None = None
    peak_working_bytes: int | None = None
    peak_rss_bytes: int | None = None
    updated_at: datetime | None = None
    statuses: list[StatusEvent] = dataclasses.field(default_factory=list)
    training: dict[str, Any] | None = None  # run.json's `training` (what the project reported), if pulled

    @property
    def ref(self) -> str:
        return str(self.kernel_ref)

    @property
    def kernel_ref(self) -> KernelRef:
        """This run as a ``KernelRef`` (the ledger keeps the kernel as ``OWNER/SLUG`` text)."""
        return KernelRef.from_id(self.kernel, self.version)

    @property
    def active(self) -> bool:
        """Still queued or running, as far as kagglekit last saw."""
        return self.status in ACTIVE_STATUSES

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def complete(self) -> bool:
        return self.status == STATUS_COMPLETE

    @property
    def kind(self) -> str:
        """gpu / tpu / cpu, from the kind or the machine shape; ``unknown`` when neither was recorded
        (a run first seen by ``status`` that kagglekit did not push: it may well be a GPU run)."""
        if self.accelerator in ("gpu", "tpu", "cpu"):
            return self.accelerator
        if self.machine_shape is None:
            return KIND_UNKNOWN
        return accelerator_kind(self.machine_shape)

    def elapsed_s(self, now: datetime | None = None) -> float | None:
        """Run time: the recorded duration, or for a live run the time since it started."""
        if self.duration_s is not None:
            return self.duration_s
        if self.started_at is not None and self.ended_at is not None:
            return max(0.0, (self.ended_at - self.started_at).total_seconds())
        if self.active and self.started_at is not None:
            now = now or utcnow()
            return max(0.0, (now - self.started_at).total_seconds())
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """A run.json time: ISO-8601 text (``Z`` allowed) or epoch seconds; None if unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    """The first present, non-null value among ``keys``; dotted keys reach into sub-objects."""
    for key in keys:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            return node
    return None


def _requested_accelerator(value: Any) -> tuple[str, str | None] | None:
    """run.json's ``accelerator.requested`` as (kind, machine shape or None); None when absent."""
    if not isinstance(value, str) or not value.strip():
        return None
    word = value.strip()
    if word.lower() in ("gpu", "tpu", "cpu"):
        return word.lower(), None
    if word.lower() == "none":
        return "cpu", None
    return accelerator_kind(word), word


def is_real_account(account: str | None) -> bool:
    """An account on Kaggle itself: ``KaggleApiClient.account`` qualifies any other server as ``name@host``."""
    return bool(account) and "@" not in str(account)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_MIGRATIONS: list[str] = [
    # 1: the runs table and the status transitions seen.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        kernel TEXT NOT NULL,
        version INTEGER NOT NULL,
        pushed_at TEXT,
        mode TEXT,
        accelerator TEXT,
        machine_shape TEXT,
        bundle_hash TEXT,
        git_commit TEXT,
        git_dirty INTEGER,
        message TEXT,
        parent_version INTEGER,
        resume_from TEXT,
        status TEXT,
        status_seen_at TEXT,
        failure_message TEXT,
        started_at TEXT,
        started_source TEXT,
        ended_at TEXT,
        ended_source TEXT,
        duration_s REAL,
        duration_source TEXT,
        output_bytes INTEGER,
        output_files INTEGER,
        peak_working_bytes INTEGER,
        peak_rss_bytes INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (account, kernel, version)
    );
    CREATE TABLE status_events (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        status TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        failure_message TEXT
    );
    CREATE INDEX status_events_run ON status_events (run_id, id);
    """,
    # 2: the raw run.json kept for later reports, and the lookups quota makes.
    """
    ALTER TABLE runs ADD COLUMN manifest_json TEXT;
    CREATE INDEX runs_kernel ON runs (account, kernel, version);
    CREATE INDEX runs_started ON runs (started_at);
    """,
    # 3: the --set overrides a version was pushed with (JSON), so --resume can carry them on.
    """
    ALTER TABLE runs ADD COLUMN overrides TEXT;
    """,
    # 4: the entry point's command-line arguments (JSON list): `args`/`test-args` and `push -- ARGS`.
    """
    ALTER TABLE runs ADD COLUMN args TEXT;
    """,
    # 5: resume chains (docs/resume.md): the sessions of one training across two kernels, and the
    # state of `push --until-done`, which must survive the process; the session id `stop` cancels with.
    """
    CREATE TABLE chains (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        kernel TEXT NOT NULL,
        sibling TEXT NOT NULL,
        state TEXT NOT NULL,
        until_done INTEGER NOT NULL DEFAULT 0,
        options TEXT,
        note TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX chains_kernel ON chains (account, kernel);
    ALTER TABLE runs ADD COLUMN chain_id INTEGER REFERENCES chains(id);
    ALTER TABLE runs ADD COLUMN chain_seq INTEGER;
    ALTER TABLE runs ADD COLUMN session_id INTEGER;
    """,
    # 6: the experiment queue (kagglekit/queue.py, docs/queue.md): its items, the one process that may
    # push for it (a lease), and which session outputs it pulled, so a killed `queue run` loses nothing.
    """
    CREATE TABLE queue_items (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        kernel TEXT NOT NULL,
        spec TEXT NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        chain_id INTEGER REFERENCES chains(id),
        cur_kernel TEXT,
        cur_version INTEGER,
        pushing_since TEXT,
        push_sent_at TEXT,
        note TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (queue, account, name)
    );
    CREATE TABLE queue_leases (
        queue TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        note TEXT
    );
    CREATE TABLE queue_pulls (
        account TEXT NOT NULL,
        kernel TEXT NOT NULL,
        version INTEGER NOT NULL,
        target TEXT NOT NULL,
        pulled_at TEXT NOT NULL,
        PRIMARY KEY (account, kernel, version)
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

_RUN_COLUMNS = (
    "account", "kernel", "version", "pushed_at", "mode", "accelerator", "machine_shape", "bundle_hash",
    "git_commit", "git_dirty", "message", "parent_version", "resume_from", "status", "status_seen_at",
    "failure_message", "started_at", "started_source", "ended_at", "ended_source", "duration_s",
    "duration_source", "output_bytes", "output_files", "peak_working_bytes", "peak_rss_bytes", "updated_at",
    "overrides", "args", "chain_id", "chain_seq", "session_id",
)
_TIME_COLUMNS = frozenset({"pushed_at", "status_seen_at", "started_at", "ended_at", "updated_at"})


@_guard_sqlite
class Ledger:
    """The run ledger. One connection per instance; safe to share between threads."""

    def __init__(self, path: Path | str | None = None, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = Path(path) if path is not None else paths.ledger_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LedgerError(
                f"Cannot open the run ledger {self.path}: {exc}.",
                hint="Check that the kagglekit data dir is writable (KAGGLEKIT_HOME overrides it).",
            ) from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup()
        except (sqlite3.DatabaseError, LedgerError) as exc:
            self._conn.close()
            if isinstance(exc, LedgerError):
                raise
            raise unreadable_ledger(self.path, exc) from exc

    # -- connection and schema -------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Before anything writes (even the switch to WAL rewrites the header): another program's
        # SQLite file has tables but no kagglekit schema version; never touch it.
        # One statement, so one snapshot: read apart, a second process creating the ledger could commit its
        # tables and version in between, and its fresh ledger would look like another program's file.
        version, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT COUNT(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%')").fetchone()
        if version == 0 and tables:
            raise unreadable_ledger(self.path, "it is an SQLite file of another program (it has tables, but "
                                               "no kagglekit schema version)")
        # Switching to WAL needs a brief exclusive lock: another process may hold one.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerError(f"Cannot open the run ledger {self.path}: {exc}.") from exc
                time.sleep(0.05)
        if str(mode).lower() != "wal":  # e.g. a network file system: still correct, just slower
            conn.execute("PRAGMA journal_mode = DELETE")
        # FULL: a commit survives even a power cut, not just a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _migrate(self) -> None:
        current = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if current == SCHEMA_VERSION:
            return
        with self._transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"The run ledger {self.path} has schema version {current}, newer than this "
                    f"kagglekit understands ({SCHEMA_VERSION}).",
                    hint="Upgrade kagglekit (pip install -U kagglekit).",
                )
            for number in range(current, SCHEMA_VERSION):
                for statement in _split_sql(_MIGRATIONS[number]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction for a module that keeps its own tables here (the queue)."""
        return self._transaction()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only statement (the queue's tables)."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def change_mark(self) -> tuple[int, int]:
        """A value that differs once anything was committed to the ledger, by this connection (its
        ``total_changes``) or by another one, in this process or another (``PRAGMA data_version``): a cheap
        "has it changed?" for a reader that keeps what it read (the queue's items, read several times a tick)."""
        with self._lock:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            return version, self._conn.total_changes  # one connection per Ledger: both count on it alone

    def now(self) -> datetime:
        """The ledger's clock (tests give one)."""
        return self._clock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------

    def _ensure_run(self, conn: sqlite3.Connection, account: str, kernel: str, version: int) -> int:
        now = _to_text(self._clock())
        conn.execute(
            "INSERT INTO runs (account, kernel, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (account, kernel, version) DO NOTHING",
            (account, kernel, int(version), now, now),
        )
        row = conn.execute(
            "SELECT id FROM runs WHERE account = ? AND kernel = ? AND version = ?", (account, kernel, int(version))
        ).fetchone()
        return int(row[0])

    def _update(self, conn: sqlite3.Connection, run_id: int, values: Mapping[str, Any]) -> None:
        values = {k: v for k, v in values.items()}
        values["updated_at"] = self._clock()
        cols = []
        params: list[Any] = []
        for key, value in values.items():
            if key not in _RUN_COLUMNS and key != "manifest_json":
                raise ValueError(f"unknown ledger column {key}")
            cols.append(f"{key} = ?")
            if key in _TIME_COLUMNS:
                params.append(_to_text(value))
            elif isinstance(value, bool):
                params.append(int(value))
            elif key == "overrides" and value is not None:
                params.append(json.dumps(dict(value), sort_keys=True))
            elif key == "args" and value is not None:
                params.append(json.dumps(list(value)))
            else:
                params.append(value)
        params.append(run_id)
        conn.execute(f"UPDATE runs SET {', '.join(cols)} WHERE id = ?", params)

    def record_push(
        self,
        account: str,
        kernel: str,
        version: int,
        *,
        pushed_at: datetime | None = None,
        mode: str | None = None,
        accelerator: str | None = None,
        machine_shape: str | None = None,
        bundle_hash: str | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        message: str | None = None,
        parent_version: int | None = None,
        resume_from: str | None = None,
        overrides: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
    ) -> RunRecord:
        """Record a push (a new version). Pushing is also the first status seen: QUEUED."""
        pushed_at = pushed_at or self._clock()
        if accelerator is None:
            accelerator = accelerator_kind(machine_shape)
        values: dict[str, Any] = {
            "pushed_at": pushed_at, "mode": mode, "accelerator": accelerator, "machine_shape": machine_shape,
            "bundle_hash": bundle_hash, "git_commit": git_commit, "git_dirty": git_dirty, "message": message,
            "parent_version": parent_version, "resume_from": resume_from,
            "overrides": dict(overrides) if overrides else None,
            "args": list(args) if args else None,
        }
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            self._update(conn, run_id, {k: v for k, v in values.items() if v is not None or k == "pushed_at"})
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row["status"] is None:
                self._add_status(conn, run_id, "QUEUED", pushed_at, None)
        return self._get(account, kernel, version)

    def _add_status(
        self, conn: sqlite3.Connection, run_id: int, status: str, seen_at: datetime, failure_message: str | None
    ) -> bool:
        last = conn.execute(
            "SELECT status FROM status_events WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)
        ).fetchone()
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row["status"] in FINAL_STATUSES and status not in FINAL_STATUSES:
            # A late poll answered from a stale cache must not revive a finished run.
            return False
        if last is not None and last["status"] == status:
            return False
        conn.execute(
            "INSERT INTO status_events (run_id, status, seen_at, failure_message) VALUES (?, ?, ?, ?)",
            (run_id, status, _to_text(seen_at), failure_message),
        )
        values: dict[str, Any] = {"status": status, "status_seen_at": seen_at}
        if failure_message:
            values["failure_message"] = failure_message
        self._update(conn, run_id, values)
        return True

    def record_status(
        self,
        account: str,
        kernel: str,
        version: int,
        status: str,
        seen_at: datetime | None = None,
        failure_message: str | None = None,
    ) -> bool:
        """Record a status seen by polling; True when it is a transition (a new event).

        The first RUNNING seen and the first final status seen also give start and end
        times (source ``polling``) unless a better source already set them.
        """
        seen_at = seen_at or self._clock()
        status = status.upper()
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            changed = self._add_status(conn, run_id, status, seen_at, failure_message)
            if changed:
                if status == STATUS_RUNNING:
                    self._set_times(conn, run_id, SOURCE_POLLING, started_at=seen_at)
                elif status in FINAL_STATUSES:
                    self._set_times(conn, run_id, SOURCE_POLLING, ended_at=seen_at)
        return changed

    def record_times(
        self,
        account: str,
        kernel: str,
        version: int,
        source: str,
        *,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        duration_s: float | None = None,
    ) -> None:
        """Record start / end / duration from ``source``; a worse source never overwrites a better one."""
        if source not in SOURCE_RANK:
            raise ValueError(f"unknown time source {source!r}")
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            self._set_times(conn, run_id, source, started_at=started_at, ended_at=ended_at,
                            duration_s=duration_s)

    def _set_times(
        self,
        conn: sqlite3.Connection,
        run_id: int,
        source: str,
        *,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        duration_s: float | None = None,
    ) -> None:
        row = conn.execute(
            "SELECT started_at, started_source, ended_at, ended_source, duration_s, duration_source "
            "FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        rank = SOURCE_RANK[source]

        def better(column: str) -> bool:
            old = row[column.rsplit("_", 1)[0] + "_source"]
            return row[column] is None or SOURCE_RANK.get(old or "", 0) <= rank

        values: dict[str, Any] = {}
        start = _from_text(row["started_at"])
        end = _from_text(row["ended_at"])
        if started_at is not None and better("started_at"):
            values.update(started_at=started_at, started_source=source)
            start = started_at
        if ended_at is not None and better("ended_at"):
            values.update(ended_at=ended_at, ended_source=source)
            end = ended_at
        changed_time = "started_at" in values or "ended_at" in values
        if duration_s is None and changed_time and start is not None and end is not None:
            # A duration derived from two times is only as good as the worse of them.
            start_src = values.get("started_source", row["started_source"])
            end_src = values.get("ended_source", row["ended_source"])
            derived_rank = min(SOURCE_RANK.get(start_src or "", 0), SOURCE_RANK.get(end_src or "", 0))
            derived_source = next((s for s, r in SOURCE_RANK.items() if r == derived_rank), SOURCE_POLLING)
            old_rank = SOURCE_RANK.get(row["duration_source"] or "", 0)
            if row["duration_s"] is None or old_rank <= derived_rank:
                values.update(duration_s=max(0.0, (end - start).total_seconds()), duration_source=derived_source)
        if duration_s is not None and better("duration_s"):
            values.update(duration_s=float(duration_s), duration_source=source)
        if values:
            self._update(conn, run_id, values)

    def record_manifest(self, account: str, kernel: str, version: int, run_json: Mapping[str, Any]) -> RunRecord:
        """Read a ``kagglekit/run.json`` (written inside the kernel) into the ledger: exact times and peaks.

        Tolerant of key spellings (docs/run-manifest.md is the reference): unknown keys are kept
        in the stored copy, missing ones leave the ledger as it was.
        """
        started = parse_time(_first(run_json, "started_at", "start", "start_time", "times.started_at"))
        ended = parse_time(_first(run_json, "ended_at", "finished_at", "end", "end_time", "times.ended_at"))
        duration = _float_or_none(_first(run_json, "duration_s", "duration_seconds", "elapsed_s", "duration"))
        if ended is None and str(run_json.get("status", "")).lower() == "running":
            # Still running (or killed before its last write): the duration so far is not the run's.
            duration = None
        if duration is None and started and ended:
            duration = max(0.0, (ended - started).total_seconds())
        values: dict[str, Any] = {}
        bundle = _first(run_json, "bundle_sha256", "bundle_hash")
        if isinstance(bundle, str) and bundle:
            values["bundle_hash"] = bundle
        peak_working = _int_or_none(_first(
            run_json, "peak_working_bytes", "working_peak_bytes", "disk.peak_working_bytes", "peaks.working_bytes"))
        peak_rss = _int_or_none(_first(run_json, "peak_rss_bytes", "rss_peak_bytes", "memory.peak_rss_bytes",
                                       "peaks.rss_bytes"))
        mode = _first(run_json, "mode")
        resume_from = _first(run_json, "resume_from", "resumed_from")
        if peak_working is not None:
            values["peak_working_bytes"] = peak_working
        if peak_rss is not None:
            values["peak_rss_bytes"] = peak_rss
        if isinstance(mode, str) and mode:
            values["mode"] = mode
        if resume_from is not None and resume_from != "":
            values["resume_from"] = str(resume_from)
        session_id = _int_or_none(_first(run_json, "session_id"))
        if session_id is not None:
            values["session_id"] = session_id
        values["manifest_json"] = json.dumps(dict(run_json), default=str, sort_keys=True)
        requested = _requested_accelerator(_first(run_json, "accelerator.requested"))
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            row = conn.execute("SELECT accelerator, machine_shape FROM runs WHERE id = ?", (run_id,)).fetchone()
            if requested is not None and row["accelerator"] is None:
                # What the kernel was bundled for: fills a run first seen by `status` (pushed elsewhere).
                values["accelerator"] = requested[0]
                if row["machine_shape"] is None and requested[1] is not None:
                    values["machine_shape"] = requested[1]
            self._update(conn, run_id, values)
            self._set_times(conn, run_id, SOURCE_RUN_JSON, started_at=started, ended_at=ended, duration_s=duration)
        return self._get(account, kernel, version)

    def record_outputs(
        self, account: str, kernel: str, version: int, total_bytes: int | None, file_count: int
    ) -> None:
        """The version's output as listed: total size (None when not all sizes are known) and file count."""
        values: dict[str, Any] = {"output_files": int(file_count)}
        if total_bytes is not None:
            values["output_bytes"] = int(total_bytes)
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            self._update(conn, run_id, values)

    # -- reading ---------------------------------------------------------------

    def _rows_to_records(self, rows: list[sqlite3.Row]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        events: dict[int, list[StatusEvent]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start:chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for ev in self._conn.execute(
                f"SELECT run_id, status, seen_at, failure_message FROM status_events WHERE run_id IN ({marks}) "
                "ORDER BY id", chunk
            ):
                seen = _from_text(ev["seen_at"])
                assert seen is not None
                events[int(ev["run_id"])].append(StatusEvent(ev["status"], seen, ev["failure_message"]))
        records = []
        for row in rows:
            kwargs: dict[str, Any] = {}
            for col in _RUN_COLUMNS:
                value = row[col]
                if col in _TIME_COLUMNS:
                    value = _from_text(value)
                elif col == "git_dirty" and value is not None:
                    value = bool(value)
                elif col in ("overrides", "args") and value is not None:
                    value = json.loads(value)
                kwargs[col] = value
            records.append(RunRecord(**kwargs, statuses=events[int(row["id"])],
                                     training=training_of(row["manifest_json"])))
        return records

    def _select(self, where: str = "", params: tuple[Any, ...] = (), order: str = "ORDER BY id") -> list[RunRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM runs {where} {order}", params).fetchall()
            return self._rows_to_records(rows)

    def _get(self, account: str, kernel: str, version: int) -> RunRecord:
        found = self.get(account, kernel, version)
        assert found is not None
        return found

    def get(self, account: str, kernel: str, version: int) -> RunRecord | None:
        records = self._select("WHERE account = ? AND kernel = ? AND version = ?", (account, kernel, int(version)))
        return records[0] if records else None

    def runs(
        self, kernel: str | None = None, account: str | None = None, since: datetime | None = None
    ) -> list[RunRecord]:
        """Runs, oldest first; ``since`` keeps those pushed, started or still active after it."""
        clauses: list[str] = []
        params: list[Any] = []
        if kernel is not None and "/" in kernel:
            clauses.append("kernel = ?")
            params.append(kernel)
        elif kernel is not None:  # a bare slug: that kernel under any owner
            clauses.append("kernel LIKE ? ESCAPE '\\'")
            params.append("%/" + kernel.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        records = self._select(where, tuple(params), "ORDER BY COALESCE(pushed_at, started_at, created_at), id")
        if since is not None:
            records = [r for r in records if _touches(r, since)]
        return records

    def active_runs(self, account: str | None = None) -> list[RunRecord]:
        """Runs whose last status seen is queued / running."""
        marks = ",".join("?" * len(ACTIVE_STATUSES))
        where = f"WHERE status IN ({marks})"
        params: tuple[Any, ...] = tuple(sorted(ACTIVE_STATUSES))
        if account is not None:
            where += " AND account = ?"
            params += (account,)
        return self._select(where, params)

    def last_run(
        self, account: str, kernel: str, mode: str | None = None, complete: bool = True
    ) -> RunRecord | None:
        """The newest version of ``kernel`` (in ``mode``, if given; COMPLETE only, unless told otherwise)."""
        clauses = ["account = ?", "kernel = ?"]
        params: list[Any] = [account, kernel]
        if mode is not None:
            clauses.append("mode = ?")
            params.append(mode)
        if complete:
            clauses.append("status = ?")
            params.append(STATUS_COMPLETE)
        found = self._select("WHERE " + " AND ".join(clauses), tuple(params), "ORDER BY version DESC LIMIT 1")
        return found[0] if found else None

    def chain(self, account: str, kernel: str, version: int) -> list[RunRecord]:
        """The checkpoint chain ending at ``kernel`` v``version``, oldest first.

        Follows ``parent_version`` (same kernel), else ``resume_from`` when it names a
        version (``N``, ``vN`` or ``owner/slug/N``). Stops at a loop or a missing link.
        """
        out: list[RunRecord] = []
        seen: set[tuple[str, int]] = set()
        current = self.get(account, kernel, version)
        while current is not None and (current.kernel, current.version) not in seen:
            seen.add((current.kernel, current.version))
            out.append(current)
            link = _parent_link(current)
            current = self.get(account, link[0], link[1]) if link else None
        out.reverse()
        return out

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # -- resume chains (storage only; the logic is kagglekit/chain.py) -------------------------

    def create_chain(self, account: str, kernel: str, sibling: str, *, state: str = "open",
                     until_done: bool = False, options: Mapping[str, Any] | None = None) -> ChainRecord:
        now = _to_text(self._clock())
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO chains (account, kernel, sibling, state, until_done, options, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (account, kernel, sibling, state, int(until_done),
                 json.dumps(dict(options), sort_keys=True) if options else None, now, now))
            chain_id = int(cur.lastrowid or 0)
        found = self.get_chain(chain_id)
        assert found is not None
        return found

    def get_chain(self, chain_id: int) -> ChainRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM chains WHERE id = ?", (int(chain_id),)).fetchone()
        return _chain_record(row) if row is not None else None

    def chains(self, account: str | None = None, kernel: str | None = None) -> list[ChainRecord]:
        """Chains, oldest first; ``kernel`` matches either of a chain's two kernels."""
        clauses: list[str] = []
        params: list[Any] = []
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        if kernel is not None:
            clauses.append("(kernel = ? OR sibling = ?)")
            params += [kernel, kernel]
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM chains {where} ORDER BY id", tuple(params)).fetchall()
        return [_chain_record(r) for r in rows]

    def update_chain(self, chain_id: int, *, state: str | None = None, note: str | None = None,
                     until_done: bool | None = None, options: Mapping[str, Any] | None = None) -> ChainRecord:
        values: dict[str, Any] = {"updated_at": _to_text(self._clock())}
        if state is not None:
            values["state"] = state
        if note is not None:
            values["note"] = note
        if until_done is not None:
            values["until_done"] = int(until_done)
        if options is not None:
            values["options"] = json.dumps(dict(options), sort_keys=True)
        with self._transaction() as conn:
            conn.execute(f"UPDATE chains SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         (*values.values(), int(chain_id)))
        found = self.get_chain(chain_id)
        if found is None:
            raise LedgerError(f"No chain {chain_id} in the run ledger {self.path}.")
        return found

    def add_to_chain(self, account: str, kernel: str, version: int, chain_id: int, seq: int) -> RunRecord:
        """Make ``kernel`` v``version`` session ``seq`` of chain ``chain_id``."""
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            self._update(conn, run_id, {"chain_id": int(chain_id), "chain_seq": int(seq)})
        return self._get(account, kernel, version)

    def chain_runs(self, chain_id: int) -> list[RunRecord]:
        """A chain's sessions in order."""
        return self._select("WHERE chain_id = ?", (int(chain_id),), "ORDER BY chain_seq, id")

    def record_session_id(self, account: str, kernel: str, version: int, session_id: int) -> None:
        with self._transaction() as conn:
            run_id = self._ensure_run(conn, account, kernel, version)
            self._update(conn, run_id, {"session_id": int(session_id)})


@dataclasses.dataclass(frozen=True)
class ChainRecord:
    """One resume chain: its two kernels and what ``push --until-done`` is doing with it."""

    id: int
    account: str
    kernel: str  # the project's kernel
    sibling: str  # the relay kernel the sessions alternate with
    state: str  # open | running | finished | failed | stopped | halted
    until_done: bool
    options: dict[str, Any]
    note: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def kernels(self) -> tuple[str, str]:
        return self.kernel, self.sibling


def _chain_record(row: sqlite3.Row) -> ChainRecord:
    options = json.loads(row["options"]) if row["options"] else {}
    return ChainRecord(id=int(row["id"]), account=row["account"], kernel=row["kernel"], sibling=row["sibling"],
                       state=row["state"], until_done=bool(row["until_done"]),
                       options=options if isinstance(options, dict) else {}, note=row["note"],
                       created_at=_from_text(row["created_at"]), updated_at=_from_text(row["updated_at"]))


def training_of(manifest_json: str | None) -> dict[str, Any] | None:
    """run.json's ``training`` block (what the project reported with report_progress), if any."""
    if not manifest_json:
        return None
    try:
        data = json.loads(manifest_json)
    except ValueError:
        return None
    training = data.get("training") if isinstance(data, dict) else None
    return training if isinstance(training, dict) else None


def optional_ledger(warn: Callable[[str], None]) -> Ledger | None:
    """The ledger for a command that works without history; None (after a warning) if it is unusable.

    ``status``, ``logs``, ``pull-outputs`` and ``push --dry-run`` need a ledger only to record
    what they see; a broken ledger file must not stop them.
    """
    try:
        return Ledger()
    except LedgerError as exc:
        warn(f"{exc.message} Going on without it: nothing is recorded this time. ({exc.hint})")
        return None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _touches(record: RunRecord, since: datetime) -> bool:
    if record.active:
        return True
    for value in (record.ended_at, record.started_at, record.pushed_at, record.status_seen_at):
        if value is not None and value >= since:
            return True
    return False


def _parent_link(record: RunRecord) -> tuple[str, int] | None:
    """The (kernel, version) a run continued from: its parent version, or its ``resume_from`` text."""
    if record.parent_version is not None:
        return record.kernel, record.parent_version
    text = (record.resume_from or "").strip()
    if not text:
        return None
    if text.lstrip("vV").isdigit():  # a version of the same kernel
        return record.kernel, int(text.lstrip("vV"))
    try:
        ref = KernelRef.parse(text)
    except ConfigError:
        return None
    return (ref.kernel_id, ref.version) if ref.version is not None else None
