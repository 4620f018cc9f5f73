"""What the benches share: the emulator in its own process, the demo user's env for the official CLI, timing.

Each bench runs as ``python bench/NAME.py``, so this folder is on ``sys.path`` and ``from _common import ...``
finds this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kagglekit.constants import DEMO_KEY, DEMO_USERNAME  # the emulator's seeded account

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
KAGGLE = shutil.which("kaggle", path=str(Path(PY).parent)) or "kaggle"
MB = 1000**2


class Emulator:
    """``python -m kagglekit.emulator serve`` in its own process (its threads share no GIL with the clients),
    a fresh data dir under ``data_dir``, ``config`` its rules; the control routes at hand."""

    def __init__(self, data_dir: Path, config: dict[str, Any]) -> None:
        ready = data_dir / "ready.json"
        self.proc = subprocess.Popen(
            [PY, "-m", "kagglekit.emulator", "serve", "--port", "0", "--data-dir", str(data_dir / "emu"),
             "--ready-file", str(ready), "--quiet", "--config", json.dumps(config)],
            cwd=REPO, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the emulator did not start")
            time.sleep(0.05)
        self.url: str = json.loads(ready.read_text())["url"]

    def control(self, method: str, route: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(f"{self.url}/__emulator/{route}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def requests(self, kind: str) -> list[dict[str, Any]]:
        """The request log's entries of one kind (``file``, ``upload``, ``rpc``...)."""
        return [r for r in self.control("GET", "requests")["requests"] if r["kind"] == kind]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def env_for(url: str) -> dict[str, str]:
    """The official CLI (and kagglekit) as the demo user against the emulator at ``url`` (no proxies)."""
    shim = REPO / "kagglekit" / "emulator" / "shim"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"KAGGLE_USERNAME": DEMO_USERNAME, "KAGGLE_KEY": DEMO_KEY, "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
                "KAGGLE_EMULATOR_URL": url, "PYTHONPATH": f"{shim}:{REPO}"})
    return env


def peak_rss(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child, measured with wait4 (its own figure, not its children's)."""
    os.sync()  # start each contender with no dirty pages of the previous one being written back
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({code}):\n{err[-2000:]}")
    return wall, usage.ru_maxrss * 1024
