"""Run a kernel version in a subprocess, in a sandbox laid out like Kaggle's.

Each version gets ``versions/<id>/sandbox/kaggle/{working,input,temp}``. Two modes:

* ``namespace``: where the OS lets an unprivileged process create user + mount + pid
  namespaces (``unshare``), ``sandbox.py`` mounts the sandbox at the real ``/kaggle``,
  inputs read-only, and (internet off) gives the kernel a network namespace with
  only loopback;
* ``relative``: the kernel runs with cwd ``<sandbox>/kaggle/working`` and inputs as
  symlinks; ``KAGGLE_KERNEL_ROOT`` says where ``/kaggle`` is. Nothing is enforced.

The kernel runs with the emulator's own interpreter (so torch is importable), the
environment of a batch session (not the data-proxy variables, no Kaggle credentials),
and its stdout/stderr recorded live in Kaggle's log format.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from kagglekit import constants as C
from kagglekit.emulator.models import (
    DOCKER_IMAGE,
    KAGGLE_URL_BASE,
    MSG_RESTARTED,
    Backend,
    Version,
    human_bytes,
)

HERE = Path(__file__).resolve().parent
SANDBOX_PY = HERE / "sandbox.py"
NBRUN_PY = HERE / "nbrun.py"
SANDBOX_FAIL = 97

_probe_lock = threading.Lock()
_probe: dict[str, Any] | None = None


def namespace_support() -> dict[str, Any]:
    """Whether this OS lets us mount the sandbox at /kaggle (and cut the network); probed once."""
    global _probe
    with _probe_lock:
        if _probe is None:
            _probe = _probe_namespaces()
        return dict(_probe)


def _probe_namespaces() -> dict[str, Any]:
    unshare = shutil.which("unshare")
    if not unshare or not sys.platform.startswith("linux"):
        return {"mount": False, "net": False, "reason": "unshare(1) is not available"}
    result: dict[str, Any] = {"mount": False, "net": False, "reason": ""}
    with tempfile.TemporaryDirectory(prefix="kk-emu-probe-") as tmp:
        kaggle = Path(tmp) / "sandbox" / "kaggle"
        for sub in ("working", "input", "temp"):
            (kaggle / sub).mkdir(parents=True)
        for net in (False, True):
            spec = {"newroot": str(Path(tmp) / f"root{int(net)}"), "kaggle_dir": str(kaggle), "inputs": [],
                    "netns": net, "pidns": True,
                    "argv": [sys.executable, "-I", "-S", "-c", "import os; print(os.getcwd())"],
                    "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}}
            spec_path = Path(tmp) / f"spec{int(net)}.json"
            spec_path.write_text(json.dumps(spec))
            try:
                proc = subprocess.run(_unshare_argv(unshare, net, spec_path), capture_output=True, text=True,
                                      timeout=20)
                ok = proc.returncode == 0 and proc.stdout.strip() == "/kaggle/working"
                reason = (proc.stderr.strip().splitlines() or [""])[-1]
            except (OSError, subprocess.SubprocessError) as exc:
                ok, reason = False, str(exc)
            result["net" if net else "mount"] = ok
            if not ok and not result["reason"]:
                result["reason"] = reason or "unshare failed"
            if not ok:
                break
    return result


def _unshare_argv(unshare: str, net: bool, spec_path: Path) -> list[str]:
    flags = ["-U", "-r", "-m", "-p"] + (["-n"] if net else [])
    return [unshare, *flags, "--kill-child", "--", sys.executable, "-I", "-S", str(SANDBOX_PY), str(spec_path)]


@dataclasses.dataclass(frozen=True)
class _Launch:
    """What starts a kernel: command, environment, working folder and the sandbox it gets."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    use_ns: bool
    netns: bool


