"""``/kaggle/working/kagglekit/run.json``: what the run was, what it saw, how it ended.

Written at start, on every watchdog tick, and at exit (also from the SIGTERM handler),
always atomically, so even a killed run leaves a readable manifest (a SIGKILL leaves
the last tick). Only the process that created it writes: in a forked child (DataLoader or
multiprocessing workers) it is inert. Walking /kaggle/working is adaptive (at most ~2% CPU). Schema: docs/run-manifest.md. Standard library only; it never records
or prints environment variable values.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .progress import read_progress

SCHEMA = 1
MANIFEST_RELPATH = "kagglekit/run.json"
ENV_INTERVAL = "KAGGLEKIT_WATCHDOG_INTERVAL"
BUDGET_WARNINGS = (0.80, 0.95)
WALK_COST_FACTOR = 50  # the next walk of /kaggle/working no sooner than 50 x the last walk's duration
TRACEBACK_TAIL_LINES = 40


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: UP017


def tree_bytes(root: Path) -> int:
    """Total size of the files under ``root`` (symlinks not followed)."""
    total = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children) * scale)


def nvidia_devices() -> list[str]:
    """GPU names from ``nvidia-smi -L`` ("GPU 0: Tesla T4 (UUID: ...)"), [] without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=15, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = []
    for line in out.splitlines():
        if line.startswith("GPU ") and ":" in line:
            names.append(line.split(":", 1)[1].split("(UUID")[0].strip())
    return names


