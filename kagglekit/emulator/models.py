"""The emulator's state and Kaggle's rules: SQLite + files, no HTTP.

Everything a request can change lives here (users, kernels, versions, registered
data, configuration, the clock offset), so the HTTP layer (responses/routes/server)
only parses and serializes, and the runner only executes. Errors the client must
see as an HTTP status are raised as ``WireError``; Kaggle's "business" refusals
(session cap, weekly quota) are returned in ``SaveKernel``'s ``error`` field, as
Kaggle does.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kagglekit import constants as C

SCHEMA_VERSION = 1

DEFAULT_CONFIG: dict[str, Any] = {
    "gpu_quota_seconds": C.DEFAULT_WEEKLY_QUOTA_SECONDS["gpu"],
    "tpu_quota_seconds": C.DEFAULT_WEEKLY_QUOTA_SECONDS["tpu"],
    "session_limit_seconds": dict(C.SESSION_LIMIT_SECONDS),
    "max_sessions": dict(C.MAX_BATCH_SESSIONS),
    "output_limit_bytes": C.OUTPUT_BUDGET_BYTES,
    "source_limit_bytes": C.SOURCE_LIMIT_BYTES,
    "url_expiry_seconds": 3600,
    "legacy_layout": False,
    "queue_seconds": 1.0,
    # "auto": mount the sandbox at the real /kaggle with user+mount namespaces when the
    # OS allows it, else the relative layout; "namespace" or "relative" force one.
    "sandbox": "auto",
    # Kaggle as it really is (docs/emulator.md, "Prod-shaped behaviours"): each key turns one
    # less-kind behaviour of the live service on (the default) or off (for a test).
    "error_envelope": "nested",  # {"error": {"code", "message", "status"}}; "flat": {"code", "message"}
    "run_start_delay_seconds": 3.0,  # after a push, status answers 404 "No runs found" this long
    "new_private_403_seconds": 1.0,  # a brand-new private kernel answers 403 kernels.get this long
    "push_without_run_when_cpu_full": False,  # CPU slots full: create the version without a run
    "quota_projected_message": True,  # refusal caused by reservations says "projected to exceed"
    "save_seconds_per_gb": 120.0,  # save phase: RUNNING while /kaggle/working is "uploaded"
    "save_min_seconds": 1.5,  # ... at least this long
    "list_outputs_while_running": False,  # a running (or saving) version lists no files and no log
    "snapshot_strip": True,  # the saved output drops symlinks, empty folders and exec bits
    "file_url_escaped": False,  # file URLs carry the name unescaped (signed over the raw name)
    "max_page_size": 500,  # ListKernelSessionOutput pageSize above this: 400
    "allow_t4_highmem": False,  # NvidiaTeslaT4Highmem is not for regular accounts
    "require_kernelspec": True,  # a notebook without metadata.kernelspec fails, as on Kaggle
    "cancel_always_denied": False,  # CancelKernelSession always 403 (the pessimistic case)
    "allow_self_mount": False,  # a kernel listed in its own kernel_sources is refused
    # Datasets (kaggle-prod-behaviour.md §8): a new version processes before it can be read or mounted
    # (kagglehub's tests poll about a minute; a new dataset invisible for ~15 min was reported).
    "dataset_processing_seconds": 60.0,
    "dataset_max_files": 1000,
    "upload_url_expiry_seconds": 6 * 24 * 3600,  # the official client's resumable-upload expiry
    # The interpreter kernels run with: "" is the emulator's own; a path (e.g. a venv's bin/python
    # made to resemble Kaggle's image) gives kernels that interpreter's packages instead.
    "kernel_python": "",
}
_CHOICES = {"sandbox": ("auto", "namespace", "relative"), "error_envelope": ("nested", "flat")}
KINDS = ("cpu", "gpu", "tpu")
DOCKER_IMAGE = "gcr.io/kaggle-images/python@sha256:00000000000000000000000000000000000000000000000000000000e1a7e1a7"
KAGGLE_URL_BASE = "https://www.kaggle.com"
MSG_RESTARTED = "The emulator stopped while this session was running; the session was lost."
MSG_DELETED = "The kernel was deleted while this session was running."
MSG_NO_RUNS = "No runs found for this kernel."
MSG_QUOTA_PROJECTED = ("Session cannot start because currently running sessions are projected to exceed maximum "
                       "weekly {kind} quota of {hours:g}. Cancelling running sessions may allow starting new sessions.")
MSG_T4_HIGHMEM = "The machine shape NvidiaTeslaT4Highmem is not available to this account."  # form inferred
MSG_CANCEL_DENIED = "Permission 'kernelSessions.cancel' was denied"
# Kernel session ids are large numbers of their own (never a kernel id or a version number).
SESSION_ID_BASE = 270_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(username TEXT PRIMARY KEY, key TEXT NOT NULL, token TEXT,
    user_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kernels(id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,
    slug TEXT NOT NULL, title TEXT NOT NULL, meta TEXT NOT NULL, current_version INTEGER NOT NULL,
    created REAL NOT NULL, UNIQUE(owner, slug));
CREATE TABLE IF NOT EXISTS versions(id INTEGER PRIMARY KEY AUTOINCREMENT, kernel_id INTEGER NOT NULL,
    number INTEGER NOT NULL, owner TEXT NOT NULL, status TEXT NOT NULL, failure TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL, kind TEXT NOT NULL, run INTEGER NOT NULL, limit_seconds REAL NOT NULL,
    created REAL NOT NULL, started REAL, ended REAL, pid INTEGER, sandbox_mode TEXT NOT NULL DEFAULT '',
    internet_enforced INTEGER NOT NULL DEFAULT 0, session_at REAL, UNIQUE(kernel_id, number));
CREATE INDEX IF NOT EXISTS versions_owner ON versions(owner, kind, status);
CREATE TABLE IF NOT EXISTS usage(id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL,
    kind TEXT NOT NULL, seconds REAL NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sources(kind TEXT NOT NULL, ref TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY(kind, ref));
"""


