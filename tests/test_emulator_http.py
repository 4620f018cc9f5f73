"""HTTP details the clients rely on: file GET headers and ranges, signed URLs, both path prefixes, errors."""

from __future__ import annotations

import json

import pytest
import requests

from kagglekit import constants as C
from tests.fixtures_emulator import EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults

AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)
PAYLOAD = bytes(range(256)) * 100  # 25600 bytes


def finished_file(emulator: EmulatorHandle, slug: str = "file-kernel") -> dict[str, str]:
    emulator.push("open('data.bin','wb').write(bytes(range(256)) * 100)\nprint('ok')", slug=slug)
    assert emulator.wait_for_status("demo", slug) == "COMPLETE"
    out = emulator.rpc("ListKernelSessionOutput", {"userName": "demo", "kernelSlug": slug, "pageSize": 20,
                                                   "pageToken": ""})
    return dict(out["files"][0])


def test_file_get_headers_range_and_if_range(emulator: EmulatorHandle) -> None:
    f = finished_file(emulator)
    r = requests.get(f["url"], timeout=10)
    assert r.status_code == 200 and r.content == PAYLOAD
    assert r.headers["Content-Length"] == str(len(PAYLOAD)) and r.headers["Accept-Ranges"] == "bytes"
    etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert etag.startswith('"') and last_modified.endswith("GMT")
    r = requests.get(f["url"], headers={"Range": "bytes=100-"}, timeout=10)
    assert r.status_code == 206 and r.content == PAYLOAD[100:]
    assert r.headers["Content-Range"] == f"bytes 100-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
    r = requests.get(f["url"], headers={"Range": "bytes=-10", "If-Range": etag}, timeout=10)
    assert r.status_code == 206 and r.content == PAYLOAD[-10:]
    r = requests.get(f["url"], headers={"Range": "bytes=0-9", "If-Range": '"stale"'}, timeout=10)
    assert r.status_code == 200 and r.content == PAYLOAD  # changed since: the whole file
    r = requests.get(f["url"], headers={"Range": f"bytes={len(PAYLOAD)}-"}, timeout=10)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(PAYLOAD)}"
    r = requests.head(f["url"], timeout=10)
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(PAYLOAD)) and r.content == b""


def test_signed_urls_expire_and_cannot_be_forged(emulator: EmulatorHandle) -> None:
    f = finished_file(emulator)
    assert requests.get(f["url"].replace("sig=", "sig=0"), timeout=10).status_code == 403
    assert requests.get(f["url"].replace("/data.bin", "/other.bin"), timeout=10).status_code == 403
    emulator.control("clock", {"advance_seconds": 3601})  # default expiry: one hour
    r = requests.get(f["url"], timeout=10)
    assert r.status_code == 403 and b"ExpiredToken" in r.content
    emulator.control("clock", {"offset_seconds": 0})
    emulator.control("config", {"url_expiry_seconds": 1})
    short = emulator.rpc("ListKernelSessionOutput", {"userName": "demo", "kernelSlug": "file-kernel"})["files"][0]
    assert requests.get(short["url"], timeout=10).status_code == 200
    emulator.control("clock", {"advance_seconds": 2})
    assert requests.get(short["url"], timeout=10).status_code == 403


