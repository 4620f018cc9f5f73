"""Run a bundled project inside the kernel (standard library only).

Called by the generated script once the archive is verified and extracted to scratch:
exports the mode and the time budget, starts the run.json watchdog, runs the entry
point (a module with ``runpy.run_module`` or a script with ``runpy.run_path``) with
``/kaggle/working`` as the working directory, and returns the exit code a plain
``python`` would have given (exceptions: 1, with the traceback printed). A requested
resume that restores no checkpoint stops before the entry with exit code 3
(``RESUME_FAILED_EXIT``): training from scratch for hours is never what was asked.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import os
import runpy
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from . import deps, paths, session
from .manifest import RunManifest, interval_from_env, saving_line

ENV_OUTPUT_BUDGET = "KAGGLEKIT_OUTPUT_BUDGET_BYTES"
ENV_BUNDLE_SHA = "KAGGLEKIT_BUNDLE_SHA256"
DEFAULT_INTERVAL_S = 5.0
RESUME_FAILED_EXIT = 3
LISTED_FILES = 10
DEFAULT_EXIT_GRACE_S = 300.0  # constants.EXIT_GRACE_SECONDS (this module is standard library only)


class ResumeError(Exception):
    """A resume was asked for and no checkpoint file could be restored."""


def _exit_code(code: object) -> int:
    """What ``sys.exit(code)`` makes the interpreter return."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    print(code, file=sys.stderr, flush=True)
    return 1


def _user_traceback(exc: BaseException) -> str:
    """The traceback without the frames of this bootstrap and runpy."""
    skip = {"runpy", __name__}
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in skip:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _run_entry(entry: str, project: Path, argv: list[str] | None = None) -> None:
    """Run the entry as ``python SCRIPT ARGS`` or ``python -m MODULE ARGS`` would."""
    args = [str(a) for a in argv or []]
    if entry.endswith(".py"):
        script = project / entry
        sys.argv = [str(script), *args]
        script_dir = str(script.parent)
        if script_dir not in sys.path:
            sys.path.insert(0, script_dir)
        runpy.run_path(str(script), run_name="__main__")
    else:
        sys.argv = [entry, *args]  # run_module replaces argv[0] with the module's file, as python -m does
        runpy.run_module(entry, run_name="__main__", alter_sys=True)


def restore_checkpoints(ref: str, patterns: list[str], working: Path) -> list[str]:
    """Copy the checkpoint files of a previous run's output (mounted as an input) into ``working``.

    Files already in ``working`` are kept (and count as restored); the previous run's
    kagglekit/run.json is not copied. Raises ResumeError when no checkpoint is there to
    resume from: the output is not mounted, or holds no file matching ``patterns``.
    """
    wanted = ", ".join(patterns) or "none (no `checkpoints` patterns in kagglekit.toml)"
    owner_slug = "/".join(ref.split("/")[:2])
    try:
        source = paths.input_path("notebook", owner_slug)
    except (FileNotFoundError, ValueError) as exc:
        raise ResumeError(f"asked to resume from {ref}, but its output is not mounted as an input: {exc}\n"
                          f"Checkpoint patterns: {wanted}.") from None
    copied: list[str] = []
    kept: list[str] = []
    others: list[str] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if not path.is_file() or rel.startswith("kagglekit/"):
            continue
        if not any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel, p) for p in patterns):
            others.append(rel)
            continue
        dest = working / rel
        if dest.exists():
            kept.append(rel)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copied.append(rel)
    if not copied and not kept:
        found = ", ".join(others[:LISTED_FILES]) + (f" and {len(others) - LISTED_FILES} more"
                                                   if len(others) > LISTED_FILES else "")
        raise ResumeError(f"asked to resume from {ref}, but its output ({source}) holds no file matching the "
                          f"checkpoint patterns {wanted}; it holds: {found or 'no files'}.")
    if copied:
        print(f"kagglekit: resuming from {ref}: copied {', '.join(copied)} into {working}", flush=True)
    if kept:
        print(f"kagglekit: resuming from {ref}: kept {', '.join(kept)} already in {working}", flush=True)
    return copied + kept


_notebook_manifest: list[RunManifest] = []
_notebook_placed: list[tuple[Path, dict[str, str]]] = []