class WireError(Exception):
    """A failure the client sees as an HTTP status with a JSON error body (nested envelope by default).

    Named apart from kagglekit's client-side ``ApiError``: this is what the emulator sends, not what
    the client raises."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Kernel:
    id: int
    owner: str
    slug: str
    title: str
    meta: dict[str, Any]
    current_version: int
    created: float

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def is_private(self) -> bool:
        return bool(self.meta.get("isPrivate", True))


@dataclasses.dataclass(frozen=True)
class Version:
    id: int
    kernel_id: int
    number: int
    owner: str
    status: str
    failure: str
    meta: dict[str, Any]
    kind: str
    run: bool
    limit_seconds: float
    created: float
    started: float | None
    ended: float | None
    pid: int | None
    sandbox_mode: str
    internet_enforced: bool
    session_at: float | None = None  # when Kaggle has created the run's session (status 404 before)

    @property
    def active(self) -> bool:
        return self.status in C.ACTIVE_STATUSES and self.run

    @property
    def session_id(self) -> int:
        """The kernel session's id (``CancelKernelSession``; in the kernel: ``KAGGLE_CONTAINER_NAME``)."""
        return SESSION_ID_BASE + self.id

    def has_session(self, now: float) -> bool:
        return self.run and (self.session_at is None or now >= self.session_at)


@dataclasses.dataclass(frozen=True)
class OutputFile:
    name: str  # relative POSIX path under /kaggle/working
    path: Path
    size: int
    mtime: float