class LogSink:
    """Appends ``{stream_name, time, data}`` records (one JSON line each) to the version's log file."""

    def __init__(self, path: Path, backend: Backend) -> None:
        self.path = path
        self.backend = backend
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.f = path.open("a", encoding="utf-8")
        self.last_stderr = ""

    def write(self, stream: str, data: str) -> None:
        if not data:
            return
        rec = {"stream_name": stream, "time": round(time.monotonic() - self.t0, 9), "data": data}
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()
            if stream == "stderr" and data.strip():
                self.last_stderr = data.strip().splitlines()[-1]
        with self.backend.changed:
            self.backend.changed.notify_all()

    def pump(self, pipe: IO[bytes], stream: str) -> None:
        """Read a pipe until EOF, one record per line (a trailing partial line is flushed as is)."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        buf = ""
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += decoder.decode(chunk)
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                self.write(stream, line + "\n")
            if buf and ("\r" in buf or len(buf) > 65536):
                self.write(stream, buf)
                buf = ""
        buf += decoder.decode(b"", final=True)
        self.write(stream, buf)
        with contextlib.suppress(OSError):
            pipe.close()

    def close(self) -> None:
        with self.lock:
            self.f.close()


class Runner:
    """Queues, runs, times out and cancels kernel versions; one thread per running version."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._wake: dict[int, threading.Event] = {}
        self._cancel: dict[int, str] = {}
        self._stopping = False
        backend.on_new_version = self.submit
        backend.on_cancel = lambda vid: self.cancel(vid, "deleted")

    # --- public --------------------------------------------------------------------
    def submit(self, vid: int) -> None:
        with self._lock:
            if self._stopping:
                return
            self._wake[vid] = threading.Event()
            t = threading.Thread(target=self._run, args=(vid,), name=f"kernel-v{vid}", daemon=True)
            self._threads[vid] = t
        t.start()

    def cancel(self, vid: int, reason: str = "cancel") -> bool:
        """Stop a queued or running version: ``cancel`` (CANCEL_ACKNOWLEDGED), ``deleted``, ``stopping``."""
        with self._lock:
            if vid not in self._threads:
                return False
            # A stop or a delete overrides a user's cancel still saving: stopping the emulator must not wait
            # for that save phase (up to the runner's 15 s join, then a thread left behind).
            if self._cancel.get(vid) in (None, "cancel"):
                self._cancel[vid] = reason
            ev = self._wake.get(vid)
            proc = self._procs.get(vid)
        if ev:
            ev.set()
        if proc:
            _kill(proc)
        return True

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._threads)

    def stop(self, timeout: float = 15.0) -> None:
        """Kill every kernel and wait for the runner threads (the emulator is shutting down)."""
        with self._lock:
            self._stopping = True
        self.kill_all("stopping", timeout)

    def kill_all(self, reason: str = "deleted", timeout: float = 15.0) -> None:
        """Kill every queued or running kernel and wait for their threads."""
        with self._lock:
            vids = list(self._threads)
        for vid in vids:
            self.cancel(vid, reason)
        deadline = time.monotonic() + timeout
        for vid in vids:
            with self._lock:
                t = self._threads.get(vid)
            if t is not None:
                t.join(max(0.1, deadline - time.monotonic()))

    # --- one version -------------------------------------------------------------------
    def _run(self, vid: int) -> None:
        try:
            self._execute(vid)
        except Exception as exc:  # never let a kernel take the emulator down
            traceback.print_exc()
            with contextlib.suppress(Exception):
                self._finish(vid, C.STATUS_ERROR, f"The emulator could not run this version: {exc}")
        finally:
            with self._lock:
                self._threads.pop(vid, None)
                self._procs.pop(vid, None)
                self._wake.pop(vid, None)
                self._cancel.pop(vid, None)

    def _finish(self, vid: int, status: str, failure: str = "") -> None:
        if self.backend.version(vid) is None:  # deleted meanwhile
            return
        self.backend.update_version(vid, status=status, failure=failure, ended=self.backend.now())

    def _cancelled(self, vid: int) -> str | None:
        with self._lock:
            return self._cancel.get(vid)

    def _end_cancelled(self, vid: int, reason: str) -> None:
        if reason == "stopping":
            self._finish(vid, C.STATUS_ERROR, MSG_RESTARTED)
        elif reason == "cancel":
            self._finish(vid, C.STATUS_CANCEL_ACKNOWLEDGED, "")

    def _execute(self, vid: int) -> None:
        """One run, by phase: wait for the session, lay out the sandbox, start, supervise, save, conclude."""
        v = self._await_session(vid)
        if v is None:
            return
        launch = self._prepare(v)
        if launch is None:
            return
        started = self._start(v, launch)
        if started is None:
            return
        proc, sink, pumps = started
        timed_out = self._supervise(proc, float(v.limit_seconds))
        for t in pumps:
            t.join(5)
        sink.close()
        if self._cancelled(vid) in ("deleted", "stopping"):
            self._end_cancelled(vid, str(self._cancelled(vid)))
            return
        if not self._save(vid, cancelled=timed_out or self._cancelled(vid) == "cancel"):
            return
        self._conclude(vid, proc.returncode, timed_out, sink, launch.use_ns)

    def _await_session(self, vid: int) -> Version | None:
        """Until Kaggle has created the session (status 404 meanwhile), then ``queue_seconds`` QUEUED."""
        b = self.backend
        ev = self._wake[vid]
        v = b.version(vid)
        while v is not None and v.session_at is not None and not self._cancelled(vid) \
                and (left := v.session_at - b.now()) > 0:
            ev.wait(min(left, 0.25))  # in slices: a test may move the emulator's clock meanwhile
        if not self._cancelled(vid):
            ev.wait(float(b.setting("queue_seconds")))
        reason = self._cancelled(vid)
        if reason:
            self._end_cancelled(vid, reason)
            return None
        return b.version(vid)

    def _prepare(self, v: Version) -> _Launch | None:
        """Check the language and sandbox mode, lay out /kaggle, and build the command and environment."""
        b = self.backend
        cfg = b.config
        language = str(v.meta.get("language", "python"))
        if language != "python":
            b.update_version(v.id, started=b.now())
            self._finish(v.id, C.STATUS_ERROR,
                         f"The kagglekit emulator runs Python kernels only; this kernel's language is {language!r}.")
            return None
        support = namespace_support() if cfg["sandbox"] != "relative" else {"mount": False, "net": False}
        use_ns = bool(support["mount"])
        if cfg["sandbox"] == "namespace" and not use_ns:
            b.update_version(v.id, started=b.now())
            self._finish(v.id, C.STATUS_ERROR, "The namespace sandbox is not available on this machine: "
                         f"{support.get('reason') or 'unknown reason'}.")
            return None
        netns = use_ns and not bool(v.meta.get("enableInternet", True)) and bool(support["net"])
        vdir = b.version_dir(v.id)
        sandbox = vdir / "sandbox"
        kaggle = sandbox / "kaggle"
        for d in (kaggle / "working", kaggle / "input", kaggle / "temp", sandbox / "home", sandbox / "tmp",
                  sandbox / "src", sandbox / "site-packages"):
            d.mkdir(parents=True, exist_ok=True)
        inputs = self._inputs(v, bool(cfg["legacy_layout"]))
        if not use_ns:
            for src, dst in inputs:
                link = kaggle / "input" / dst
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(src, target_is_directory=True)
        python = str(cfg.get("kernel_python") or "") or sys.executable  # config kernel_python: a chosen interpreter
        argv = self._argv(v, sandbox, python, bool(cfg["require_kernelspec"]))
        env = self._env(v, C.KAGGLE_ROOT if use_ns else str(kaggle), sandbox, use_ns, b.secret, python)
        if not use_ns:
            return _Launch(argv, env, kaggle / "working", use_ns, netns)
        spec = {"newroot": str(vdir / "root"), "kaggle_dir": str(kaggle),
                "inputs": [{"src": str(s), "dst": d} for s, d in inputs],
                "netns": netns, "pidns": True, "argv": argv, "env": env, "cwd": f"{C.KAGGLE_ROOT}/working"}
        spec_path = vdir / "sandbox.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        cmd = _unshare_argv(shutil.which("unshare") or "unshare", netns, spec_path)
        proc_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        return _Launch(cmd, proc_env, kaggle / "working", use_ns, netns)

    def _argv(self, v: Version, sandbox: Path, python: str, require_kernelspec: bool) -> list[str]:
        source = self.backend.source_text(v.id)
        if v.meta.get("kernelType") == "notebook":
            code = sandbox / "src" / "__notebook__.ipynb"
            code.write_text(source, encoding="utf-8")
            flags = ["--require-kernelspec"] if require_kernelspec else []
            return [python, "-u", str(NBRUN_PY), *flags, str(code),
                    str(self.backend.version_dir(v.id) / "__notebook__.ipynb")]
        code = sandbox / "src" / "__script__.py"
        code.write_text(source, encoding="utf-8")
        return [python, "-u", str(code)]

    def _start(self, v: Version, launch: _Launch) -> tuple[subprocess.Popen[bytes], LogSink,
                                                           list[threading.Thread]] | None:
        """Start the kernel; RUNNING is recorded together with its pid (so RUNNING always has one)."""
        b = self.backend
        sink = LogSink(b.log_path(v.id), b)
        try:
            proc = subprocess.Popen(launch.cmd, cwd=str(launch.cwd), env=launch.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            sink.close()
            b.update_version(v.id, started=b.now())
            self._finish(v.id, C.STATUS_ERROR, f"The kernel could not be started: {exc}")
            return None
        with self._lock:
            self._procs[v.id] = proc
        status = C.STATUS_CANCEL_REQUESTED if self._cancelled(v.id) == "cancel" else C.STATUS_RUNNING
        b.update_version(v.id, status=status, started=b.now(), pid=proc.pid,
                         sandbox_mode="namespace" if launch.use_ns else "relative",
                         internet_enforced=int(launch.netns))
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [threading.Thread(target=sink.pump, args=(proc.stdout, "stdout"), daemon=True),
                 threading.Thread(target=sink.pump, args=(proc.stderr, "stderr"), daemon=True)]
        for t in pumps:
            t.start()
        if self._cancelled(v.id):  # a cancel that raced with the start
            _kill(proc)
        return proc, sink, pumps

    @staticmethod
    def _supervise(proc: subprocess.Popen[bytes], limit: float) -> bool:
        """Wait for the kernel to end; kill it at the session limit. Returns whether it timed out."""
        started = time.monotonic()
        while True:
            remaining = limit - (time.monotonic() - started)
            if remaining <= 0:
                _kill(proc)
                proc.wait()
                return True
            try:
                proc.wait(timeout=min(remaining, 0.1))
                return False
            except subprocess.TimeoutExpired:
                continue

    def _save(self, vid: int, cancelled: bool) -> bool:
        """The save phase: /kaggle/working becomes the saved snapshot and is "uploaded" at
        ``save_seconds_per_gb`` (at least ``save_min_seconds``). The version stays RUNNING (a cancelled
        one CANCEL_REQUESTED, its files appearing meanwhile). False when deleted or stopped meanwhile."""
        b = self.backend
        b.strip_snapshot(vid)
        if cancelled and b.version(vid) is not None:
            b.update_version(vid, status=C.STATUS_CANCEL_REQUESTED)
        total = sum(f.size for f in b.output_files(vid))
        seconds = max(float(b.setting("save_min_seconds")), total / 1e9 * float(b.setting("save_seconds_per_gb")))
        start = time.time()
        with b.changed:
            b.saving[vid] = (start, start + seconds)
            b.changed.notify_all()
        try:
            ev = self._wake[vid]
            while (left := start + seconds - time.time()) > 0:
                ev.wait(left)
                ev.clear()
                reason = self._cancelled(vid)
                if reason in ("deleted", "stopping"):
                    self._end_cancelled(vid, reason)
                    return False
        finally:
            with b.changed:
                b.saving.pop(vid, None)
        return True

    def _conclude(self, vid: int, rc: int, timed_out: bool, sink: LogSink, use_ns: bool) -> None:
        """The final status: cancelled, timed out, output too large, or the exit code's verdict."""
        b = self.backend
        reason = self._cancelled(vid)
        if reason:
            self._end_cancelled(vid, reason)
            return
        if timed_out:
            self._finish(vid, C.STATUS_CANCEL_ACKNOWLEDGED, C.MSG_TIMEOUT)
            return
        out_limit = int(b.setting("output_limit_bytes"))
        total = sum(f.size for f in b.output_files(vid))
        if rc == 0 and total > out_limit:
            self._finish(vid, C.STATUS_ERROR, C.MSG_OUTPUT_TOO_LARGE.format(limit=human_bytes(out_limit)))
            return
        if rc == 0:
            self._finish(vid, C.STATUS_COMPLETE)
            return
        if use_ns and rc == SANDBOX_FAIL and sink.last_stderr.startswith("kagglekit-emulator sandbox:"):
            self._finish(vid, C.STATUS_ERROR, sink.last_stderr)
            return
        if rc < 0 or rc > 128:
            signum = -rc if rc < 0 else rc - 128
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = str(signum)
            self._finish(vid, C.STATUS_ERROR, f"The kernel process was killed by signal {name}.")
            return
        detail = f": {sink.last_stderr}" if sink.last_stderr else "."
        self._finish(vid, C.STATUS_ERROR, f"The kernel process exited with code {rc}{detail}"[:1000])

    def _inputs(self, v: Version, legacy: bool) -> list[tuple[Path, str]]:
        """(source folder, path under kaggle/input) for every valid data source of the version."""
        b = self.backend
        out: list[tuple[Path, str]] = []
        seen: set[str] = set()

        def add(src: Path | None, modern: str, flat: str) -> None:
            dst = flat if legacy else modern
            if src is not None and src.is_dir() and dst not in seen:
                seen.add(dst)
                out.append((src, dst))

        for ref in v.meta.get("datasetDataSources", []):
            owner_slug = "/".join(ref.split("/")[:2])
            add(b.source_path("dataset", ref), f"datasets/{owner_slug}", owner_slug.split("/")[-1])
        for slug in v.meta.get("competitionDataSources", []):
            add(b.source_path("competition", slug), f"competitions/{slug}", slug)
        for ref in v.meta.get("modelDataSources", []):
            parts = ref.split("/")
            add(b.source_path("model", ref), f"models/{ref}", "/".join(parts[1:]))
        for ref in v.meta.get("kernelDataSources", []):
            parts = ref.split("/")
            if len(parts) < 2:
                continue
            k = b.kernel_by_ref(parts[0], parts[1])
            own = b.kernel_by_id(v.kernel_id)
            if k is None or not b.visible(v.owner, k) or (own is not None and b.is_self_mount(k.ref, own.ref)):
                continue
            number = int(parts[2].lstrip("v")) if len(parts) > 2 and parts[2].lstrip("v").isdigit() else None
            src_version = b.latest_output_version(k, number)
            if src_version is None or src_version.id == v.id:
                continue
            add(b.output_dir(src_version.id), f"notebooks/{k.owner}/{k.slug}", k.slug)
        return out

    @staticmethod
    def _env(v: Version, root: str, sandbox: Path, use_ns: bool, secret: bytes,
             python: str | None = None) -> dict[str, str]:
        """A batch session's environment: no credentials, no data-proxy variables (see kaggle-platform §4.2).
        ``KAGGLE_CONTAINER_NAME`` carries the session id as on Kaggle: ``kaggle_<token>-<sessionId>-webtier``."""
        token = hmac.new(secret, f"container:{v.id}".encode(), hashlib.sha256).hexdigest()[:12]
        bindir = str(Path(python or sys.executable).parent)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        return {
            "PATH": f"{bindir}{os.pathsep}{path}",
            "HOME": str(sandbox / "home"),
            "TMPDIR": str(sandbox / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "MPLBACKEND": "agg",
            "KAGGLE_KERNEL_RUN_TYPE": "Batch",
            "KAGGLE_URL_BASE": KAGGLE_URL_BASE,
            "KAGGLE_DOCKER_IMAGE": str(v.meta.get("dockerImage") or DOCKER_IMAGE),
            "KAGGLE_KERNEL_INTEGRATIONS": "",
            "KAGGLE_CONTAINER_NAME": f"kaggle_{token}-{v.session_id}-webtier",
            "KAGGLE_KERNEL_ROOT": root,
            "KAGGLE_EMULATOR_SANDBOX": "namespace" if use_ns else "relative",
            "DISABLE_KAGGLE_CACHE": "1",
            # A kernel's `pip install` lands in its sandbox, never in the environment the emulator runs from.
            "PIP_TARGET": str(sandbox / "site-packages"),
            "PYTHONPATH": str(sandbox / "site-packages"),
        }


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid`` (recursively), from /proc; empty where /proc is unavailable."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the kernel, its process group and every descendant (a notebook kernel has its own session)."""
    if proc.poll() is not None:
        return
    for pid in _descendants(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def kill_orphan(pid: int, version_dir: Path) -> bool:
    """Kill a kernel left running by an emulator that died, if ``pid`` is still that kernel (checked via
    its command line, which names a file in ``version_dir``); returns whether it was killed."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    if str(version_dir) not in cmdline:
        return False  # the pid was reused by something else
    for child in _descendants(pid):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    return True