def torch_devices() -> list[str]:
    """CUDA device names, only if the project already imported torch AND initialised CUDA.

    torch is never imported here, and no device function is called before the project's own
    CUDA context exists: the watchdog must not create one (memory, and a fork hazard).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        cuda = torch.cuda
        if not cuda.is_initialized():
            return []
        return [str(cuda.get_device_name(i)) for i in range(cuda.device_count())]
    except Exception:
        return []


_DISTS: dict[str, list[str]] | None = None


def imported_packages(skip_under: list[str]) -> dict[str, str]:
    """{distribution: version} for the imported top-level modules (PIL -> Pillow, sklearn -> scikit-learn)."""
    global _DISTS
    import importlib.metadata as md

    if _DISTS is None:
        try:
            _DISTS = dict(md.packages_distributions())
        except Exception:
            _DISTS = {}
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    out: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if "." in name or name.startswith("_") or name in stdlib or module is None:
            continue
        file = getattr(module, "__file__", None) or ""
        if file and any(file.startswith(p) for p in skip_under):
            continue  # the project's own modules and kagglekit_runtime
        for dist in _DISTS.get(name, ()):
            if dist in out:
                continue
            try:
                out[dist] = md.version(dist)
            except Exception:
                continue
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


class RunManifest:
    """The run.json writer and the watchdog thread that keeps it fresh."""

    def __init__(self, working: Path, base: dict[str, Any], *, interval_s: float, output_budget_bytes: int,
                 skip_under: list[str], started_at: float) -> None:
        self.working = working
        self.path = working / MANIFEST_RELPATH
        self.interval_s = interval_s
        self.skip_under = skip_under
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[float] = set()
        self._seq = 0
        self._pid = os.getpid()
        self._next_walk = 0.0  # time.monotonic() before which ticks reuse the last walk
        self.last_walk_s = 0.0
        self.working_bytes: int | None = None  # the latest walk's total: what Kaggle saves at the end
        self.finished = False
        self.started_at = started_at
        requested = base.pop("accelerator_requested", "cpu")
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "kagglekit_version": base.get("kagglekit_version"),
            "kernel": base.get("kernel"),
            "mode": base.get("mode"),
            "overrides": base.get("overrides") or {},
            "args": list(base.get("args") or []),
            "env": dict(base.get("env") or {}),
            "bundle_sha256": base.get("bundle_sha256"),
            "started_at": utc_iso(started_at),
            "last_seen_at": utc_iso(started_at),
            "ended_at": None,
            "duration_s": 0.0,
            "status": "running",
            "exit_code": None,
            "accelerator": {"requested": requested, "seen": "cpu", "devices": []},
            "python": sys.version.split()[0],
            "packages": {},
            "peak_working_bytes": 0,
            "output_budget_bytes": output_budget_bytes,
            "peak_rss_bytes": peak_rss_bytes(),
            "session_limit_s": base.get("session_limit_s"),
            "traceback_tail": None,
            "resume_from": None,
            "restored_files": [],
            # The kagglekit emulator sets KAGGLE_EMULATOR_SANDBOX: there, GPU/TPU sessions run on the CPU.
            "emulated": "KAGGLE_EMULATOR_SANDBOX" in os.environ,
            "session_id": base.get("session_id"),
            "training": None,
        }
        self._nvidia: list[str] | None = None

    def _walk(self, force: bool) -> int | None:
        """Bytes under working, or None when the last walk is too recent for its cost."""
        t0 = time.monotonic()
        if not force and t0 < self._next_walk:
            return None
        used = tree_bytes(self.working)
        self.last_walk_s = time.monotonic() - t0
        self._next_walk = t0 + max(self.interval_s, WALK_COST_FACTOR * self.last_walk_s)
        return used

    def _measure(self, full: bool, force_walk: bool = False) -> None:
        used = self._walk(force_walk)
        now = time.time()
        with self._lock:
            d = self.data
            d["last_seen_at"] = utc_iso(now)
            d["duration_s"] = round(now - self.started_at, 3)
            if used is not None:
                self.working_bytes = used
                d["peak_working_bytes"] = max(int(d["peak_working_bytes"]), used)
            training = read_progress(self.working)
            if training is not None:
                d["training"] = training
            rss = peak_rss_bytes()
            if rss is not None:
                d["peak_rss_bytes"] = max(int(d["peak_rss_bytes"] or 0), rss)
            if full:
                self._measure_accelerator()
                d["packages"] = imported_packages(self.skip_under)
        if used is not None:
            self._check_budget(used)

    def _measure_accelerator(self) -> None:
        if self._nvidia is None:
            self._nvidia = nvidia_devices()
        devices = self._nvidia or torch_devices()
        acc = self.data["accelerator"]
        if devices:
            acc["seen"], acc["devices"] = "cuda", devices
        elif os.environ.get("TPU_ACCELERATOR_TYPE") is not None or os.path.exists("/dev/accel0"):
            acc["seen"] = "tpu"  # the variable's value is never recorded

    def _check_budget(self, used: int) -> None:
        budget = int(self.data["output_budget_bytes"] or 0)
        if budget <= 0:
            return
        for level in BUDGET_WARNINGS:
            if used >= level * budget and level not in self._warned:
                self._warned.add(level)
                print(f"kagglekit: WARNING: {self.working} holds {_human(used)}, {used / budget:.0%} of the "
                      f"{_human(budget)} output budget; the save fails above Kaggle's 20 GB.",
                      file=sys.stderr, flush=True)

    def write(self) -> None:
        """Atomic: a temporary file beside run.json, then rename. Never from a forked child."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._seq += 1
            text = json.dumps(self.data, indent=2)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.parent / f".run.json.{os.getpid()}.{self._seq}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                print(f"kagglekit: could not write {self.path}: {exc.strerror}", file=sys.stderr, flush=True)

    def tick(self, full: bool = True) -> None:
        if self.finished:
            return
        self._measure(full)
        with self._lock:
            if not self.finished:
                self.write()

    def _after_fork_in_child(self) -> None:
        """A forked child must never write run.json nor wait on a lock a parent thread held at fork time."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._stop.set()
        self._thread = None
        self.finished = True

    def start(self) -> None:
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        self.write()
        self._thread = threading.Thread(target=self._loop, name="kagglekit-watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        ticks = 0
        try:
            self.tick(full=True)  # accelerator probe and packages early, off the main thread
            while not self._stop.wait(self.interval_s):
                ticks += 1
                self.tick(full=ticks % 5 == 0)
        except Exception as exc:  # the watchdog must never take the run down
            print(f"kagglekit: watchdog stopped: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def finish(self, status: str, exit_code: int | None, traceback_tail: str | None = None) -> None:
        """The final write; later calls do nothing (the first ending wins, e.g. SIGTERM).

        The status goes to disk first (a SIGTERM leaves little time), then the last
        measurements (a full walk of working, packages) and a second write.
        """
        if os.getpid() != self._pid:
            return  # a forked child (even one forked behind os.register_at_fork's back)
        with self._lock:
            if self.finished:
                return
            self.finished = True
            self._stop.set()
            now = time.time()
            self.data.update(status=status, exit_code=exit_code, ended_at=utc_iso(now),
                             last_seen_at=utc_iso(now), duration_s=round(now - self.started_at, 3))
            training = read_progress(self.working)
            if training is not None:
                self.data["training"] = training
            if traceback_tail:
                self.data["traceback_tail"] = tail_lines(traceback_tail, TRACEBACK_TAIL_LINES)
            self.write()
            with contextlib.suppress(Exception):
                self._measure(full=True, force_walk=True)
                self.data["duration_s"] = round(now - self.started_at, 3)  # still up to ended_at
                self.write()


def tail_lines(text: str, n: int) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:])


def saving_line(status: str, exit_code: int | None, working: Path, size: int | None) -> str:
    """The last line a run prints: Kaggle now saves /kaggle/working (its version stays RUNNING meanwhile).

    ``kagglekit push --wait`` reads it from the live log to show "saving outputs, N GB" (watch.SAVING_LINE).
    """
    held = _human(size) if size is not None else "an unknown amount"
    return f"kagglekit: run ended ({status}, exit {exit_code}); {working} holds {held} for Kaggle to save"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def interval_from_env(default: float) -> float:
    try:
        value = float(os.environ.get(ENV_INTERVAL, ""))
        return value if value > 0 else default
    except ValueError:
        return default