def slugify(text: str) -> str:
    """Kaggle's (python-slugify's) title -> slug rule, for the characters that matter here."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    norm = re.sub(r"['\"]+", "", norm)
    return re.sub(r"[^a-z0-9]+", "-", norm).strip("-")


def week_bounds(now: float) -> tuple[float, float]:
    """The quota week around ``now``: Saturday 00:00 UTC to the next one."""
    day = dt.datetime.fromtimestamp(now, dt.UTC)
    days_back = (day.weekday() - C.QUOTA_WEEK_START_WEEKDAY) % 7
    start = (day - dt.timedelta(days=days_back)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), (start + dt.timedelta(days=7)).timestamp()


def human_bytes(n: int) -> str:
    """``20000000000`` -> ``20 GB`` (decimal units, as Kaggle states its limits)."""
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def merge_config(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Validate ``update`` against the known keys and merge it (per-kind dicts merge per key)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in DEFAULT_CONFIG:
            raise WireError(400, f"Unknown config key {key!r}; known keys: {', '.join(sorted(DEFAULT_CONFIG))}")
        default = DEFAULT_CONFIG[key]
        if isinstance(default, dict):
            if not isinstance(value, dict) or any(k not in KINDS for k in value):
                raise WireError(400, f"{key} must be an object with keys among {list(KINDS)}")
            for k, v in value.items():
                if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                    raise WireError(400, f"{key}.{k} must be a non-negative number")
                out[key][k] = v
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise WireError(400, f"{key} must be true or false")
            out[key] = value
        elif isinstance(default, str):
            if key in _CHOICES and value not in _CHOICES[key]:
                raise WireError(400, f"{key} must be one of {', '.join(_CHOICES[key])}")
            if key == "kernel_python":
                _check_kernel_python(value)
            out[key] = str(value)
        else:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise WireError(400, f"{key} must be a non-negative number")
            out[key] = value
    return out


def _check_kernel_python(value: object) -> None:
    """``kernel_python``: "" (the emulator's interpreter) or an absolute path to an executable file."""
    if not isinstance(value, str):
        raise WireError(400, f"kernel_python must be a path to a Python interpreter (or \"\"), not {value!r}")
    if value == "":
        return
    if not os.path.isabs(value):
        raise WireError(400, f"kernel_python must be an absolute path, not {value!r}")
    if not os.path.isfile(value) or not os.access(value, os.X_OK):
        raise WireError(400, f"kernel_python {value!r} is not an executable file")


# Retired shapes, as the official client (kaggle 2.2.5 _RETIRED_ACCELERATORS) says the server maps them.
RETIRED_SHAPE_MAP = {"NvidiaTeslaP100": ("gpu", C.SHAPE_GPU_DEFAULT), "TpuV38": ("tpu", C.SHAPE_TPU_DEFAULT),
                     "Tpu1VmV38": ("tpu", C.SHAPE_TPU_DEFAULT), "TpuV232": ("cpu", "None"),
                     "TpuV2256": ("cpu", "None")}


def _kind_of(meta: dict[str, Any]) -> tuple[str, str]:
    """(kind, effective machine shape) for a push, mapping retired shapes as Kaggle does."""
    shape = str(meta.get("machineShape") or "")
    if shape and shape != "None":
        if shape in RETIRED_SHAPE_MAP:
            return RETIRED_SHAPE_MAP[shape]
        return C.accelerator_kind(shape), shape
    if meta.get("enableTpu"):
        return "tpu", C.SHAPE_TPU_DEFAULT
    if meta.get("enableGpu"):
        return "gpu", C.SHAPE_GPU_DEFAULT
    return "cpu", "None"


def parse_version_label(label: str | None) -> int | None:
    """``"v3"`` -> 3; absent -> None; anything else is a 404 on Kaggle."""
    if not label:
        return None
    m = re.fullmatch(r"v(\d+)", label.strip())
    if not m:
        raise WireError(404, f"Kernel version {label!r} was not found (use the form 'v<N>').")
    return int(m.group(1))


class Backend:
    """All state and rules. Thread-safe: one SQLite connection behind one re-entrant lock."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "versions").mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on status changes and log appends
        self.db = sqlite3.connect(self.data_dir / "state.sqlite3", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        if "session_at" not in {r[1] for r in self.db.execute("PRAGMA table_info(versions)")}:
            self.db.execute("ALTER TABLE versions ADD COLUMN session_at REAL")  # a data dir from before
        # Versions in their save phase: id -> (start, end) in wall-clock seconds (lost with the process,
        # as the run itself is).
        self.saving: dict[int, tuple[float, float]] = {}
        self._initial_config = merge_config(DEFAULT_CONFIG, config or {})
        self._config_cache: dict[str, Any] | None = None
        self._offset_cache: float | None = None
        self.on_new_version: Callable[[int], None] = lambda vid: None
        self.on_cancel: Callable[[int], object] = lambda vid: None
        # Set by emulator/datasets.py: uploaded datasets (owner/slug[/N]) -> the READY folder to mount.
        self.dataset_source: Callable[[str], Path | None] = lambda ref: None
        self.datasets: Any = None
        with self.lock:
            if self._meta("schema") is None:
                self._set_meta("schema", SCHEMA_VERSION)
                self._set_meta("secret", secrets.token_hex(32))
                self._set_meta("clock_offset", 0.0)
                self._set_meta("config", self._initial_config)
                self._seed()
            elif config:
                # explicit constructor settings win over what a previous run stored
                self._set_meta("config", merge_config(self.config, config))
                self._config_cache = None
        self.secret = str(self._meta("secret")).encode()

    # --- low-level ---------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _meta(self, key: str) -> Any:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set_meta(self, key: str, value: Any) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def _seed(self) -> None:
        self.add_user(C.DEMO_USERNAME, C.DEMO_KEY, C.DEMO_TOKEN)

    # --- configuration and clock -----------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The current rule settings (a copy; cached, since only this object writes them)."""
        with self.lock:
            if self._config_cache is None:
                cfg = self._meta("config")
                self._config_cache = merge_config(DEFAULT_CONFIG, cfg if isinstance(cfg, dict) else {})
            return copy.deepcopy(self._config_cache)

    def update_config(self, update: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            cfg = merge_config(self.config, update)
            self._set_meta("config", cfg)
            self._config_cache = None
            return cfg

    def setting(self, key: str) -> Any:
        """One rule setting without copying the whole configuration (hot paths)."""
        with self.lock:
            if self._config_cache is None:
                self.config  # noqa: B018  (fills the cache)
            assert self._config_cache is not None
            return self._config_cache[key]

    @property
    def clock_offset(self) -> float:
        with self.lock:
            if self._offset_cache is None:
                self._offset_cache = float(self._meta("clock_offset") or 0.0)
            return self._offset_cache

    def set_clock_offset(self, offset: float) -> None:
        with self.changed:
            self._set_meta("clock_offset", float(offset))
            self._offset_cache = None
            self.changed.notify_all()

    def now(self) -> float:
        return time.time() + self.clock_offset

    def reset(self) -> None:
        """Forget everything (state, files, config, clock) and reseed the demo account."""
        with self.lock:
            for table in ("users", "kernels", "versions", "usage", "sources", "meta"):
                self.db.execute(f"DELETE FROM {table}")
            self._set_meta("schema", SCHEMA_VERSION)
            self._set_meta("secret", self.secret.decode())
            self._set_meta("clock_offset", 0.0)
            self._set_meta("config", self._initial_config)
            self._config_cache = None
            self._offset_cache = None
            shutil.rmtree(self.data_dir / "versions", ignore_errors=True)
            (self.data_dir / "versions").mkdir(exist_ok=True)
            self._seed()
            self.saving.clear()

    # --- users and auth ------------------------------------------------------------
    def add_user(self, username: str, key: str, token: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{1,39}", username or ""):
            raise WireError(400, f"Invalid username {username!r}")
        if not key:
            raise WireError(400, "A key is required")
        with self.tx() as db:
            row = db.execute("SELECT user_id FROM users WHERE username=?", (username,)).fetchone()
            uid = row[0] if row else 1 + (db.execute("SELECT COALESCE(MAX(user_id), 1000) FROM users").fetchone()[0])
            db.execute("INSERT OR REPLACE INTO users(username, key, token, user_id) VALUES (?,?,?,?)",
                       (username, key, token, uid))

    def user_id(self, username: str) -> int:
        with self.lock:
            row = self.db.execute("SELECT user_id FROM users WHERE username=?", (username,)).fetchone()
        return int(row[0]) if row else 0

    def auth_basic(self, username: str, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT key FROM users WHERE username=?", (username,)).fetchone()
        if row and hmac.compare_digest(str(row[0]), key):
            return username
        return None

    def auth_token(self, token: str) -> str | None:
        if not token:
            return None
        with self.lock:
            row = self.db.execute("SELECT username FROM users WHERE token=?", (token,)).fetchone()
        return str(row[0]) if row else None

    def users(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT username FROM users ORDER BY username")]

    # --- registered data (datasets, competitions, models) -------------------------------
    def add_source(self, kind: str, ref: str, path: str) -> None:
        p = Path(path).expanduser()
        if not p.is_absolute():
            raise WireError(400, f"The path for {kind} {ref!r} must be absolute: {path}")
        if not p.is_dir():
            raise WireError(400, f"The path for {kind} {ref!r} is not a folder: {path}")
        if kind == "dataset" and not re.fullmatch(r"[^/\s]+/[^/\s]+", ref):
            raise WireError(400, "A dataset ref must be owner/slug")
        if kind == "competition" and not re.fullmatch(r"[^/\s]+", ref):
            raise WireError(400, "A competition slug has no '/'")
        if kind == "model" and not re.fullmatch(r"[^/\s]+(/[^/\s]+){3}/\d+", ref):
            raise WireError(400, "A model ref must be owner/model/framework/variation/version")
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO sources(kind, ref, path) VALUES (?,?,?)", (kind, ref, str(p)))

    def source_path(self, kind: str, ref: str) -> Path | None:
        """The folder behind a source; a dataset ref may pin a version (``owner/slug/N``)."""
        key = "/".join(ref.split("/")[:2]) if kind == "dataset" else ref
        with self.lock:
            row = self.db.execute("SELECT path FROM sources WHERE kind=? AND ref=?", (kind, key)).fetchone()
        if row is None and kind == "dataset":
            return self.dataset_source(ref)
        return Path(row[0]) if row else None

    def sources(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {"dataset": {}, "competition": {}, "model": {}}
        with self.lock:
            for r in self.db.execute("SELECT kind, ref, path FROM sources"):
                out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    # --- kernels and versions ------------------------------------------------------
    @staticmethod
    def _kernel(row: sqlite3.Row) -> Kernel:
        return Kernel(id=row["id"], owner=row["owner"], slug=row["slug"], title=row["title"],
                      meta=json.loads(row["meta"]), current_version=row["current_version"], created=row["created"])

    @staticmethod
    def _version(row: sqlite3.Row) -> Version:
        return Version(id=row["id"], kernel_id=row["kernel_id"], number=row["number"], owner=row["owner"],
                       status=row["status"], failure=row["failure"], meta=json.loads(row["meta"]),
                       kind=row["kind"], run=bool(row["run"]), limit_seconds=row["limit_seconds"],
                       created=row["created"], started=row["started"], ended=row["ended"], pid=row["pid"],
                       sandbox_mode=row["sandbox_mode"], internet_enforced=bool(row["internet_enforced"]),
                       session_at=row["session_at"])

    def kernel_by_ref(self, owner: str, slug: str) -> Kernel | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM kernels WHERE owner=? AND slug=?",
                                  (owner.lower(), slug.lower())).fetchone()
        return self._kernel(row) if row else None

    def kernel_by_id(self, kernel_id: int) -> Kernel | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM kernels WHERE id=?", (kernel_id,)).fetchone()
        return self._kernel(row) if row else None

    def all_kernels(self) -> list[Kernel]:
        with self.lock:
            return [self._kernel(r) for r in self.db.execute("SELECT * FROM kernels ORDER BY id")]

    def version(self, vid: int) -> Version | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM versions WHERE id=?", (vid,)).fetchone()
        return self._version(row) if row else None

    def versions_of(self, kernel_id: int) -> list[Version]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM versions WHERE kernel_id=? ORDER BY number", (kernel_id,))
            return [self._version(r) for r in rows]

    def active_versions(self) -> list[Version]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM versions WHERE run=1 AND status IN (?,?,?,?) ORDER BY id",
                                   tuple(sorted(C.ACTIVE_STATUSES)))
            return [self._version(r) for r in rows]

    def version_dir(self, vid: int) -> Path:
        return self.data_dir / "versions" / str(vid)

    def output_dir(self, vid: int) -> Path:
        return self.version_dir(vid) / "sandbox" / "kaggle" / "working"

    def source_text(self, vid: int) -> str:
        path = self.version_dir(vid) / "source"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def visible(self, user: str, kernel: Kernel) -> bool:
        return kernel.owner == user or not kernel.is_private

    def resolve(self, user: str, owner: str, slug: str, version_label: str | None = None,
                permission: str = "kernels.get") -> tuple[Kernel, Version]:
        """The kernel and version a read names; 403 when missing or private to someone else (as Kaggle)."""
        kernel = self.kernel_by_ref(owner or user, slug or "")
        if kernel is None or not self.visible(user, kernel):
            raise WireError(403, f"Permission '{permission}' was denied")
        number = parse_version_label(version_label)
        versions = self.versions_of(kernel.id)
        if number is not None:
            match = [v for v in versions if v.number == number]
            if not match:
                raise WireError(404, f"Version {number} of kernel {kernel.ref} was not found.")
            return kernel, match[0]
        ran = [v for v in versions if v.run]
        return kernel, (ran or versions)[-1]

    def resolve_read(self, user: str, owner: str, slug: str, version_label: str | None = None) -> tuple[Kernel, Version]:
        """``resolve`` for an API read, with Kaggle's first moments: a brand-new private kernel answers 403
        ``kernels.get`` for ``new_private_403_seconds``."""
        kernel, version = self.resolve(user, owner, slug, version_label)
        if kernel.is_private and self.now() - kernel.created < float(self.setting("new_private_403_seconds")):
            raise WireError(403, "Permission 'kernels.get' was denied")
        return kernel, version

    def session_of(self, user: str, owner: str, slug: str, version_label: str | None = None) -> Version:
        """The version whose *session* a status/output/log read names: 404 "No runs found for this kernel."
        when the kernel never ran or the pushed run's session does not exist yet (``run_start_delay_seconds``)."""
        _, version = self.resolve_read(user, owner, slug, version_label)
        if not version.has_session(self.now()):
            raise WireError(404, MSG_NO_RUNS)
        return version

    def listed_files(self, v: Version) -> list[OutputFile]:
        """What Kaggle lists for a version: nothing while it runs or saves; during a cancel's save phase the
        files appear bit by bit (in name order, as the upload reaches them); everything once it ended."""
        if self.setting("list_outputs_while_running"):
            return self.output_files(v.id)
        if v.status in (C.STATUS_QUEUED, C.STATUS_RUNNING, C.STATUS_NEW_SCRIPT) and v.run:
            return []
        files = self.output_files(v.id)
        if v.status == C.STATUS_CANCEL_REQUESTED:
            window = self.saving.get(v.id)
            if window is None:
                return []  # the kernel is still being stopped
            start, end = window
            fraction = 1.0 if end <= start else min(1.0, max(0.0, (time.time() - start) / (end - start)))
            budget = fraction * sum(f.size for f in files)
            shown: list[OutputFile] = []
            total = 0
            for f in files:
                total += f.size
                if total > budget:
                    break
                shown.append(f)
            return shown
        return files

    def lists_log(self, v: Version) -> bool:
        """``ListKernelSessionOutput`` carries the log only once the version ended (or when configured)."""
        return bool(self.setting("list_outputs_while_running")) or v.status in C.FINAL_STATUSES or not v.run

    def version_by_session(self, session_id: int) -> Version | None:
        return self.version(session_id - SESSION_ID_BASE) if session_id > SESSION_ID_BASE else None

    def cancel_session(self, user: str, session_id: int) -> Version:
        """Kaggle's cancel model (kaggle-prod-behaviour §6): the right session id as the account that started
        the session -> CANCEL_REQUESTED; a wrong id or another account -> 403 (never 404)."""
        v = self.version_by_session(session_id)
        if self.setting("cancel_always_denied") or v is None or v.owner != user or not v.run:
            raise WireError(403, MSG_CANCEL_DENIED)
        if v.active and v.status != C.STATUS_CANCEL_REQUESTED:
            self.update_version(v.id, status=C.STATUS_CANCEL_REQUESTED)
        return v

    def latest_output_version(self, kernel: Kernel, number: int | None = None) -> Version | None:
        """What ``kernel_sources`` mounts: the given version, else the latest COMPLETE run, else the latest final one."""
        versions = [v for v in self.versions_of(kernel.id) if v.run and v.status in C.FINAL_STATUSES]
        if number is not None:
            versions = [v for v in versions if v.number == number]
            return versions[-1] if versions else None
        complete = [v for v in versions if v.status == C.STATUS_COMPLETE]
        pool = complete or versions
        return pool[-1] if pool else None

    # --- the rules: SaveKernel -------------------------------------------------------------
    def save_kernel(self, user: str, req: dict[str, Any]) -> dict[str, Any]:
        """Validate a push, create version N+1, queue it; returns SaveKernel response fields."""
        cfg = self.config
        text = req.get("text")
        if not isinstance(text, str):
            text = ""
        if len(text.encode("utf-8")) > int(cfg["source_limit_bytes"]):
            raise WireError(400, C.MSG_SOURCE_TOO_LARGE)
        language = str(req.get("language") or "python").lower()
        kernel_type = str(req.get("kernelType") or "script").lower()
        if language not in ("python", "r", "rmarkdown", "sqlite", "julia"):
            raise WireError(400, "A valid language must be specified")
        if kernel_type not in ("script", "notebook"):
            raise WireError(400, "A valid kernel type must be specified")
        title = req.get("newTitle")
        if title is not None and len(str(title).strip()) < C.MIN_TITLE_LENGTH:
            raise WireError(400, "Title must be at least five characters")

        with self.lock:
            kernel = self._target_kernel(user, req, title)
            if isinstance(kernel, dict):
                return kernel  # a 200 with `error`
            owner, slug, existing = kernel
            meta = self._push_meta(req, language, kernel_type, existing)
            if meta["machineShape"] == "NvidiaTeslaT4Highmem" and not cfg["allow_t4_highmem"]:
                raise WireError(400, MSG_T4_HIGHMEM)
            kind, shape = _kind_of(meta)
            meta["machineShape"] = shape
            run = req.get("kernelExecutionType") != "QUICK_SAVE"
            invalid = self._invalid_sources(user, meta, f"{owner}/{slug}")
            if run:
                refusal = self._admission_error(owner, kind)
                if refusal and kind == "cpu" and cfg["push_without_run_when_cpu_full"]:
                    run = False  # the version is created, no run (kaggle-prod-behaviour §3) [one]
                elif refusal:
                    return {"error": refusal}
            limit = float(cfg["session_limit_seconds"][kind])
            timeout = req.get("sessionTimeoutSeconds")
            if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
                limit = min(limit, float(timeout))
            kernel_id, number, vid = self._insert_version(owner, slug, existing, title, meta, kind, run, limit)
            vdir = self.version_dir(vid)
            vdir.mkdir(parents=True, exist_ok=True)
            (vdir / "source").write_text(text, encoding="utf-8")
            self.changed.notify_all()
        if run:
            self.on_new_version(vid)
        resp: dict[str, Any] = {
            "ref": f"/code/{owner}/{slug}",
            "url": f"{KAGGLE_URL_BASE}/code/{owner}/{slug}",
            "versionNumber": number,
            "kernelId": kernel_id,
        }
        resp.update({k: v for k, v in invalid.items() if v})
        return resp

    def _insert_version(self, owner: str, slug: str, existing: Kernel | None, title: Any, meta: dict[str, Any],
                        kind: str, run: bool, limit: float) -> tuple[int, int, int]:
        """Create the kernel if new and its next version, in one transaction: (kernel id, number, version id).
        A run's session exists ``run_start_delay_seconds`` after the push (status 404 until then)."""
        now = self.now()
        with self.tx() as db:
            if existing is None:
                cur = db.execute("INSERT INTO kernels(owner, slug, title, meta, current_version, created) "
                                 "VALUES (?,?,?,?,0,?)", (owner, slug, str(title or slug), json.dumps(meta), now))
                kernel_id = int(cur.lastrowid or 0)
                number = 1
            else:
                kernel_id = existing.id
                number = existing.current_version + 1
            db.execute("UPDATE kernels SET meta=?, title=?, current_version=? WHERE id=?",
                       (json.dumps(meta), str(title or (existing.title if existing else slug)), number, kernel_id))
            status = C.STATUS_QUEUED if run else C.STATUS_NEW_SCRIPT
            session_at = now + float(self.setting("run_start_delay_seconds")) if run else None
            cur = db.execute(
                "INSERT INTO versions(kernel_id, number, owner, status, meta, kind, run, limit_seconds, created,"
                " session_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (kernel_id, number, owner, status, json.dumps(meta), kind, int(run), limit, now, session_at))
            return kernel_id, number, int(cur.lastrowid or 0)

    def _target_kernel(self, user: str, req: dict[str, Any],
                       title: Any) -> tuple[str, str, Kernel | None] | dict[str, Any]:
        """Which kernel a push goes to: by ``id``, by ``owner/slug``, or new (slug from the title)."""
        kid = req.get("id")
        if isinstance(kid, int) and not isinstance(kid, bool) and kid > 0:
            k = self.kernel_by_id(kid)
            if k is None:
                return {"error": "Kernel not found"}
            if k.owner != user:
                raise WireError(403, "Permission 'kernels.update' was denied")
            return k.owner, k.slug, k
        raw = str(req.get("slug") or "").strip()
        if not raw:
            raise WireError(400, "ID or slug must be specified")
        parts = raw.split("/")
        if len(parts) == 1:
            owner, slug = user, parts[0]
        elif len(parts) == 2:
            owner, slug = parts[0] or user, parts[1]
        else:
            raise WireError(403, "Permission 'kernels.update' was denied")
        owner, slug = owner.lower(), slug.lower()
        if owner != user.lower():
            raise WireError(403, "Permission 'kernels.update' was denied")
        existing = self.kernel_by_ref(owner, slug)
        if existing is not None:
            return owner, slug, existing
        # A new kernel takes its slug from its title, as on Kaggle (the CLI warns when they differ).
        if title:
            title_slug = slugify(str(title))
            if title_slug and title_slug != slug:
                by_title = self.kernel_by_ref(owner, title_slug)
                if by_title is not None:
                    return owner, title_slug, by_title
                slug = title_slug
        if len(slug) < C.MIN_SLUG_LENGTH:
            raise WireError(400, "Kernel slug must be at least five characters")
        if len(slug) > 50 or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug):
            raise WireError(400, f"Invalid kernel slug {slug!r}: use 5-50 letters, digits and dashes")
        return owner, slug, None

    @staticmethod
    def _push_meta(req: dict[str, Any], language: str, kernel_type: str, existing: Kernel | None) -> dict[str, Any]:
        def strs(key: str) -> list[str]:
            v = req.get(key)
            return [str(x) for x in v] if isinstance(v, list) else []

        def flag(key: str, default: bool) -> bool:
            v = req.get(key)
            return bool(v) if isinstance(v, bool) else default

        prev = existing.meta if existing else {}
        return {
            "language": "r" if language == "rmarkdown" and kernel_type == "notebook" else language,
            "kernelType": kernel_type,
            "isPrivate": flag("isPrivate", bool(prev.get("isPrivate", True))),
            "enableGpu": flag("enableGpu", False),
            "enableTpu": flag("enableTpu", False),
            "enableInternet": flag("enableInternet", True),
            "datasetDataSources": strs("datasetDataSources"),
            "kernelDataSources": strs("kernelDataSources"),
            "competitionDataSources": strs("competitionDataSources"),
            "modelDataSources": strs("modelDataSources"),
            "categoryIds": strs("categoryIds"),
            "dockerImage": str(req.get("dockerImage") or DOCKER_IMAGE),
            "machineShape": str(req.get("machineShape") or ""),
            "sessionTimeoutSeconds": req.get("sessionTimeoutSeconds"),
        }

    def _invalid_sources(self, user: str, meta: dict[str, Any], target: str) -> dict[str, list[str]]:
        """The data sources a push names that will not be mounted. A kernel naming itself is one of them
        (kaggle-prod-behaviour §1 [many]; the form of the refusal is inferred) unless ``allow_self_mount``."""
        bad: dict[str, list[str]] = {"invalidDatasetSources": [], "invalidCompetitionSources": [],
                                     "invalidKernelSources": [], "invalidModelSources": []}
        for ref in meta["datasetDataSources"]:
            if self.source_path("dataset", ref) is None:
                bad["invalidDatasetSources"].append(ref)
        for ref in meta["competitionDataSources"]:
            if self.source_path("competition", ref) is None:
                bad["invalidCompetitionSources"].append(ref)
        for ref in meta["modelDataSources"]:
            if self.source_path("model", ref) is None:
                bad["invalidModelSources"].append(ref)
        for ref in meta["kernelDataSources"]:
            parts = ref.split("/")
            k = self.kernel_by_ref(parts[0], parts[1]) if len(parts) >= 2 else None
            if k is None or not self.visible(user, k) or (self.is_self_mount(k.ref, target)):
                bad["invalidKernelSources"].append(ref)
        return bad

    def is_self_mount(self, source_ref: str, target_ref: str) -> bool:
        """Whether a kernel source is the pushed kernel itself, and that is refused."""
        return source_ref.lower() == target_ref.lower() and not self.setting("allow_self_mount")

    def _admission_error(self, owner: str, kind: str) -> str | None:
        """Kaggle's admission rules: the batch-session cap, then the weekly accelerator quota. One rule for
        the quota: admitted while used + reserved < allowance (reserved: what running and queued sessions
        may still use up to their limit). Refused with "reached" when the used hours alone fill the
        allowance, else with "projected to exceed" (the reservations did it)."""
        cfg = self.config
        active = [v for v in self.active_versions() if v.owner == owner and v.kind == kind]
        cap = int(cfg["max_sessions"][kind])
        if len(active) >= cap:
            return C.MSG_SESSION_CAP.format(kind=kind.upper(), n=cap)
        if kind in ("gpu", "tpu"):
            allowance = float(cfg[f"{kind}_quota_seconds"])
            used, reserved = self.usage(owner, kind)
            if used + reserved >= allowance:
                if used < allowance and reserved > 0 and cfg["quota_projected_message"]:
                    return MSG_QUOTA_PROJECTED.format(kind=kind.upper(), hours=allowance / 3600)
                return C.MSG_WEEKLY_QUOTA.format(kind=kind.upper(), hours=allowance / 3600)
        return None

    # --- quota ----------------------------------------------------------------------
    def usage(self, user: str, kind: str) -> tuple[float, float]:
        """(used, reserved) seconds this quota week: wall time of accelerator sessions, and what running
        or queued sessions may still use up to their limit."""
        now = self.now()
        start, _ = week_bounds(now)
        used = 0.0
        reserved = 0.0
        with self.lock:
            rows = self.db.execute("SELECT * FROM versions WHERE owner=? AND kind=? AND run=1", (user, kind))
            versions = [self._version(r) for r in rows]
            manual = self.db.execute("SELECT COALESCE(SUM(seconds), 0) FROM usage WHERE username=? AND kind=? "
                                     "AND ts>=? AND ts<=?", (user, kind, start, now)).fetchone()[0]
        for v in versions:
            if v.started is not None:
                end = v.ended if v.ended is not None else now
                used += max(0.0, min(end, now) - max(v.started, start))
            if v.active:
                elapsed = (now - v.started) if v.started is not None else 0.0
                reserved += max(0.0, v.limit_seconds - elapsed)
        return used + float(manual), reserved

    def has_ever_run(self, user: str, kind: str) -> bool:
        with self.lock:
            row = self.db.execute("SELECT 1 FROM versions WHERE owner=? AND kind=? AND started IS NOT NULL "
                                  "UNION SELECT 1 FROM usage WHERE username=? AND kind=?",
                                  (user, kind, user, kind)).fetchone()
        return row is not None

    def add_usage(self, username: str, kind: str, seconds: float) -> None:
        if kind not in ("gpu", "tpu"):
            raise WireError(400, "kind must be gpu or tpu")
        with self.lock:
            self.db.execute("INSERT INTO usage(username, kind, seconds, ts) VALUES (?,?,?,?)",
                            (username, kind, float(seconds), self.now()))

    def quota(self, user: str) -> dict[str, Any]:
        cfg = self.config
        _, refresh = week_bounds(self.now())
        out: dict[str, Any] = {"refresh": refresh}
        for kind in ("gpu", "tpu"):
            used, reserved = self.usage(user, kind)
            total = float(cfg[f"{kind}_quota_seconds"])
            out[kind] = {"used": used, "reserved": reserved, "total": total, "minimum": total,
                         "has_ever_run": self.has_ever_run(user, kind)}
        return out

    # --- version lifecycle (driven by the runner) ---------------------------------------------
    def update_version(self, vid: int, **fields: Any) -> None:
        allowed = {"status", "failure", "started", "ended", "pid", "sandbox_mode", "internet_enforced"}
        assert set(fields) <= allowed, fields
        with self.changed:
            cols = ", ".join(f"{k}=?" for k in fields)
            self.db.execute(f"UPDATE versions SET {cols} WHERE id=?", (*fields.values(), vid))
            self.changed.notify_all()

    def fail_interrupted(self) -> list[Version]:
        """At start-up: runs that were in flight when the emulator stopped end as ERROR (returned as they were)."""
        with self.changed:
            versions = self.active_versions()
            for v in versions:
                self.db.execute("UPDATE versions SET status=?, failure=?, ended=COALESCE(ended, ?) WHERE id=?",
                                (C.STATUS_ERROR, MSG_RESTARTED, self.now(), v.id))
            self.changed.notify_all()
            return versions

    def delete_kernel(self, user: str, owner: str, slug: str) -> None:
        kernel = self.kernel_by_ref(owner or user, slug)
        if kernel is None or kernel.owner != user:
            raise WireError(403, "Permission 'kernels.delete' was denied")
        versions = self.versions_of(kernel.id)
        for v in versions:
            if v.active:
                self.on_cancel(v.id)
        with self.tx() as db:
            db.execute("DELETE FROM versions WHERE kernel_id=?", (kernel.id,))
            db.execute("DELETE FROM kernels WHERE id=?", (kernel.id,))
        for v in versions:
            shutil.rmtree(self.version_dir(v.id), ignore_errors=True)
        with self.changed:
            self.changed.notify_all()

    # --- outputs and logs ---------------------------------------------------------------
    def output_files(self, vid: int) -> list[OutputFile]:
        root = self.output_dir(vid)
        files: list[OutputFile] = []
        if not root.is_dir():
            return files
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in filenames:
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                if not p.is_file() or p.is_symlink():
                    continue
                files.append(OutputFile(p.relative_to(root).as_posix(), p, st.st_size, st.st_mtime))
        files.sort(key=lambda f: f.name)
        return files

    def strip_snapshot(self, vid: int) -> None:
        """Make /kaggle/working what Kaggle saves [one]: no symlinks, no empty folders, no exec bits."""
        if not self.setting("snapshot_strip"):
            return
        root = self.output_dir(vid)
        if not root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            here = Path(dirpath)
            for name in filenames + dirnames:
                p = here / name
                with contextlib.suppress(OSError):
                    if p.is_symlink():
                        p.unlink()
                    elif p.is_file():
                        mode = p.stat().st_mode
                        if mode & 0o111:
                            p.chmod(mode & ~0o111)
                    elif p.is_dir() and not any(p.iterdir()):
                        p.rmdir()

    def output_file(self, vid: int, name: str) -> OutputFile | None:
        root = self.output_dir(vid).resolve()
        p = (root / name).resolve()
        if root not in p.parents or not p.is_file():
            return None
        st = p.stat()
        return OutputFile(name, p, st.st_size, st.st_mtime)

    def log_path(self, vid: int) -> Path:
        return self.version_dir(vid) / "log.jsonl"

    def log_lines(self, vid: int) -> list[str]:
        path = self.log_path(vid)
        if not path.exists():
            return []
        with path.open("r", encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.endswith("\n")]

    def log_text(self, vid: int) -> str:
        """Kaggle's log format: one JSON array, one record per line, leading commas, ']' on its own line."""
        lines = self.log_lines(vid)
        if not lines:
            version = self.version(vid)
            return "[]" if version is not None and version.started is not None else ""
        return "[" + "\n,".join(lines) + "\n]"

    # --- signed file URLs ------------------------------------------------------------------
    def sign(self, vid: int, name: str, expires: int) -> str:
        msg = f"{vid}\n{name}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:40]

    def check_signature(self, vid: int, name: str, expires: int, sig: str) -> bool:
        return hmac.compare_digest(self.sign(vid, name, expires), sig)

    # --- summaries -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        with self.lock:
            counts = {r[0]: r[1] for r in self.db.execute("SELECT status, COUNT(*) FROM versions GROUP BY status")}
        return {
            "users": self.users(),
            "kernels": [k.ref for k in self.all_kernels()],
            "versions_by_status": counts,
            "running_sessions": [
                {"version_id": v.id, "kernel_id": v.kernel_id, "version": v.number, "owner": v.owner,
                 "status": v.status, "kind": v.kind, "sandbox_mode": v.sandbox_mode,
                 "internet_enforced": v.internet_enforced}
                for v in self.active_versions()
            ],
            "sources": self.sources(),
            "config": self.config,
            "clock_offset_seconds": self.clock_offset,
            "now": self.now(),
        }

    def close(self) -> None:
        with self.lock:
            self.db.close()


def file_chunks(path: Path, start: int, length: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream ``length`` bytes of a stored file from ``start`` (signed file and dataset downloads share it)."""
    with path.open("rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data
