"""State survives restarts; runs in flight end as ERROR; the background emulator behind --local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from kagglekit import constants as C
from kagglekit.emulator.models import MSG_RESTARTED
from kagglekit.emulator.server import EmulatorServer
from tests.fixtures_emulator import EMULATOR_TEST_CONFIG, EmulatorHandle

AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)


def waiting(flag: Path) -> str:
    return (f"import os, time\nprint('started', flush=True)\nend = time.time() + 300\n"
            f"while not os.path.exists({str(flag)!r}) and time.time() < end:\n    time.sleep(0.02)\n")


def test_restart_keeps_kernels_versions_and_outputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = EmulatorHandle(EmulatorServer(data, config=EMULATOR_TEST_CONFIG).start(), data)
    try:
        for n in (1, 2):
            first.push(f"open('out.txt','w').write('version {n}')", slug="kept-kernel")
            assert first.wait_for_status("demo", "kept-kernel", version=n) == "COMPLETE"
        first.push(waiting(tmp_path / "never"), slug="in-flight")
        first.wait_for_status("demo", "in-flight", statuses={"RUNNING"})
    finally:
        first.server.stop()

    second = EmulatorHandle(EmulatorServer(data).start(), data)
    try:
        assert second.status("demo", "in-flight") == ("ERROR", MSG_RESTARTED)
        meta = second.rpc("GetKernel", {"userName": "demo", "kernelSlug": "kept-kernel"})["metadata"]
        assert meta["currentVersionNumber"] == 2
        for n in (1, 2):
            files = second.rpc("ListKernelSessionOutput", {"userName": "demo", "kernelSlug": "kept-kernel",
                                                           "versionLabel": f"v{n}"})["files"]
            assert requests.get(files[0]["url"], timeout=10).text == f"version {n}"
        assert second.push("print(3)", slug="kept-kernel")["versionNumber"] == 3
        assert second.get("config")["queue_seconds"] == EMULATOR_TEST_CONFIG["queue_seconds"]  # config persisted
    finally:
        second.server.stop()


def test_stopping_during_a_cancels_save_phase_does_not_wait_for_it(tmp_path: Path) -> None:
    """A cancelled run saves its outputs (CANCEL_REQUESTED) for 30 s here: a stop ends it at once, lost as ERROR
    like any run in flight, instead of waiting out the save."""
    data = tmp_path / "data"
    emu = EmulatorHandle(EmulatorServer(data, config={**EMULATOR_TEST_CONFIG, "save_min_seconds": 30}).start(), data)
    try:
        emu.push(waiting(tmp_path / "never"), slug="saving-cancel")
        emu.wait_for_status("demo", "saving-cancel", statuses={"RUNNING"})
        emu.control("cancel", {"owner": "demo", "slug": "saving-cancel"})
        emu.wait_for_status("demo", "saving-cancel", statuses={"CANCEL_REQUESTED"})
    finally:
        started = time.monotonic()
        emu.server.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 5, f"the stop waited {stopped_in:.1f} s for the save phase"
    state = EmulatorServer(data).backend
    try:
        assert state.versions_of(state.kernel_by_ref("demo", "saving-cancel").id)[0].status == "ERROR"
    finally:
        state.close()


def _serve(data: Path, ready: Path) -> subprocess.Popen[bytes]:
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "kagglekit.emulator", "serve", "--port", "0", "--data-dir",
                             str(data), "--ready-file", str(ready), "--config", json.dumps(EMULATOR_TEST_CONFIG)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # a bound on a hang only: start-up is a few seconds, more under load
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_killed_emulator_restarts_with_in_flight_run_as_error(tmp_path: Path) -> None:
    """SIGKILL the server mid-run: at restart the run is ERROR with a clear message and its kernel is killed.

    Deterministic under load: the server is killed only once the kernel itself has written a marker (so it
    runs) *and* the status reads RUNNING (recorded together with the kernel's pid)."""
    data, ready = tmp_path / "data", tmp_path / "ready.json"
    proc = _serve(data, ready)
    marker = tmp_path / "kernel-started"
    try:
        url = json.loads(ready.read_text())["url"]
        source = f"open({str(marker)!r}, 'w').write('up')\n" + waiting(tmp_path / "never")
        r = requests.post(f"{url}/api/v1/kernels.KernelsApiService/SaveKernel", auth=AUTH, timeout=10, json={
            "slug": "demo/crash-victim", "newTitle": "Crash Victim", "text": source,
            "language": "python", "kernelType": "script"})
        assert r.json()["versionNumber"] == 1
        body = {"userName": "demo", "kernelSlug": "crash-victim"}
        deadline = time.monotonic() + 120
        while not marker.exists() or requests.post(
                f"{url}/v1/kernels.KernelsApiService/GetKernelSessionStatus", json=body, auth=AUTH,
                timeout=10).json().get("status") != "RUNNING":  # 404 "No runs found" until the session exists
            assert time.monotonic() < deadline, "the kernel never started"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = EmulatorServer(data).backend  # read what the dead server left
    kernel_pid = state.versions_of(state.kernel_by_ref("demo", "crash-victim").id)[0].pid
    state.close()
    assert kernel_pid and os.path.exists(f"/proc/{kernel_pid}")  # orphaned, still running

    proc = _serve(data, ready)
    try:
        url = json.loads(ready.read_text())["url"]
        r = requests.post(f"{url}/v1/kernels.KernelsApiService/GetKernelSessionStatus", auth=AUTH, timeout=10,
                          json={"userName": "demo", "kernelSlug": "crash-victim"})
        assert r.json() == {"status": "ERROR", "failureMessage": MSG_RESTARTED}
        deadline = time.monotonic() + 60  # killed at start-up, before the ready file; a bound on a hang only
        while os.path.exists(f"/proc/{kernel_pid}") and "Z" not in _state_of(kernel_pid):
            assert time.monotonic() < deadline, "the orphaned kernel was not killed"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_background_emulator_start_status_add_dataset_stop(tmp_path: Path) -> None:
    """`kagglekit emulator start|status|add-dataset|stop`: one background server, reused, serving real runs."""
    kk = [sys.executable, "-m", "kagglekit"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kk, *args], capture_output=True, text=True, timeout=60)

    started = run("--json", "emulator", "start")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:
        again = json.loads(run("--json", "emulator", "start").stdout)
        assert again["pid"] == info["pid"] and again["url"] == info["url"]  # reused, not a second server
        status = json.loads(run("--json", "emulator", "status").stdout)
        assert status["running"] is True and status["url"] == info["url"]
        assert status["sandbox"]["mode"] in ("namespace", "relative")
        data = tmp_path / "cats"
        data.mkdir()
        (data / "cat.txt").write_text("meow")
        r = run("emulator", "add-dataset", "demo/cats", str(data))
        assert r.returncode == 0 and "demo/cats" in r.stdout, r.stderr
        resp = requests.post(f"{info['url']}/v1/kernels.KernelsApiService/SaveKernel", auth=AUTH, timeout=10, json={
            "slug": "demo/reads-cats", "newTitle": "Reads Cats", "language": "python", "kernelType": "script",
            "datasetDataSources": ["demo/cats"],
            "text": "import os\nroot = os.environ['KAGGLE_KERNEL_ROOT']\n"
                    "open('seen.txt','w').write(open(f'{root}/input/datasets/demo/cats/cat.txt').read())"}).json()
        assert "invalidDatasetSources" not in resp
        body = {"userName": "demo", "kernelSlug": "reads-cats"}
        deadline = time.monotonic() + 30
        # The background emulator is prod-shaped: "No runs found" (404) until the run's session exists.
        while (st := requests.post(f"{info['url']}/v1/kernels.KernelsApiService/GetKernelSessionStatus", json=body,
                                   auth=AUTH, timeout=10).json()).get("status") not in C.FINAL_STATUSES:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert st == {"status": "COMPLETE"}
        files = requests.post(f"{info['url']}/v1/kernels.KernelsApiService/ListKernelSessionOutput", json=body,
                              auth=AUTH, timeout=10).json()["files"]
        assert requests.get(files[0]["url"], timeout=10).text == "meow"
    finally:
        stopped = run("emulator", "stop")
    assert stopped.returncode == 0 and "Stopped the emulator" in stopped.stdout
    assert not os.path.exists(f"/proc/{info['pid']}") or "Z" in _state_of(info["pid"])
    assert "not running" in run("emulator", "status").stdout
