"""Fault injection: make the next N matching calls fail the way real networks and servers do.

A fault names a ``target``: an RPC method name (``GetKernelSessionStatus``), ``files``
(every output-file GET), ``file:<name>`` (GETs of one output file, by its name under
/kaggle/working), ``logs`` (the logs stream GET), ``upload`` / ``upload:<name>`` (blob upload PUTs;
``cut_after_bytes`` keeps K bytes then drops the connection), ``datasetfiles`` (dataset download
GETs) or ``*`` (any API call). Effects, combinable:

* ``latency_ms``: sleep before answering;
* ``status`` (+ ``retry_after``, + ``html``): answer with that HTTP status, a JSON
  ``{"code", "message"}`` body or an HTML error page (``html`` alone means 502);
* ``drop``: close the connection without a response;
* ``cut_after_bytes``: announce the full body, send K bytes, close;
* ``first_byte_delay_ms`` / ``bandwidth_bytes_per_s``: model remote storage (delay before
  the response, then a throttled body), usually with ``times: -1`` (persistent).

``times`` counts matching calls (default 1; -1 = until cleared).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from kagglekit.emulator.models import WireError

_FIELDS = {"target", "times", "status", "retry_after", "html", "drop", "cut_after_bytes", "latency_ms",
           "first_byte_delay_ms", "bandwidth_bytes_per_s", "message"}


@dataclasses.dataclass
class Fault:
    target: str
    times: int = 1
    status: int | None = None
    retry_after: float | None = None
    html: bool = False
    drop: bool = False
    cut_after_bytes: int | None = None
    latency_ms: float = 0.0
    first_byte_delay_ms: float = 0.0
    bandwidth_bytes_per_s: float | None = None
    message: str | None = None
    hits: int = 0

    @property
    def error_status(self) -> int | None:
        if self.status is not None:
            return self.status
        return 502 if self.html else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_fault(payload: dict[str, Any]) -> Fault:
    unknown = set(payload) - _FIELDS
    if unknown:
        raise WireError(400, f"Unknown fault fields: {sorted(unknown)}; known: {sorted(_FIELDS)}")
    target = payload.get("target")
    if not isinstance(target, str) or not target:
        raise WireError(400, "A fault needs a target: an RPC name, 'files', 'file:<name>', 'logs' or '*'")
    try:
        fault = Fault(
            target=target,
            times=int(payload.get("times", 1)),
            status=int(payload["status"]) if payload.get("status") is not None else None,
            retry_after=float(payload["retry_after"]) if payload.get("retry_after") is not None else None,
            html=bool(payload.get("html", False)),
            drop=bool(payload.get("drop", False)),
            cut_after_bytes=int(payload["cut_after_bytes"]) if payload.get("cut_after_bytes") is not None else None,
            latency_ms=float(payload.get("latency_ms", 0) or 0),
            first_byte_delay_ms=float(payload.get("first_byte_delay_ms", 0) or 0),
            bandwidth_bytes_per_s=(float(payload["bandwidth_bytes_per_s"])
                                   if payload.get("bandwidth_bytes_per_s") else None),
            message=str(payload["message"]) if payload.get("message") is not None else None,
        )
    except (TypeError, ValueError) as exc:
        raise WireError(400, f"Bad fault: {exc}") from exc
    if fault.times == 0 or fault.times < -1:
        raise WireError(400, "times must be a positive count, or -1 for a persistent fault")
    if fault.error_status is not None and not 400 <= fault.error_status <= 599:
        raise WireError(400, "status must be an HTTP error status (400-599)")
    return fault


class FaultBook:
    """The active faults; ``take`` consumes one use of the first fault matching a call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take(self, keys: list[str]) -> Fault | None:
        """The fault for a call known by ``keys`` (e.g. ``["files", "file:a.txt"]``), consuming one use."""
        with self._lock:
            for fault in self._faults:
                if fault.target in keys or (fault.target == "*" and keys and keys[0] not in ("files", "logs", "upload", "datasetfiles")):
                    fault.hits += 1
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return dataclasses.replace(fault)
        return None
