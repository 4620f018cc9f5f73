"""The emulator's datasets, driven by the unmodified official CLI (kaggle 2.2.5) over HTTP.

Covers Kaggle's blob-upload flow (StartBlobUpload, resumable PUT, token references), the processing
window (403 on reads and on a new version while the first one processes), the file cap, archive
extraction, downloads, and kernels mounting an uploaded dataset in both input layouts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_emulator import EmulatorError, EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults

Cli = Callable[..., subprocess.CompletedProcess[str]]
PROCESSING = 30.0  # long enough that a test never sees it end by itself; tests advance the clock


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    return {"dataset_processing_seconds": PROCESSING}


def _folder(root: Path, ref: str = "demo/cats-data-set", files: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"a.bin": os.urandom(200_000), "b.txt": b"hello\n"}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "dataset-metadata.json").write_text(json.dumps(
        {"title": "Cats data set", "id": ref, "licenses": [{"name": "CC0-1.0"}]}))
    return root


def _finish_processing(emulator: EmulatorHandle) -> None:
    emulator.control("clock", {"advance_seconds": PROCESSING + 1})


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_official_cli_create_status_files_version_download(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                           tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ds", files={"a.bin": os.urandom(300_000), "b.txt": b"hello\n",
                                             "sub/c.txt": b"nested\n"})
    out = _ok(kaggle_cli("datasets", "create", "-p", str(folder), "--dir-mode", "zip"))
    assert "Your private Dataset is being created" in out
    # The processing window: status walks the stages, reads and a new version are refused with 403.
    assert _ok(kaggle_cli("datasets", "status", "demo/cats-data-set")).strip() == "blobs_received"
    files = kaggle_cli("datasets", "files", "demo/cats-data-set")
    # Kaggle's nested error envelope: the official CLI shows only the status line, not the message
    assert files.returncode == 1 and "403 Client Error: Forbidden" in files.stdout + files.stderr
    early = kaggle_cli("datasets", "version", "-p", str(folder), "-m", "too early")
    assert early.returncode == 1 and "403 Client Error: Forbidden" in early.stdout + early.stderr
    _finish_processing(emulator)
    assert _ok(kaggle_cli("datasets", "status", "demo/cats-data-set")).strip() == "ready"
    listing = _ok(kaggle_cli("datasets", "files", "demo/cats-data-set", "--csv"))
    rows = {line.split(",")[0]: line.split(",")[1] for line in listing.strip().splitlines()[1:]}
    assert rows == {"a.bin": "300000", "b.txt": "6", "sub/c.txt": "7"}  # sub.zip was extracted

    (folder / "b.txt").write_bytes(b"changed\n")
    _ok(kaggle_cli("datasets", "version", "-p", str(folder), "-m", "second"))
    assert _ok(kaggle_cli("datasets", "status", "demo/cats-data-set")).strip() != "ready"
    # While v2 processes, reads see v1; asking for v2 by number answers 404.
    assert emulator.rpc("GetDataset", {"ownerSlug": "demo", "datasetSlug": "cats-data-set"},
                        service="datasets.DatasetApiService")["currentVersionNumber"] == 1
    with pytest.raises(EmulatorError) as exc:
        emulator.rpc("ListDatasetFiles", {"ownerSlug": "demo", "datasetSlug": "cats-data-set",
                                          "datasetVersionNumber": 2}, service="datasets.DatasetApiService")
    assert exc.value.status == 404
    _finish_processing(emulator)
    _ok(kaggle_cli("datasets", "download", "demo/cats-data-set", "-p", str(tmp_path / "dl"), "--unzip"))
    got = {p.relative_to(tmp_path / "dl").as_posix(): p.read_bytes() for p in (tmp_path / "dl").rglob("*")
           if p.is_file()}
    assert got == {"a.bin": (folder / "a.bin").read_bytes(), "b.txt": b"changed\n"}  # v2 skipped the folder
    _ok(kaggle_cli("datasets", "download", "demo/cats-data-set/1", "-f", "b.txt", "-p", str(tmp_path / "one")))
    assert (tmp_path / "one" / "b.txt").read_bytes() == b"hello\n"


def test_slug_in_use_and_another_users_private_dataset(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                      tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ds")
    _ok(kaggle_cli("datasets", "create", "-p", str(folder)))
    again = _ok(kaggle_cli("datasets", "create", "-p", str(folder)))
    assert 'slug "cats-data-set" is already in use' in again
    emulator.control("users", {"username": "mallory", "key": "m" * 32})
    with pytest.raises(EmulatorError) as exc:
        emulator.rpc("GetDatasetStatus", {"ownerSlug": "demo", "datasetSlug": "cats-data-set"},
                     username="mallory", key="m" * 32, service="datasets.DatasetApiService")
    assert exc.value.status == 404


def test_file_cap_per_version(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    emulator.control("config", {"dataset_max_files": 3})
    folder = _folder(tmp_path / "ds", files={f"f{i}.txt": b"x" for i in range(4)})
    out = _ok(kaggle_cli("datasets", "create", "-p", str(folder)))
    assert "at most 3 files; this one has 4" in out
    with pytest.raises(EmulatorError) as exc:
        emulator.rpc("GetDatasetStatus", {"ownerSlug": "demo", "datasetSlug": "cats-data-set"},
                     service="datasets.DatasetApiService")
    assert exc.value.status == 404  # nothing was created


def test_official_client_survives_a_cut_upload(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """kaggle 2.2.5's urllib3 Retry rewinds the file and sends it all again (kagglekit's client resumes)."""
    data = os.urandom(3_000_000)
    folder = _folder(tmp_path / "ds", files={"big.bin": data})
    emulator.control("faults", {"target": "upload:big.bin", "cut_after_bytes": 1_000_000})
    _ok(kaggle_cli("datasets", "create", "-p", str(folder)))
    puts = [r for r in emulator.requests("upload")]
    assert [r["status"] for r in puts] == [0, 200]  # cut after 1 MB, then the whole file again
    _finish_processing(emulator)
    store = emulator.server.app.datasets
    path = store.mount_path("demo/cats-data-set")
    assert path is not None and hashlib.sha256((path / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(data).digest()


def _put(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_upload_session_protocol_gcs_style(emulator: EmulatorHandle) -> None:
    start = emulator.rpc("StartBlobUpload", {"type": "DATASET", "name": "x.bin", "contentLength": 10},
                         service="blobs.BlobApiService")
    url = start["createUrl"]
    status, headers = _put(url, b"", {"Content-Range": "bytes */10"})
    assert status == 308 and "Range" not in headers  # nothing arrived yet
    status, headers = _put(url, b"01234", {"Content-Range": "bytes 0-4/10"})
    assert status == 308 and headers["Range"] == "bytes=0-4"
    status, headers = _put(url, b"789", {"Content-Range": "bytes 7-9/10"})  # a gap: told what arrived
    assert status == 308 and headers["Range"] == "bytes=0-4"
    status, _ = _put(url, b"3456789", {"Content-Range": "bytes 3-9/10"})  # overlap is skipped
    assert status == 200
    assert _put(url, b"", {"Content-Range": "bytes */10"})[0] == 200
    emulator.rpc("CreateDataset", {"ownerSlug": "demo", "slug": "tiny-data", "title": "Tiny data set",
                                   "licenseName": "CC0-1.0", "isPrivate": True, "files": [{"token": start["token"]}]},
                 service="datasets.DatasetApiService")
    again = emulator.rpc("CreateDataset", {"ownerSlug": "demo", "slug": "tiny-data-2", "title": "Tiny data set",
                                           "files": [{"token": start["token"]}]},
                         service="datasets.DatasetApiService")
    assert again["status"] == "error" and "already used" in again["error"]
    _finish_processing(emulator)
    path = emulator.server.app.datasets.mount_path("demo/tiny-data")
    assert path is not None and (path / "x.bin").read_bytes() == b"0123456789"


def test_expired_upload_session_answers_404(emulator: EmulatorHandle) -> None:
    start = emulator.rpc("StartBlobUpload", {"type": "DATASET", "name": "x.bin", "contentLength": 4},
                         service="blobs.BlobApiService")
    assert _put(start["createUrl"], b"ab", {"Content-Range": "bytes 0-1/4"})[0] == 308
    emulator.control("clock", {"advance_seconds": 7 * 24 * 3600})
    assert _put(start["createUrl"], b"", {"Content-Range": "bytes */4"})[0] == 404
    assert _put(start["createUrl"], b"cd", {"Content-Range": "bytes 2-3/4"})[0] == 404


PROBE = r"""
import json, os
root = os.environ["KAGGLE_KERNEL_ROOT"]
found = {}
for dirpath, _, files in os.walk(os.path.join(root, "input"), followlinks=True):
    for f in files:
        p = os.path.join(dirpath, f)
        found[os.path.relpath(p, os.path.join(root, "input"))] = open(p).read()