def _start_notebook(manifest: RunManifest, working: Path, placed: dict[str, str]) -> None:
    """Keep the manifest running across cells; a cell that raises marks the run ``error``.

    IPython is already imported in a notebook kernel, so this stays standard-library only:
    it only looks the shell up in ``sys.modules``.
    """
    _notebook_manifest[:] = [manifest]
    _notebook_placed[:] = [(working, placed)]
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    if shell is None:
        return

    def after_cell(result: Any) -> None:
        error = getattr(result, "error_in_exec", None)
        if error is not None and not manifest.finished:
            code = _exit_code(error.code) if isinstance(error, SystemExit) else 1
            if isinstance(error, SystemExit) and code == 0:
                return
            manifest.finish("error", code, _user_traceback(error))

    shell.events.register("post_run_cell", after_cell)


def finish_notebook() -> None:
    """The notebook's last cell: every cell before it ran, so the run is complete."""
    for working, placed in _notebook_placed:
        tidy_working_files(working, placed)
    for manifest in _notebook_manifest:
        if not manifest.finished:
            manifest.finish("complete", 0, None)
            print(saving_line("complete", 0, manifest.working, manifest.working_bytes), flush=True)


def place_working_files(project: Path, working: Path, names: list[str]) -> dict[str, str]:
    """Copy ``working-files`` (files or folders of the project) into the working directory.

    For code that opens its config by a relative path (``open("config.toml")``): on Kaggle the
    working directory is /kaggle/working, not the project. A file already there (a resumed run's)
    is kept. Returns {relative path: sha256} of what was copied, for ``tidy_working_files``.
    """
    import hashlib

    placed: dict[str, str] = {}
    for name in names:
        source = project / name
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in files:
            rel = path.relative_to(project).as_posix()
            dest = working / rel
            if dest.exists() or not path.is_file():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            placed[rel] = hashlib.sha256(dest.read_bytes()).hexdigest()
    if placed:
        print(f"kagglekit: copied {', '.join(sorted(placed))} into {working} (working-files)", flush=True)
    return placed


def tidy_working_files(working: Path, placed: dict[str, str]) -> None:
    """Remove the copies the run left unchanged, so the output holds only what the project wrote."""
    import hashlib

    for rel, digest in placed.items():
        dest = working / rel
        with contextlib.suppress(OSError):
            if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == digest:
                dest.unlink()
                parent = dest.parent
                while parent != working and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent


