"""The background emulator behind ``--local``: start, find, stop.

``start()`` spawns ``python -m kagglekit.emulator serve`` detached, with its data in
``paths.emulator_data_dir()``, waits until it answers, and records its URL and pid in
``paths.emulator_state_path()``. A file lock keeps two processes from starting two
emulators. ``ensure_running()`` is what ``--local`` calls on every command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kagglekit import paths
from kagglekit.errors import EmulatorError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class EmulatorInfo:
    url: str
    pid: int
    data_dir: Path


def _lock_path() -> Path:
    return paths.data_dir() / "emulator.lock"


def _log_path() -> Path:
    return paths.data_dir() / "emulator.log"


def _read_state() -> dict[str, Any] | None:
    try:
        state = json.loads(paths.emulator_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/__emulator/health", timeout=timeout) as resp:
            return bool(json.loads(resp.read()).get("ok"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def status() -> EmulatorInfo | None:
    """The running background emulator, or None (a stale state file is ignored)."""
    state = _read_state()
    if not state:
        return None
    try:
        info = EmulatorInfo(str(state["url"]), int(state["pid"]), Path(state["data_dir"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not paths.pid_alive(info.pid) or not _answers(info.url):
        return None
    return info


def start(port: int = 0) -> EmulatorInfo:
    """Start the background emulator (or return the one already running) and wait until it answers."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(_lock_path()), timeout=START_TIMEOUT_S + 5):
            running = status()
            if running is not None:
                return running
            return _spawn(port)
    except Timeout:
        raise EmulatorError(
            "Another kagglekit process is starting the emulator and did not finish in time.",
            f"Wait a moment and retry; if it persists, delete {_lock_path()}.",
        ) from None


# The background emulator is prod-shaped (docs/kaggle-facts.md): no kinder switches.


def _spawn(port: int) -> EmulatorInfo:
    data_dir = paths.emulator_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = paths.data_dir() / f"emulator.ready.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    cmd = [sys.executable, "-m", "kagglekit.emulator", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--ready-file", str(ready), "--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    log = _log_path().open("ab")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        raise EmulatorError(f"Could not start the emulator: {exc}", "Check that Python can run kagglekit.") from exc
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(
                f"The emulator exited at start-up (code {proc.returncode}).",
                f"See {_log_path()} for its output; is port {port} free?",
            )
        if ready.exists():
            try:
                info_json = json.loads(ready.read_text(encoding="utf-8"))
            except ValueError:
                info_json = None
            if info_json and _answers(info_json["url"]):
                ready.unlink()
                info = EmulatorInfo(str(info_json["url"]), proc.pid, data_dir)
                paths.write_text_atomic(paths.emulator_state_path(), json.dumps(
                    {"url": info.url, "pid": info.pid, "data_dir": str(info.data_dir)}))
                return info
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        proc.kill()
    raise EmulatorError(f"The emulator did not answer within {START_TIMEOUT_S:.0f} s.",
                        f"See {_log_path()} for its output.")


def stop() -> EmulatorInfo | None:
    """Stop the background emulator (SIGTERM, then SIGKILL); returns what was stopped, or None."""
    from filelock import FileLock

    with FileLock(str(_lock_path()), timeout=START_TIMEOUT_S + 5):
        state = _read_state()
        info = None
        if state:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                info = EmulatorInfo(str(state["url"]), int(state["pid"]), Path(state["data_dir"]))
        if info is not None and paths.pid_alive(info.pid) and _answers(info.url):
            os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while paths.pid_alive(info.pid) and time.monotonic() < deadline:
                _reap(info.pid)
                time.sleep(0.05)
            if paths.pid_alive(info.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGKILL)
                _reap(info.pid)
        else:
            info = None
        with contextlib.suppress(FileNotFoundError):
            paths.emulator_state_path().unlink()
        return info


