"""The moto-style control routes: reset, seed, config validation, state, plus the SDK-only RPCs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from kagglekit import constants as C
from tests.fixtures_emulator import EmulatorError, EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults

AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)


def test_reset_forgets_everything_and_kills_runs(emulator: EmulatorHandle, tmp_path: Path) -> None:
    emulator.control("config", {"gpu_quota_seconds": 5})
    emulator.control("users", {"username": "bob", "key": "bob-key"})
    emulator.push("import time\ntime.sleep(30)", slug="long-runner")
    emulator.wait_for_status("demo", "long-runner", statuses={"RUNNING"})
    pid = emulator.server.backend.active_versions()[0].pid
    emulator.control("reset")
    state = emulator.get("state")
    assert state["kernels"] == [] and state["users"] == ["demo"] and state["running_sessions"] == []
    assert state["config"]["gpu_quota_seconds"] == 108000
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1]
    assert emulator.push("print(1)", slug="long-runner")["versionNumber"] == 1  # demo account reseeded


def test_seed_registers_users_and_data(emulator: EmulatorHandle, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    state = emulator.control("seed", {"users": [{"username": "carol", "key": "c-key", "token": "KGAT_carol"}],
                                      "datasets": [{"ref": "carol/data", "path": str(tmp_path / "d")}],
                                      "competitions": [{"slug": "house-prices", "path": str(tmp_path / "d")}]})
    assert "carol" in state["users"] and "carol/data" in state["sources"]["dataset"]
    r = requests.post(f"{emulator.url}/api/v1/security.OAuthService/IntrospectToken", json={"token": "KGAT_carol"},
                      headers={"Authorization": "Bearer KGAT_carol"}, timeout=10)
    assert r.json()["active"] is True and r.json()["username"] == "carol"
    r = requests.post(f"{emulator.url}/api/v1/security.OAuthService/IntrospectToken", json={"token": "nope"},
                      headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"active": False}


def test_config_is_validated(emulator: EmulatorHandle) -> None:
    for bad in ({"no_such_rule": 1}, {"max_sessions": {"gpu": -1}}, {"legacy_layout": "yes"},
                {"sandbox": "docker"}):
        with pytest.raises(EmulatorError) as err:
            emulator.control("config", bad)
        assert err.value.status == 400
    with pytest.raises(EmulatorError) as err:
        emulator.control("datasets", {"ref": "demo/x", "path": "/definitely/not/here"})
    assert err.value.status == 400 and "not a folder" in err.value.body
    cfg = emulator.control("config", {"max_sessions": {"gpu": 1}})
    assert cfg["max_sessions"] == {"cpu": 5, "gpu": 1, "tpu": 2}


def test_state_reports_the_sandbox_mode(emulator: EmulatorHandle) -> None:
    sandbox = emulator.get("state")["sandbox"]
    assert sandbox["mode"] in ("namespace", "relative")
    assert sandbox["namespace_available"] == (sandbox["mode"] == "namespace")


def test_download_output_redirect_and_logs_rpc(emulator: EmulatorHandle) -> None:
    """The SDK-only DownloadKernelOutput (302 to the signed URL) and GetKernelSessionLogsStream RPCs."""
    emulator.push("print('hello')\nopen('r.txt','w').write('result')", slug="sdk-kernel")
    emulator.wait_for_status("demo", "sdk-kernel")
    r = requests.post(f"{emulator.url}/api/v1/kernels.KernelsApiService/DownloadKernelOutput", auth=AUTH, timeout=10,
                      json={"ownerSlug": "demo", "kernelSlug": "sdk-kernel", "filePath": "r.txt"})
    assert r.status_code == 200 and r.text == "result" and r.history[0].status_code == 302
    r = requests.post(f"{emulator.url}/api/v1/kernels.KernelsApiService/GetKernelSessionLogsStream", auth=AUTH,
                      timeout=10, json={"userName": "demo", "kernelSlug": "sdk-kernel"})
    assert [rec["data"] for rec in json.loads(r.text)] == ["hello\n"]