def _fmt_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def run(config: dict[str, Any], project_dir: str | os.PathLike[str]) -> int:
    """Run the project's entry point; returns the process exit code.

    Phases: environment -> working folder -> run.json watchdog -> restore a checkpoint -> requirements ->
    working files -> run and record (a notebook kernel's cells run after this returns).
    """
    project = Path(project_dir).resolve()
    started, runtime_parent = _prepare_environment(config, project)
    working = paths.working_dir()
    working.mkdir(parents=True, exist_ok=True)
    os.chdir(working)
    _line_buffered()
    entry = str(config["entry"])
    limit = float(os.environ[session.ENV_SESSION_LIMIT])
    sets = config.get("overrides") or {}
    sets_text = ", ".join(f"{k}={v}" for k, v in sets.items()) or "none"
    argv = [str(a) for a in config.get("argv") or []]
    env_set = {str(k): str(v) for k, v in sorted((config.get("env") or {}).items())}
    given = f", arguments {' '.join(argv)}" if argv else ""
    given += f", environment {' '.join(f'{k}={v}' for k, v in env_set.items())}" if env_set else ""
    print(f"kagglekit: running {entry} (mode {config.get('mode') or 'as bundled'}, overrides {sets_text}{given}), "
          f"bundle {str(config.get('bundle_sha256'))[:12]}, session limit {_fmt_duration(limit)}", flush=True)
    if "KAGGLE_EMULATOR_SANDBOX" in os.environ and str(config.get("accelerator") or "cpu") not in ("cpu", "None"):
        print("kagglekit: this is the kagglekit emulator: the GPU/TPU session runs on the local CPU "
              "(no accelerator; timings and memory are not Kaggle's)", flush=True)

    sid = session.session_id()
    if sid is not None:  # no API returns it; `kagglekit stop` reads it back from this line to cancel the run
        print(f"kagglekit: kernel session id {sid}", flush=True)
    base = {k: config.get(k) for k in ("kagglekit_version", "kernel", "mode", "overrides", "bundle_sha256")}
    base["args"] = argv
    base["env"] = env_set
    base["session_limit_s"] = int(limit)
    base["session_id"] = sid
    base["accelerator_requested"] = config.get("accelerator") or "cpu"
    manifest = RunManifest(working, base, interval_s=interval_from_env(float(config.get("watchdog_interval_s")
                                                                               or DEFAULT_INTERVAL_S)),
                           output_budget_bytes=int(config.get("output_budget_bytes") or 0),
                           skip_under=[str(project), runtime_parent], started_at=started)
    if config.get("resume_from") and not _resume(config, manifest, working):
        return RESUME_FAILED_EXIT
    if config.get("requirements") and not _install_requirements(config, manifest):
        return deps.DEPS_FAILED_EXIT
    manifest.start()
    atexit.register(manifest.finish, "interrupted", None)
    interrupted = _stop_on_sigterm(manifest)
    placed = place_working_files(project, working, list(config.get("working_files") or []))
    if entry.endswith(".ipynb"):  # a notebook kernel: its own cells run next, in this interpreter
        _start_notebook(manifest, working, placed)
        return 0
    tb_text: str | None = None
    try:
        _run_entry(entry, project, argv)
        code, status = 0, "complete"
    except SystemExit as exc:
        code = _exit_code(exc.code)
        status = "interrupted" if interrupted else ("complete" if code == 0 else "error")
    except KeyboardInterrupt as exc:
        tb_text = _user_traceback(exc)
        print(tb_text, file=sys.stderr, end="", flush=True)
        code, status = 130, "interrupted"
    except BaseException as exc:
        tb_text = _user_traceback(exc)
        print(tb_text, file=sys.stderr, end="", flush=True)
        code, status = 1, "error"
    tidy_working_files(working, placed)
    manifest.finish(status, code, tb_text)
    print(saving_line(status, code, working, manifest.working_bytes), flush=True)
    _end_after(float(config.get("exit_grace_s") or DEFAULT_EXIT_GRACE_S), code)
    return code


def _end_after(grace_s: float, code: int) -> None:
    """End the process ``grace_s`` after the run ended if it has not exited by then.

    A thread the project left running, or a library's atexit hook waiting on its child process (wandb-core
    with no network never answers), keeps a finished kernel RUNNING to the session limit: on a GPU, hours
    of quota for nothing. A daemon timer outlives both (atexit hooks run after non-daemon threads are joined,
    daemon threads still run) and ends the process with the run's own exit code.
    """
    def end() -> None:
        stuck = sorted(t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread())
        why = f"threads still running: {', '.join(stuck)}" if stuck else "an exit hook or a child process it waits on"
        print(f"kagglekit: the process was still alive {grace_s:g}s after the run ended ({why}); ending it with "
              f"exit code {code} so the session does not run on to its limit (setting exit-grace)",
              file=sys.stderr, flush=True)
        os._exit(code)

    timer = threading.Timer(grace_s, end)
    timer.daemon = True
    timer.name = "kagglekit-exit-grace"
    timer.start()