def _reap(pid: int) -> None:
    """Collect our own child's exit status (when this process started it) so it stops being a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def ensure_running() -> EmulatorInfo:
    """The background emulator, started if it is not running (what ``--local`` uses)."""
    return status() or start()


def control(route: str, payload: dict[str, Any] | None = None, url: str | None = None) -> Any:
    """POST a control route (``datasets``, ``competitions``, ...) to the running (or given) emulator."""
    base = url or ensure_running().url
    parts = urllib.parse.urlsplit(base)
    if parts.scheme and parts.netloc:  # control routes live at the server root, whatever API path was given
        base = f"{parts.scheme}://{parts.netloc}"
    req = urllib.request.Request(f"{base.rstrip('/')}/__emulator/{route}", data=json.dumps(payload or {}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", "")
        except ValueError:
            message = ""
        raise EmulatorError(f"The emulator refused {route}: {message or exc}",
                            "Check the arguments (see docs/emulator.md).") from None
    except (OSError, urllib.error.URLError) as exc:
        raise EmulatorError(f"Could not reach the emulator at {base}: {exc}",
                            "Start it with `kagglekit emulator start` or check --endpoint.") from None


def read_control(route: str, url: str | None = None) -> Any:
    """GET a control route (``config``, ``state``) of the running (or given) emulator."""
    return _read_control(_root(url or ensure_running().url), route,
                         "Start it with `kagglekit emulator start` or check --endpoint.")


def _root(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url.rstrip("/")


_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def parse_setting(text: str) -> dict[str, Any]:
    """``KEY=VALUE`` as a config update: JSON values (``3``, ``true``, ``{"gpu": 60}``), yes/no/on/off,
    else the text itself; ``KEY.KIND=N`` sets one accelerator's entry (``session_limit_seconds.gpu=60``)."""
    from kagglekit.errors import ConfigError

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"'{text}' is not KEY=VALUE.",
                          "e.g. kagglekit emulator config legacy_layout=true run_start_delay_seconds=0")
    raw = raw.strip()
    value: Any
    if raw.lower() in _WORDS:
        value = _WORDS[raw.lower()]
    else:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    if "." in key:
        key, sub = key.split(".", 1)
        return {key: {sub: value}}
    return {key: value}


def configure(settings: tuple[str, ...] | list[str], endpoint: str | None = None) -> dict[str, Any]:
    """Change emulator rules (``emulator config KEY=VALUE ...``); returns the whole configuration after it.

    ``kernel_python`` is made absolute (the emulator runs kernels with that interpreter).
    """
    update: dict[str, Any] = {}
    for text in settings:
        for key, value in parse_setting(text).items():
            if isinstance(value, dict) and isinstance(update.get(key), dict):
                update[key].update(value)
            else:
                update[key] = value
    if isinstance(update.get("kernel_python"), str) and update["kernel_python"]:
        update["kernel_python"] = str(Path(update["kernel_python"]).expanduser().absolute())
    if not update:
        config = read_control("config", endpoint)
        return config if isinstance(config, dict) else {}
    result = control("config", update, url=endpoint)
    return result if isinstance(result, dict) else {}


def client_env(url: str | None = None) -> dict[str, str]:
    """The environment that points the official ``kaggle`` CLI at the (background) emulator as the demo user."""
    from kagglekit.emulator.server import demo_env

    base = url or ensure_running().url
    shim = Path(__file__).resolve().parent / "emulator" / "shim"
    return {**demo_env(base), "PYTHONPATH": str(shim)}


def describe() -> dict[str, Any] | None:
    """The running background emulator's URL, pid, data dir and ``GET state`` summary, or None."""
    info = status()
    if info is None:
        return None
    state = _read_control(info.url, "state", "Restart it: kagglekit emulator stop && kagglekit emulator start")
    return {**state, "url": info.url, "pid": info.pid, "data_dir": str(info.data_dir)}


def _read_control(root: str, route: str, hint: str) -> Any:
    """``GET {root}/__emulator/{route}`` as JSON; an unreachable or garbled answer is an EmulatorError."""
    try:
        with urllib.request.urlopen(f"{root}/__emulator/{route}", timeout=10) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        raise EmulatorError(f"The emulator at {root} did not report its {route}: {exc}", hint) from None


def add_source(route: str, ref: str, path: Path, endpoint: str | None = None) -> Any:
    """Register local data (``datasets`` ref=owner/slug, ``competitions`` slug) with the emulator."""
    key = "slug" if route == "competitions" else "ref"
    return control(route, {key: ref, "path": str(Path(path).resolve())}, url=endpoint)


def serve_foreground(host: str, port: int, data_dir: Path | None) -> int:
    """``kagglekit emulator serve``: run in this process until Ctrl-C (refused while the background one uses
    the same data dir, since two servers must not share one state database)."""
    target = Path(data_dir) if data_dir else paths.emulator_data_dir()
    running = status()
    if running is not None and running.data_dir.resolve() == target.resolve():
        raise EmulatorError(f"The background emulator (pid {running.pid}, {running.url}) already uses {target}.",
                            "Use it, stop it with `kagglekit emulator stop`, or pass another --data-dir.")
    from kagglekit.emulator.__main__ import main as serve_main

    return serve_main(["serve", "--host", host, "--port", str(port), "--data-dir", str(target)])