def test_both_prefixes_and_error_bodies(emulator: EmulatorHandle) -> None:
    body = {"userName": "demo", "kernelSlug": "nothing-here"}
    for prefix in ("/v1", "/api/v1"):
        r = requests.post(f"{emulator.url}{prefix}/kernels.KernelsApiService/GetKernelSessionStatus", json=body,
                          auth=AUTH, timeout=10)
        assert r.status_code == 403 and r.json() == {"error": {"code": 403, "status": "PERMISSION_DENIED",
                                                               "message": "Permission 'kernels.get' was denied"}}
    r = requests.post(f"{emulator.url}/v1/kernels.KernelsApiService/ListKernels", json={}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = requests.post(f"{emulator.url}/v1/kernels.KernelsApiService/NoSuchMethod", json={}, auth=AUTH, timeout=10)
    assert r.status_code == 404 and "does not implement" in r.json()["error"]["message"]
    r = requests.post(f"{emulator.url}/v1/kernels.KernelsApiService/ListKernels", data=b"{oops", auth=AUTH,
                      timeout=10)
    assert r.status_code == 400
    emulator.push("print(1)", slug="labelled-kernel")
    bare = dict(body, kernelSlug="labelled-kernel", versionLabel="1")
    r = requests.post(f"{emulator.url}/v1/kernels.KernelsApiService/GetKernelSessionStatus", json=bare, auth=AUTH,
                      timeout=10)
    assert r.status_code == 404  # Kaggle wants "v1", not "1"


def test_quota_always_sends_every_duration(emulator: EmulatorHandle) -> None:
    q = emulator.rpc("GetAcceleratorQuotaStatistics", {})
    for kind, total in (("gpuQuota", "108000s"), ("tpuQuota", "72000s")):
        assert q[kind]["timeUsed"] == "0s" and q[kind]["timeReserved"] == "0s"
        assert q[kind]["totalTimeAllowed"] == q[kind]["minimumTimeAllowed"] == total


def test_logs_stream_after_completion_is_the_json_log(emulator: EmulatorHandle) -> None:
    emulator.push("print('line one')\nprint('line two')", slug="done-logs")
    emulator.wait_for_status("demo", "done-logs")
    r = requests.get(f"{emulator.url}/api/v1/kernels/logs/stream/demo/done-logs", auth=AUTH, timeout=10)
    assert r.headers["Content-Type"] == "application/json"
    assert [rec["data"] for rec in r.json()] == ["line one\n", "line two\n"]
    lines = r.text.split("\n")
    assert lines[0].startswith('[{"stream_name":"stdout","time":') and lines[1].startswith(",{") and lines[2] == "]"


def test_list_kernels_paging_and_cancel_by_session_id(emulator: EmulatorHandle) -> None:
    for i in range(3):
        emulator.push(f"print({i})", slug=f"paged-kernel-{i}")
    first = emulator.rpc("ListKernels", {"group": "PROFILE", "pageSize": 2, "page": 1, "pageToken": ""})
    second = emulator.rpc("ListKernels", {"group": "PROFILE", "pageSize": 2, "pageToken": first["nextPageToken"]})
    refs = [k["ref"] for k in first["kernels"] + second["kernels"]]
    assert sorted(refs) == [f"demo/paged-kernel-{i}" for i in range(3)] and "nextPageToken" not in second
    # CancelKernelSession takes the session id a kernel sees in KAGGLE_CONTAINER_NAME
    emulator.push("import os, time\nprint(os.environ['KAGGLE_CONTAINER_NAME'], flush=True)\ntime.sleep(30)",
                  slug="cancel-me")
    emulator.wait_for_status("demo", "cancel-me", statuses={"RUNNING"})
    session_id = session_id_from_live_log(emulator, "cancel-me")
    assert emulator.rpc("CancelKernelSession", {"kernelSessionId": session_id}) == {}
    assert emulator.wait_for_status("demo", "cancel-me", timeout=60) == "CANCEL_ACKNOWLEDGED"


def session_id_from_live_log(emulator: EmulatorHandle, slug: str) -> int:
    """What a tool does on Kaggle (kaggle-prod-behaviour §9): the kernel prints KAGGLE_CONTAINER_NAME
    (``kaggle_<token>-<sessionId>-webtier``), read back from the live log stream."""
    with requests.get(f"{emulator.url}/api/v1/kernels/logs/stream/demo/{slug}", auth=AUTH, stream=True,
                      timeout=30) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: {") and "-webtier" in line:
                name = json.loads(line[len("data: "):])["data"].strip()
                assert name.startswith("kaggle_") and name.endswith("-webtier")
                return int(name.split("-")[-2])
    raise AssertionError("the kernel never printed its container name")


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_request_log_records_calls(emulator: EmulatorHandle, prefix: str) -> None:
    requests.post(f"{emulator.url}{prefix}/kernels.KernelsApiService/ListKernels", json={}, auth=AUTH, timeout=10)
    entry = emulator.requests("rpc")[-1]
    assert entry["method"] == "POST" and entry["path"] == f"{prefix}/kernels.KernelsApiService/ListKernels"
    assert entry["status"] == 200 and entry["ts"] > 0
