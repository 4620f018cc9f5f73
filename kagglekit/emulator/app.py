"""The emulator's application object: backend, runner, fault book and request log, with no HTTP.

The server (``server.py``) holds one ``App`` and hands it to each request; control routes
(``control.py``) act on it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import Any

from kagglekit.emulator import datasets
from kagglekit.emulator.faults import FaultBook
from kagglekit.emulator.models import Backend
from kagglekit.emulator.runner import Runner, kill_orphan, namespace_support


class App:
    """Everything a request handler needs: backend, runner, faults, the request log."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None,
                 control_token: str | None = None) -> None:
        self.backend = Backend(data_dir, config)
        self.control_token = control_token  # required by control routes when set (non-loopback binds)
        interrupted = self.backend.fail_interrupted()
        self.interrupted_at_start = [v.id for v in interrupted]
        for v in interrupted:  # kernels orphaned by an emulator that was killed
            if v.pid:
                kill_orphan(v.pid, self.backend.version_dir(v.id))
        self.runner = Runner(self.backend)
        self.datasets = datasets.DatasetStore(self.backend)
        self.backend.datasets = self.datasets
        self.faults = FaultBook()
        self._requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=20000)
        self._req_lock = threading.Lock()
        self.stopping = threading.Event()
        self.url = ""
        self.pid = os.getpid()
        self.started = time.time()

    def record(self, entry: dict[str, Any]) -> None:
        with self._req_lock:
            self._requests.append(entry)

    def request_log(self) -> list[dict[str, Any]]:
        with self._req_lock:
            return list(self._requests)

    def clear_request_log(self) -> None:
        with self._req_lock:
            self._requests.clear()

    def reset(self) -> None:
        self.runner.kill_all()
        self.backend.reset()
        self.datasets.reset()
        self.faults.clear()
        self.clear_request_log()

    def state(self) -> dict[str, Any]:
        out = self.backend.summary()
        support = namespace_support() if self.backend.config["sandbox"] != "relative" else {
            "mount": False, "net": False, "reason": "sandbox=relative"}
        out.update({
            "url": self.url,
            "pid": self.pid,
            "data_dir": str(self.backend.data_dir),
            "sandbox": {
                "configured": self.backend.config["sandbox"],
                "mode": "namespace" if support["mount"] else "relative",
                "namespace_available": bool(support["mount"]),
                "internet_off_enforced": bool(support["mount"] and support["net"]),
                "reason": support.get("reason", ""),
            },
            "faults": self.faults.snapshot(),
            "datasets": self.datasets.summary(),
            "interrupted_at_start": self.interrupted_at_start,
            "requests_recorded": len(self._requests),
            "control_token_required": bool(self.control_token),
        })
        return out
