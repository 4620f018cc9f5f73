"""Emulator fixtures: a real Kaggle-compatible server per test, and the real official CLI against it.

``emulator`` starts an in-process ``EmulatorServer`` on 127.0.0.1 with a fresh data dir,
the demo account seeded and small limits (``EMULATOR_TEST_CONFIG``) so runs take seconds;
kernels run as real subprocesses, killed at teardown. Override ``emulator_config`` in a
test module (or per test with ``@pytest.mark.emulator_config({...})``) to change rules.
The emulator is prod-shaped (docs/kaggle-facts.md): a run starts a while after its push,
outputs are listed only after the save phase, errors come nested, a kernel cannot mount its own
output. No kinder switch is on; a test that needs one names it with ``emulator_config``.
The three windows every run goes through (post-push 404, new private kernel 403, save phase) are
shortened, never to zero, by ``QUICK_WINDOWS``: a kernel then waits ~1.5 s instead of ~4.5 s.
tests/test_emulator_prod.py, about those windows, sets them back to the emulator's defaults; a test
about them elsewhere names its own with ``emulator_config``.
``kk`` runs kagglekit's own entry point against it, ``kaggle_cli`` the unmodified ``kaggle`` executable
of this venv.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C

SHIM_DIR = Path(__file__).resolve().parent.parent / "kagglekit" / "emulator" / "shim"  # the shim users get
FINAL = C.FINAL_STATUSES

# Every window still happens, in Kaggle's order, each longer than the tests' first poll interval (0.3 s):
# the 403 first (0.5 s after the push), then "No runs found" until 1 s, then QUEUED, RUNNING, and RUNNING
# again while the output is saved (0.5 s). The defaults (3 s, 1 s, 1.5 s) cost 3 s more a run.
QUICK_WINDOWS: dict[str, Any] = {
    "run_start_delay_seconds": 1.0,
    "new_private_403_seconds": 0.5,
    "save_min_seconds": 0.5,
}

# Shorter still, for modules about neither a kernel's first moments nor its save phase (faults, the sandbox):
# the windows stay on, in the same order, but a kernel waits under a second.
SHORTEST_WINDOWS: dict[str, Any] = {
    "run_start_delay_seconds": 0.5,
    "new_private_403_seconds": 0.2,
    "save_min_seconds": 0.3,
}

EMULATOR_TEST_CONFIG: dict[str, Any] = {
    "queue_seconds": 0.05,
    "session_limit_seconds": {"cpu": 120, "gpu": 120, "tpu": 120},
    **QUICK_WINDOWS,
}


class EmulatorError(AssertionError):
    """A control or RPC call the test expected to succeed failed (HTTP status + body)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class EmulatorHandle:
    """What a test holds: the server's URL and data dir, control routes, polling, env for the CLI."""

    def __init__(self, server: Any, data_dir: Path) -> None:
        self.server = server
        self.url: str = server.url
        self.data_dir = data_dir

    # --- HTTP helpers -------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: Any = None,
                 headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise EmulatorError(exc.code, exc.read().decode("utf-8", "replace")) from None
        return json.loads(body) if body else None

    def control(self, route: str, payload: dict[str, Any] | None = None) -> Any:
        """POST {url}/__emulator/<route> with a JSON body; returns the JSON answer."""
        return self._request("POST", f"/__emulator/{route}", payload or {})

    def get(self, route: str) -> Any:
        """GET {url}/__emulator/<route> (``requests``, ``state``, ``config``, ``faults``)."""
        return self._request("GET", f"/__emulator/{route}")

    def delete(self, route: str) -> Any:
        """DELETE {url}/__emulator/<route> (``requests`` clears the request log, ``faults`` the faults)."""
        return self._request("DELETE", f"/__emulator/{route}")

    def rpc(self, method: str, body: dict[str, Any] | None = None, *, username: str = C.DEMO_USERNAME,
            key: str = C.DEMO_KEY, service: str = "kernels.KernelsApiService") -> Any:
        """Call an RPC over HTTP as a user (Basic auth), e.g. ``rpc("GetKernelSessionStatus", {...})``."""
        auth = base64.b64encode(f"{username}:{key}".encode()).decode()
        return self._request("POST", f"/api/v1/{service}/{method}", body or {}, {"Authorization": f"Basic {auth}"})

    def push(self, source: str, slug: str = "test-kernel", *, kernel_type: str = "script",
             username: str = C.DEMO_USERNAME, key: str = C.DEMO_KEY, **fields: Any) -> Any:
        """SaveKernel a script (or notebook JSON) as ``username/slug``; extra fields are SaveKernel keys."""
        body = {"slug": f"{username}/{slug}", "newTitle": slug.replace("-", " ").title(), "text": source,
                "language": "python", "kernelType": kernel_type, "isPrivate": True, "enableGpu": False,
                "enableTpu": False, "enableInternet": True, "machineShape": "", **fields}
        return self.rpc("SaveKernel", body, username=username, key=key)

    # --- state ---------------------------------------------------------------------------
    def status(self, owner: str, slug: str, version: int | None = None) -> tuple[str, str]:
        """(status, failure message) read straight from the backend (no request is logged)."""
        b = self.server.backend
        _, v = b.resolve(owner, owner, slug, f"v{version}" if version else None)
        return v.status, v.failure

    def wait_for_status(self, owner: str, slug: str, version: int | None = None,
                        statuses: Collection[str] = FINAL, timeout: float = 60.0) -> str:
        """Poll until the version (default: latest) reaches one of ``statuses``; returns that status."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last, _ = self.status(owner, slug, version)
            except Exception:  # not created yet
                last = "<missing>"
            if last in statuses:
                return last
            time.sleep(0.05)
        raise TimeoutError(f"{owner}/{slug} v{version or 'latest'} still {last} after {timeout}s "
                           f"(wanted one of {sorted(statuses)})")

    def wait_until_started(self, owner: str, slug: str, version: int | None = None, timeout: float = 60.0) -> None:
        """Until Kaggle would answer reads of a pushed run: its session exists (no more 404 "No runs found")
        and a new private kernel's 403 moment is over. Read from the backend: no request is logged."""
        b = self.server.backend
        deadline = time.monotonic() + timeout
        while True:
            try:
                b.session_of(owner, owner, slug, f"v{version}" if version else None)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def output_dir(self, owner: str, slug: str, version: int | None = None) -> Path:
        """Where the emulator keeps that version's /kaggle/working (its output)."""
        b = self.server.backend
        _, v = b.resolve(owner, owner, slug, f"v{version}" if version else None)
        return Path(b.output_dir(v.id))

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The request log (optionally only ``rpc``, ``file``, ``logs`` or ``control`` entries)."""
        log = self.get("requests")["requests"]
        return [r for r in log if kind is None or r["kind"] == kind]

    def demo_env(self) -> dict[str, str]:
        """Env vars for the official CLI / KaggleApi as the demo user against this emulator."""
        return {
            "KAGGLE_USERNAME": C.DEMO_USERNAME,
            "KAGGLE_KEY": C.DEMO_KEY,
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "KAGGLE_EMULATOR_URL": self.url,
            "PYTHONPATH": str(SHIM_DIR),
        }


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    """Extra rule settings for the ``emulator`` fixture (override in a module to change them)."""
    return {}


@pytest.fixture
def emulator(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
             emulator_config: dict[str, Any]) -> Iterator[EmulatorHandle]:
    from kagglekit.emulator.server import EmulatorServer

    config = {**EMULATOR_TEST_CONFIG, **emulator_config}
    marker = request.node.get_closest_marker("emulator_config")
    if marker is not None:
        config.update(marker.args[0] if marker.args else marker.kwargs)
    data_dir = tmp_path_factory.mktemp("emulator-data")
    server = EmulatorServer(data_dir, host="127.0.0.1", port=0, config=config).start()
    try:
        yield EmulatorHandle(server, data_dir)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _stop_background_emulator(isolated_home: Path) -> Iterator[None]:
    """A test that used ``--local`` started a background emulator in its own kagglekit home: stop it."""
    yield
    from kagglekit import paths

    if paths.emulator_state_path().exists():
        from kagglekit import local

        local.stop()


@pytest.fixture
def as_demo(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The emulator, with kagglekit in this process pointed at it as the demo user (env vars)."""
    monkeypatch.setenv("KAGGLE_USERNAME", C.DEMO_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", C.DEMO_KEY)
    monkeypatch.setenv("KAGGLEKIT_ENDPOINT", emulator.url)
    return emulator


@pytest.fixture
def kk(as_demo: EmulatorHandle, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``kk("push", "--cpu", cwd=folder)``: ``kagglekit ARGS`` (``cli.main``) in a folder as the demo user
    against this emulator; returns (exit code, stdout, stderr)."""
    from tests.helpers import run_main

    def run(*args: str, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        return run_main(list(args), capsys)

    return run


def kaggle_executable() -> str:
    exe = shutil.which("kaggle", path=str(Path(sys.executable).parent))
    if exe is None:
        raise RuntimeError(f"the official kaggle CLI is not installed next to {sys.executable}")
    return exe


@pytest.fixture
def kaggle_cli(emulator: EmulatorHandle, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kaggle_cli("kernels", "status", "demo/x", cwd=None, env=None)``: the real CLI, output captured."""
    exe = kaggle_executable()

    def run(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        full.update(emulator.demo_env())
        full.update(env or {})
        return subprocess.run([exe, *args], cwd=str(cwd or tmp_path), env=full, capture_output=True, text=True,
                              timeout=timeout)

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator_config(dict): rule settings for the emulator fixture")
    config.addinivalue_line("markers", "emulator_prod: about Kaggle as it really is (a label: every test's emulator is "
                                       "prod-shaped, its start and save windows shortened)")