def _line_buffered() -> None:
    """Each printed line reaches Kaggle's log at once, even from a run that is killed later."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(line_buffering=True)


def _prepare_environment(config: dict[str, Any], project: Path) -> tuple[float, str]:
    """Set the environment the project (and its child processes) read; returns (start time, runtime folder)."""
    env = os.environ
    env.setdefault(session.ENV_STARTED_AT, repr(session.process_started_at() or time.time()))
    started = float(env[session.ENV_STARTED_AT])
    if not env.get(session.ENV_SESSION_LIMIT):
        env[session.ENV_SESSION_LIMIT] = str(int(config.get("session_limit_s") or session.DEFAULT_SESSION_LIMIT_S))
    mode = config.get("mode")
    if mode in ("test", "full"):
        env[session.ENV_MODE] = mode
        env[session.ENV_RUNNING_TEST] = "1" if mode == "test" else "0"
    env[ENV_OUTPUT_BUDGET] = str(int(config.get("output_budget_bytes") or 0))
    env[ENV_BUNDLE_SHA] = str(config.get("bundle_sha256") or "")
    env[paths.ENV_PROJECT_DIR] = str(project)
    env["PYTHONUNBUFFERED"] = "1"  # workers and subprocesses write through to the log, even if killed
    for name, value in sorted((config.get("env") or {}).items()):
        env[str(name)] = str(value)
    runtime_parent = str(Path(__file__).resolve().parent.parent)
    # a src layout's folder comes first, as an installed package would: `import mypkg` is src/mypkg
    code_roots = [str(project / p) for p in config.get("python_path") or []] + [str(project)]
    for entry_path in (runtime_parent, *reversed(code_roots)):
        if entry_path not in sys.path:
            sys.path.insert(0, entry_path)
    # child processes (DataLoader workers with spawn, torchrun, subprocess) find the project too
    env["PYTHONPATH"] = os.pathsep.join([*code_roots, runtime_parent, *filter(None, [env.get("PYTHONPATH")])])
    return started, runtime_parent


def _resume(config: dict[str, Any], manifest: RunManifest, working: Path) -> bool:
    """Copy the parent run's checkpoints into the working folder; False (and run.json says why) if that failed."""
    resume_from = config["resume_from"]
    os.environ["KAGGLEKIT_RESUME_FROM"] = str(resume_from)
    manifest.data["resume_from"] = resume_from
    try:
        restored = restore_checkpoints(str(resume_from), list(config.get("checkpoints") or ()), working)
    except ResumeError as exc:
        message = (f"kagglekit: ERROR: {exc}\nThe entry was not run: it would train from scratch. Check that "
                   f"the previous version saved its checkpoint under /kaggle/working and finished saving, "
                   f"or push without --resume.")
        print(message, file=sys.stderr, flush=True)
        manifest.finish("error", RESUME_FAILED_EXIT, message)
        return False
    manifest.data["restored_files"] = restored
    return True


def _install_requirements(config: dict[str, Any], manifest: RunManifest) -> bool:
    """Install the project's requirements before the entry runs; False (and run.json says why) if that failed."""
    try:
        manifest.data["requirements_install_s"] = round(deps.install(config), 1)
    except deps.DepsError as exc:
        message = f"kagglekit: ERROR: {exc}\nThe entry was not run: its imports would fail."
        print(message, file=sys.stderr, flush=True)
        manifest.finish("error", deps.DEPS_FAILED_EXIT, message)
        return False
    return True


def _stop_on_sigterm(manifest: RunManifest) -> list[int]:
    """On SIGTERM (the session limit) record an interrupted run and exit; returns the signals received."""
    interrupted: list[int] = []
    boot_pid = os.getpid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != boot_pid:  # a forked child that kept the handler: die as a plain process would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        interrupted.append(signum)
        where = "".join(traceback.format_stack(frame)) if frame is not None else ""
        manifest.finish("interrupted", 128 + signum,
                        f"{where}Stopped by {signal.Signals(signum).name} (e.g. the session limit).")
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError, OSError):  # not the main thread: no handler, the last tick stays
        signal.signal(signal.SIGTERM, on_signal)

    # SIGTERM stays blocked in the forking thread from just before fork() until the child has its default
    # action back: a SIGTERM that reached the child before that (Pool.terminate() right after starting a
    # worker, likely on a loaded machine) would trip the inherited handler, then be dropped once Python
    # saw SIG_DFL, and the worker would live on, holding the pool's join (and the run) for ever.
    blocked_by_us = threading.local()

    def before_fork() -> None:
        blocked_by_us.value = False
        if signal.getsignal(signal.SIGTERM) is on_signal:
            with contextlib.suppress(ValueError, OSError):
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                blocked_by_us.value = signal.SIGTERM not in old

    def unblock() -> None:
        if getattr(blocked_by_us, "value", False):
            blocked_by_us.value = False
            with contextlib.suppress(ValueError, OSError):
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def after_fork_in_child() -> None:
        # forked workers (multiprocessing "fork", DataLoader) get the default SIGTERM back, so that
        # Pool.terminate() kills them instead of running the bootstrap's ending; a handler set by
        # the project itself is left alone. A SIGTERM pending meanwhile is delivered on unblocking.
        if signal.getsignal(signal.SIGTERM) is on_signal:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        unblock()

    os.register_at_fork(before=before_fork, after_in_parent=unblock, after_in_child=after_fork_in_child)
    return interrupted
