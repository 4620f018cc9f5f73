"""URL -> route: RPCs, the logs stream, output files and the moto-style control routes (``control.py``).

RPCs are served at both ``/v1/<service>/<Method>`` and ``/api/v1/<service>/<Method>``
(``KAGGLE_API_ENVIRONMENT=LOCALHOST`` adds ``/api``); the server strips the scheme and
host of absolute-form targets (``POST http://localhost/api/v1/...`` through a proxy) first.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from kagglekit.emulator.datasets import RPCS as DATASET_RPCS
from kagglekit.emulator.responses import RPCS as KERNEL_RPCS

# Every RPC the emulator serves: kernels, quota and auth (responses.py), blobs and datasets (datasets.py).
RPCS = {**KERNEL_RPCS, **DATASET_RPCS}

LOGS_RPC = "kernels.KernelsApiService/GetKernelSessionLogsStream"

_RPC = re.compile(r"^(?:/api)?/v1/([A-Za-z0-9_.]+)/([A-Za-z0-9_]+)$")
_LOGS = re.compile(r"^(?:/api)?/v1/kernels/logs/stream/([^/]+)/([^/]+)/?$")
_FILE = re.compile(r"^/__files/(\d+)/(.+)$")
_CONTROL = re.compile(r"^/__emulator/([a-z_-]+)/?$")
_UPLOAD = re.compile(r"^/__upload/([A-Za-z0-9_-]+)$")  # a blob upload session (createUrl)
_DATASET_FILE = re.compile(r"^/__datasets/(\d+)/(.+)$")  # a signed dataset download URL


@dataclasses.dataclass(frozen=True)
class Route:
    kind: str  # rpc | logs | file | upload | datasetfile | control | root
    name: str = ""
    args: tuple[str, ...] = ()


def match(method: str, path: str) -> Route | None:
    """The route for a request path (no query string), or None (404)."""
    if method == "POST":
        m = _RPC.match(path)
        if m:
            return Route("rpc", f"{m.group(1)}/{m.group(2)}")
    if method == "PUT":
        m = _UPLOAD.match(path)
        if m:
            return Route("upload", "upload", (m.group(1),))
    if method in ("GET", "HEAD"):
        m = _DATASET_FILE.match(path)
        if m:
            return Route("datasetfile", "datasetfiles", (m.group(1), urllib.parse.unquote(m.group(2))))
        m = _LOGS.match(path)
        if m:
            return Route("logs", "logs", (urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))))
        m = _FILE.match(path)
        if m:
            return Route("file", "files", (m.group(1), urllib.parse.unquote(m.group(2))))
        if path in ("", "/"):
            return Route("root")
    m = _CONTROL.match(path)
    if m:
        return Route("control", f"{method} {m.group(1)}")
    return None


def rpc_known(name: str) -> bool:
    return name in RPCS or name == LOGS_RPC
