"""Every fault kind, injected through the control route and observed by a real HTTP client."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from kagglekit import constants as C
from tests.fixtures_emulator import SHORTEST_WINDOWS, EmulatorError, EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    """These tests are about faults, not a kernel's first moments or its save phase: those
    windows stay on but shorter (test_emulator_prod tests the defaults)."""
    return dict(SHORTEST_WINDOWS)

AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)
Cli = Callable[..., subprocess.CompletedProcess[str]]
STATUS_BODY = {"userName": "demo", "kernelSlug": "fault-kernel"}


@pytest.fixture
def kernel(emulator: EmulatorHandle) -> list[dict[str, str]]:
    """A finished kernel with two output files (200 KB and a small one)."""
    emulator.push("import os\nos.makedirs('sub', exist_ok=True)\nopen('big.bin','wb').write(b'z' * 200_000)\n"
                  "open('sub/small.txt','w').write('small')", slug="fault-kernel")
    assert emulator.wait_for_status("demo", "fault-kernel") == "COMPLETE"
    return list(emulator.rpc("ListKernelSessionOutput", STATUS_BODY)["files"])


def status_call(emulator: EmulatorHandle) -> requests.Response:
    return requests.post(f"{emulator.url}/api/v1/kernels.KernelsApiService/GetKernelSessionStatus",
                         json=STATUS_BODY, auth=AUTH, timeout=10)


def test_status_with_retry_after_for_the_next_n_calls(emulator: EmulatorHandle, kernel: object) -> None:
    emulator.control("faults", {"target": "GetKernelSessionStatus", "times": 2, "status": 429, "retry_after": 2})
    for _ in range(2):
        r = status_call(emulator)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r.json()["error"]["code"] == 429
    r = status_call(emulator)
    assert r.status_code == 200 and r.json() == {"status": "COMPLETE"}
    assert emulator.get("faults")["faults"] == []


def test_html_error_page(emulator: EmulatorHandle, kernel: object) -> None:
    emulator.control("faults", {"target": "GetKernelSessionStatus", "status": 503, "html": True})
    r = status_call(emulator)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/html") and "<html" in r.text


def test_dropped_connection(emulator: EmulatorHandle, kernel: object) -> None:
    emulator.control("faults", {"target": "GetKernelSessionStatus", "drop": True})
    with pytest.raises(requests.ConnectionError):
        status_call(emulator)
    assert status_call(emulator).status_code == 200


def test_download_cut_after_k_bytes(emulator: EmulatorHandle, kernel: list[dict[str, str]]) -> None:
    big = next(f for f in kernel if f["fileName"] == "big.bin")
    emulator.control("faults", {"target": "file:big.bin", "cut_after_bytes": 1000})
    r = requests.get(big["url"], stream=True, timeout=10)
    assert r.headers["Content-Length"] == "200000"
    got = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in r.iter_content(100):
            got += chunk
    assert got == b"z" * 1000
    assert requests.get(big["url"], timeout=10).content == b"z" * 200_000  # the fault was used up


def test_file_fault_targets_one_file_only(emulator: EmulatorHandle, kernel: list[dict[str, str]]) -> None:
    emulator.control("faults", {"target": "file:sub/small.txt", "status": 500, "times": -1})
    small = next(f for f in kernel if f["fileName"] == "sub/small.txt")
    big = next(f for f in kernel if f["fileName"] == "big.bin")
    assert requests.get(small["url"], timeout=10).status_code == 500
    assert requests.get(small["url"], timeout=10).status_code == 500  # persistent
    assert requests.get(big["url"], timeout=10).status_code == 200
    emulator.control("faults", {"clear": True})
    assert requests.get(small["url"], timeout=10).text == "small"


def test_latency(emulator: EmulatorHandle, kernel: object) -> None:
    emulator.control("faults", {"target": "GetKernelSessionStatus", "latency_ms": 300})
    t0 = time.monotonic()
    assert status_call(emulator).status_code == 200
    assert time.monotonic() - t0 >= 0.3


def test_remote_storage_model(emulator: EmulatorHandle, kernel: list[dict[str, str]]) -> None:
    """first_byte_delay_ms + bandwidth_bytes_per_s: a persistent slow store, e.g. for download benchmarks."""
    big = next(f for f in kernel if f["fileName"] == "big.bin")
    emulator.control("faults", {"target": "files", "times": -1, "first_byte_delay_ms": 100,
                                "bandwidth_bytes_per_s": 1_000_000})
    for _ in range(2):
        t0 = time.monotonic()
        assert requests.get(big["url"], timeout=10).content == b"z" * 200_000
        assert time.monotonic() - t0 >= 0.1 + 0.18


def test_logs_stream_fault(emulator: EmulatorHandle, kernel: object) -> None:
    emulator.control("faults", {"target": "logs", "status": 502})
    url = f"{emulator.url}/api/v1/kernels/logs/stream/demo/fault-kernel"
    assert requests.get(url, auth=AUTH, timeout=10).status_code == 502
    assert requests.get(url, auth=AUTH, timeout=10).status_code == 200


def test_bad_fault_is_refused(emulator: EmulatorHandle) -> None:
    with pytest.raises(EmulatorError) as err:
        emulator.control("faults", {"target": "files", "bogus": 1})
    assert err.value.status == 400
