"""kagglekit's dataset client against the emulator over HTTP: content-addressed, resumable, parallel uploads.

Faults come from the emulator's faults route: a cut upload, 429 and 503 answers, an expired upload
session, a dataset still processing. After each, the dataset must hold exactly the folder's bytes, and
the emulator's request log must show that no byte that had arrived was sent again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kagglekit.api.client import KaggleApiClient
from kagglekit.api.datasets import DatasetsApi, marker_name, scan
from kagglekit.api.transport import RetryPolicy
from kagglekit.credentials import demo_credentials
from kagglekit.errors import ApiError
from tests.fixtures_emulator import EmulatorHandle

FAST = RetryPolicy(backoff_factor=0.05, backoff_max=0.2, jitter=0.05)


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    return {"dataset_processing_seconds": 0.3}


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[DatasetsApi]:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c:
        yield DatasetsApi(c, workers=4)


def _project(root: Path, big: int = 2_000_000) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(big))
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "sub" / "b.txt").write_text("b\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "pkg" / "__init__.py").write_bytes(b"")  # the same bytes as empty.txt, another file
    (root / "pkg" / "sub" / "__init__.py").write_bytes(b"")
    return root


def _mounted(emulator: EmulatorHandle, ref: str) -> dict[str, bytes]:
    path = emulator.server.app.datasets.mount_path(ref)
    assert path is not None, f"{ref} has no READY version"
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _expected(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _stored(emulator: EmulatorHandle) -> int:
    return sum(int(r.get("stored", 0)) for r in emulator.requests("upload"))


def test_sync_creates_then_skips_unchanged_then_versions(emulator: EmulatorHandle, api: DatasetsApi,
                                                         tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    first = api.sync("demo/proj-code", "Project code", root)
    assert first.changed and first.created
    size = sum(f.size for f in scan(root))
    assert first.stats.files == 7 and first.stats.bytes_sent > size  # + the marker
    got = _mounted(emulator, "demo/proj-code")
    marker = marker_name(first.digest)
    assert got.pop(marker) and got == _expected(root)  # nested folders kept as folders

    emulator.delete("requests")
    second = api.sync("demo/proj-code", "Project code", root)
    assert not second.changed and second.stats.bytes_sent == 0 and second.digest == first.digest
    assert emulator.requests("upload") == []  # not one PUT
    assert not [r for r in emulator.requests("rpc") if r["name"].endswith("StartBlobUpload")]

    (root / "pkg" / "a.py").write_text("A = 2\n")
    third = api.sync("demo/proj-code", "Project code", root)
    assert third.changed and not third.created and third.digest != first.digest
    got = _mounted(emulator, "demo/proj-code")
    assert got.pop(marker_name(third.digest)) and got == _expected(root)
    assert api.status("demo", "proj-code") == "READY"


def test_a_cut_upload_resumes_where_it_stopped(emulator: EmulatorHandle, api: DatasetsApi, tmp_path: Path) -> None:
    root = _project(tmp_path / "proj", big=3_000_000)
    emulator.control("faults", {"target": "upload:big.bin", "cut_after_bytes": 1_000_000})
    result = api.sync("demo/cut-data", "Cut data", root)
    assert result.stats.resumed == 1
    big_puts = [r for r in emulator.requests("upload") if r.get("stored")]
    assert sum(r["stored"] for r in big_puts if r["stored"] >= 1_000_000) == 3_000_000  # 1 MB + the other 2 MB
    got = _mounted(emulator, "demo/cut-data")
    got.pop(marker_name(result.digest))
    assert got == _expected(root)


@pytest.mark.parametrize("fault", [
    {"target": "StartBlobUpload", "status": 429, "retry_after": 0, "times": 2},
    {"target": "upload:big.bin", "status": 503, "times": 2},
    {"target": "upload:big.bin", "status": 404, "times": 2},  # expired: the PUT and the query say 404
    {"target": "CreateDataset", "status": 503, "times": 1},
    {"target": "GetDatasetStatus", "status": 429, "retry_after": 0, "times": 2},
])
def test_faults_are_survived_and_nothing_is_lost(emulator: EmulatorHandle, api: DatasetsApi, tmp_path: Path,
                                                 fault: dict[str, Any]) -> None:
    root = _project(tmp_path / "proj")
    emulator.control("faults", fault)
    result = api.sync("demo/faulty-data", "Faulty data", root)
    got = _mounted(emulator, "demo/faulty-data")
    got.pop(marker_name(result.digest))
    assert got == _expected(root)
    assert emulator.get("faults")["faults"] == []  # every injected fault was met
    if fault["status"] == 404:
        assert result.stats.restarted == 1


def test_a_version_waits_while_the_dataset_still_processes(emulator: EmulatorHandle, api: DatasetsApi,
                                                           tmp_path: Path) -> None:
    emulator.control("config", {"dataset_processing_seconds": 1.5})
    root = _project(tmp_path / "proj", big=1000)
    api.sync("demo/slow-data", "Slow data", root, wait=False)
    assert api.status("demo", "slow-data") != "READY"
    (root / "big.bin").write_bytes(b"new")
    result = api.sync("demo/slow-data", "Slow data", root)  # would be a 403 if sent now: it waits
    assert result.changed and not result.created
    assert not [r for r in emulator.requests("rpc") if r["status"] == 403]
    assert _mounted(emulator, "demo/slow-data")["big.bin"] == b"new"


def test_a_rerun_after_a_failed_upload_resumes_where_the_last_run_stopped(emulator: EmulatorHandle,
                                                                         tmp_path: Path) -> None:
    root = _project(tmp_path / "proj", big=3_000_000)
    emulator.control("faults", {"target": "upload:big.bin", "cut_after_bytes": 1_200_000})
    emulator.control("faults", {"target": "upload:big.bin", "status": 503, "times": 50})
    with (KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c,
          pytest.raises(ApiError, match=r"Uploading big\.bin kept failing")):
        DatasetsApi(c, workers=2).sync("demo/rerun-data", "Rerun data", root)
    emulator.delete("faults")
    assert emulator.get("state")["datasets"] == {}  # nothing was created from a partial upload
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c:
        result = DatasetsApi(c, workers=2).sync("demo/rerun-data", "Rerun data", root)  # a new process, in effect
    assert result.stats.resumed == 1
    big = [r["stored"] for r in emulator.requests("upload") if r.get("stored", 0) >= 1_000_000]
    assert sum(big) == 3_000_000  # 1.2 MB in the failed run + the other 1.8 MB now: none twice
    got = _mounted(emulator, "demo/rerun-data")
    got.pop(marker_name(result.digest))
    assert got == _expected(root)