json.dump(found, open("found.json", "w"))
"""


def _upload_dataset(emulator: EmulatorHandle, slug: str, files: dict[str, bytes]) -> None:
    tokens = []
    for name, data in files.items():
        start = emulator.rpc("StartBlobUpload", {"type": "DATASET", "name": name, "contentLength": len(data)},
                             service="blobs.BlobApiService")
        assert _put(start["createUrl"], data, {})[0] == 200
        tokens.append({"token": start["token"]})
    emulator.rpc("CreateDataset", {"ownerSlug": "demo", "slug": slug, "title": "Mounted data",
                                   "licenseName": "CC0-1.0", "isPrivate": True, "files": tokens},
                 service="datasets.DatasetApiService")


@pytest.mark.parametrize("legacy", [False, True])
def test_kernel_mounts_an_uploaded_dataset_once_ready(emulator: EmulatorHandle, legacy: bool) -> None:
    emulator.control("config", {"legacy_layout": legacy})
    _upload_dataset(emulator, "mounted-data", {"w.txt": b"wheels here"})
    early = emulator.push(PROBE, "early-probe", datasetDataSources=["demo/mounted-data"])
    assert early["invalidDatasetSources"] == ["demo/mounted-data"]  # still processing: not valid, not mounted
    emulator.wait_for_status("demo", "early-probe")
    assert json.loads((emulator.output_dir("demo", "early-probe") / "found.json").read_text()) == {}
    _finish_processing(emulator)
    ok = emulator.push(PROBE, "ready-probe", datasetDataSources=["demo/mounted-data"])
    assert not ok.get("invalidDatasetSources")
    assert emulator.wait_for_status("demo", "ready-probe") == "COMPLETE"
    found = json.loads((emulator.output_dir("demo", "ready-probe") / "found.json").read_text())
    where = "mounted-data/w.txt" if legacy else "datasets/demo/mounted-data/w.txt"
    assert found == {where: "wheels here"}


def test_official_client_retries_a_rate_limited_start(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                     tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ds")
    emulator.control("faults", {"target": "StartBlobUpload", "status": 429, "retry_after": 0, "times": 1})
    r = kaggle_cli("datasets", "create", "-p", str(folder))
    assert r.returncode == 0 and "Request failed" in r.stderr  # kaggle 2.2.5's with_retry on 429
    assert emulator.get("faults")["faults"] == []
    _finish_processing(emulator)
    path = emulator.server.app.datasets.mount_path("demo/cats-data-set")
    assert path is not None and (path / "b.txt").read_bytes() == b"hello\n"
