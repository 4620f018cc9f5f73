"""Kaggle as it really is: each prod-shaped default of the emulator (kaggle-prod-behaviour.md), one test each.

Every behaviour here is on by default and has a config key that turns it off (docs/emulator.md); the
tests drive the emulator over HTTP with the real kagglesdk client or the official kaggle CLI where
one applies, and with plain HTTP where the behaviour is below any client.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kagglekit import constants as C
from kagglekit.emulator.models import (
    DEFAULT_CONFIG,
    MSG_CANCEL_DENIED,
    MSG_NO_RUNS,
    MSG_QUOTA_PROJECTED,
    MSG_T4_HIGHMEM,
)
from tests.fixtures_emulator import QUICK_WINDOWS, EmulatorError, EmulatorHandle

pytestmark = pytest.mark.emulator_prod


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    """This module is about the windows the test fixture shortens (QUICK_WINDOWS): here they are as shipped."""
    return {key: DEFAULT_CONFIG[key] for key in QUICK_WINDOWS}


AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)
Cli = Callable[..., subprocess.CompletedProcess[str]]


def rpc_error(emulator: EmulatorHandle, method: str, body: dict[str, Any], **kw: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(EmulatorError) as info:
        emulator.rpc(method, body, **kw)
    return info.value.status, json.loads(info.value.body)


def envelope(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}


def ref(slug: str, **extra: Any) -> dict[str, Any]:
    return {"userName": "demo", "kernelSlug": slug, **extra}


@pytest.fixture
def sdk(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real kagglesdk client as the demo user, pointed at this emulator (kaggle-wire.md recipe 4)."""
    import kagglesdk.kaggle_env as ke
    from kagglesdk import KaggleClient

    monkeypatch.setitem(ke._env_to_endpoint, ke.KaggleEnv.LOCAL, emulator.url)
    with KaggleClient(env=ke.KaggleEnv.LOCAL, username=C.DEMO_USERNAME, password=C.DEMO_KEY) as client:
        yield client


def sdk_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0) or 0)


def live_container_name(emulator: EmulatorHandle, slug: str) -> str:
    """What a tool does on Kaggle (§9): the kernel prints KAGGLE_CONTAINER_NAME, read from the live log
    (which, like the status, answers 404 until the session exists)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with requests.get(f"{emulator.url}/api/v1/kernels/logs/stream/demo/{slug}", auth=AUTH, stream=True,
                          timeout=30) as r:
            if r.status_code in (403, 404):
                time.sleep(0.1)
                continue
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data: {") and "-webtier" in line:
                    return str(json.loads(line[len("data: "):])["data"].strip())
    raise AssertionError("the kernel never printed its container name")


# --- 1. nested error envelope ----------------------------------------------------------------
def test_errors_come_in_kaggles_nested_envelope_and_flat_is_a_switch(emulator: EmulatorHandle, sdk: Any) -> None:
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusRequest

    request = ApiGetKernelSessionStatusRequest()
    request.user_name, request.kernel_slug = "demo", "does-not-exist"
    with pytest.raises(Exception) as info:
        sdk.kernels.kernels_api_client.get_kernel_session_status(request)
    assert sdk_status(info.value) == 403
    assert info.value.response.json() == envelope(403, "PERMISSION_DENIED",  # type: ignore[attr-defined]
                                                  "Permission 'kernels.get' was denied")
    emulator.control("config", {"error_envelope": "flat"})
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("does-not-exist"))[1] == {
        "code": 403, "message": "Permission 'kernels.get' was denied"}
    # the emulator's own control routes answer flat whatever the setting
    with pytest.raises(EmulatorError) as ctl:
        emulator.control("config", {"no_such_key": 1})
    assert json.loads(ctl.value.body)["code"] == 400


# --- 2. the first moments after a push ----------------------------------------------------------
def test_status_is_404_no_runs_until_the_session_exists(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                       tmp_path: Path) -> None:
    """Default 3 s: status answers 404 "No runs found for this kernel." right after a push, then the run."""
    assert DEFAULT_CONFIG["run_start_delay_seconds"] == 3.0
    t0 = time.monotonic()
    emulator.push("print('hi')", slug="fresh-kernel", isPrivate=False)
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("fresh-kernel")) == (
        404, envelope(404, "NOT_FOUND", MSG_NO_RUNS))
    # the official CLI meets the same 404 (what it prints is its own business)
    r = kaggle_cli("kernels", "status", "demo/fresh-kernel")
    seen_at = time.monotonic() - t0
    if seen_at < 2.5:
        assert "404" in r.stdout + r.stderr
    while True:
        try:
            status = emulator.rpc("GetKernelSessionStatus", ref("fresh-kernel"))["status"]
            break
        except EmulatorError as exc:
            assert exc.status == 404 and time.monotonic() - t0 < 30
            time.sleep(0.05)
    assert time.monotonic() - t0 >= 2.95 and status in C.ACTIVE_STATUSES | C.FINAL_STATUSES
    # a kernel that never ran answers the same 404
    emulator.push("print(1)", slug="saved-only", isPrivate=False, kernelExecutionType="QUICK_SAVE")
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("saved-only"))[0] == 404


@pytest.mark.emulator_config({"new_private_403_seconds": 60, "run_start_delay_seconds": 120})
def test_new_private_kernel_is_403_then_404_then_runs(emulator: EmulatorHandle) -> None:
    assert DEFAULT_CONFIG["new_private_403_seconds"] == 1.0
    emulator.push("print('private')", slug="secret-kernel", isPrivate=True)
    denied = envelope(403, "PERMISSION_DENIED", "Permission 'kernels.get' was denied")
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("secret-kernel")) == (403, denied)
    assert rpc_error(emulator, "GetKernel", ref("secret-kernel")) == (403, denied)
    emulator.control("clock", {"advance_seconds": 61})
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("secret-kernel"))[1] == envelope(404, "NOT_FOUND",
                                                                                              MSG_NO_RUNS)
    emulator.control("clock", {"advance_seconds": 60})
    assert emulator.wait_for_status("demo", "secret-kernel") == "COMPLETE"
    assert emulator.rpc("GetKernelSessionStatus", ref("secret-kernel")) == {"status": "COMPLETE"}


@pytest.mark.emulator_config({"max_sessions": {"cpu": 1}})
def test_cpu_push_when_slots_are_full_is_refused_or_creates_a_version_without_a_run(
        emulator: EmulatorHandle, tmp_path: Path) -> None:
    assert DEFAULT_CONFIG["push_without_run_when_cpu_full"] is False
    flag = tmp_path / "go"
    emulator.push(f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)", slug="slot-taker")
    assert emulator.push("print(1)", slug="second-cpu") == {"error": "Maximum batch CPU session count of 1 reached."}
    emulator.control("config", {"push_without_run_when_cpu_full": True})
    answer = emulator.push("print(1)", slug="second-cpu")
    assert answer["versionNumber"] == 1 and "error" not in answer
    emulator.control("clock", {"advance_seconds": 10})  # past every first-moment window: still no run
    assert rpc_error(emulator, "GetKernelSessionStatus", ref("second-cpu"))[1]["error"]["message"] == MSG_NO_RUNS
    flag.write_text("go")
    emulator.wait_for_status("demo", "slot-taker")


# --- 3. quota: reached vs projected -------------------------------------------------------------
@pytest.mark.emulator_config({"gpu_quota_seconds": 3600, "session_limit_seconds": {"gpu": 1800}})
def test_quota_projected_vs_reached_from_one_admission_rule(emulator: EmulatorHandle, tmp_path: Path) -> None:
    gpu = {"machineShape": "NvidiaTeslaT4", "enableGpu": True}
    flag = tmp_path / "go"
    emulator.push(f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)",
                  slug="gpu-holder", **gpu)
    emulator.wait_for_status("demo", "gpu-holder", statuses={"RUNNING"}, timeout=30)
    emulator.control("usage", {"username": "demo", "kind": "gpu", "seconds": 1900})
    q = emulator.rpc("GetAcceleratorQuotaStatistics", {})["gpuQuota"]
    used, reserved = float(q["timeUsed"][:-1]), float(q["timeReserved"][:-1])
    assert 1900 <= used < 1960 and 1700 < reserved <= 1800  # the running session reserves up to its limit
    # used < 1 h, used + reserved > 1 h: the "projected" refusal, Kaggle's exact text
    projected = emulator.push("print(1)", slug="gpu-second", **gpu)
    assert projected == {"error": MSG_QUOTA_PROJECTED.format(kind="GPU", hours=1)}
    assert projected["error"] == ("Session cannot start because currently running sessions are projected to exceed "
                                  "maximum weekly GPU quota of 1. Cancelling running sessions may allow starting "
                                  "new sessions.")
    flag.write_text("go")
    emulator.wait_for_status("demo", "gpu-holder")
    assert emulator.push("print(1)", slug="gpu-second", **gpu)["versionNumber"] == 1  # the reservation is gone
    emulator.wait_for_status("demo", "gpu-second")
    emulator.control("usage", {"username": "demo", "kind": "gpu", "seconds": 2000})
    assert emulator.push("print(1)", slug="gpu-second", **gpu) == {  # used alone fills it: "reached"
        "error": C.MSG_WEEKLY_QUOTA.format(kind="GPU", hours=1)}


# --- 4. the save phase -----------------------------------------------------------------------------
def test_save_phase_keeps_the_version_running_and_listing_nothing(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """20 MB at the default 2 min/GB: RUNNING about 2.4 s after the kernel ended, no files, no log; then all."""
    marker = tmp_path / "ended"
    source = ("open('big.bin', 'wb').write(b'x' * 20_000_000)\nprint('bye', flush=True)\n"
              f"open({str(marker)!r}, 'w').write('done')\n")
    emulator.push(source, slug="saving-kernel")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ended = time.monotonic()
    listing = emulator.rpc("ListKernelSessionOutput", ref("saving-kernel"))
    assert emulator.rpc("GetKernelSessionStatus", ref("saving-kernel")) == {"status": "RUNNING"}
    assert listing == {"files": []}  # a RUNNING version lists no files and no log
    assert emulator.rpc("ListKernelFiles", ref("saving-kernel")) == {"files": []}
    assert emulator.wait_for_status("demo", "saving-kernel") == "COMPLETE"
    assert time.monotonic() - ended >= 20_000_000 / 1e9 * 120 - 0.05
    done = emulator.rpc("ListKernelSessionOutput", ref("saving-kernel"))
    assert [f["fileName"] for f in done["files"]] == ["big.bin"] and "bye" in done["log"]


@pytest.mark.emulator_config({"save_min_seconds": 5})
def test_cancel_goes_cancel_requested_with_files_appearing_then_acknowledged(emulator: EmulatorHandle,
                                                                             sdk: Any) -> None:
    from kagglesdk.kernels.types.kernels_api_service import ApiCancelKernelSessionRequest

    source = ("import os, time\nfor i in range(5):\n    open(f'part{i}.bin', 'wb').write(b'p' * 100_000)\n"
              "print(os.environ['KAGGLE_CONTAINER_NAME'], flush=True)\ntime.sleep(60)\n")
    emulator.push(source, slug="cancel-kernel")
    name = live_container_name(emulator, "cancel-kernel")
    assert name.startswith("kaggle_") and name.endswith("-webtier")
    request = ApiCancelKernelSessionRequest()
    request.kernel_session_id = int(name.split("-")[-2])
    sdk.kernels.kernels_api_client.cancel_kernel_session(request)
    counts: list[int] = []
    statuses: list[str] = []
    deadline = time.monotonic() + 30
    while (status := emulator.rpc("GetKernelSessionStatus", ref("cancel-kernel"))["status"]) != \
            "CANCEL_ACKNOWLEDGED":
        assert time.monotonic() < deadline
        statuses.append(status)
        counts.append(len(emulator.rpc("ListKernelSessionOutput", ref("cancel-kernel"))["files"]))
        time.sleep(0.1)
    assert set(statuses) == {"CANCEL_REQUESTED"}
    assert counts == sorted(counts) and any(0 < n < 5 for n in counts)  # the files appear bit by bit
    assert len(emulator.rpc("ListKernelSessionOutput", ref("cancel-kernel"))["files"]) == 5


def test_saved_snapshot_drops_symlinks_empty_folders_and_exec_bits(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                                    tmp_path: Path) -> None:
    source = ("import os\nos.makedirs('empty/deeper')\nos.makedirs('sub')\nopen('sub/kept.txt', 'w').write('k')\n"
              "open('run.sh', 'w').write('echo hi')\nos.chmod('run.sh', 0o755)\n"
              "os.symlink('sub/kept.txt', 'link.txt')\nos.symlink('/etc', 'etc-link')\n")
    emulator.push(source, slug="snapshot-kernel")
    assert emulator.wait_for_status("demo", "snapshot-kernel") == "COMPLETE"
    names = [f["fileName"] for f in emulator.rpc("ListKernelSessionOutput", ref("snapshot-kernel"))["files"]]
    assert names == ["run.sh", "sub/kept.txt"]
    saved = emulator.output_dir("demo", "snapshot-kernel")
    assert sorted(p.name for p in saved.iterdir()) == ["run.sh", "sub"]
    assert not stat.S_IMODE((saved / "run.sh").stat().st_mode) & 0o111
    out = tmp_path / "out"
    assert kaggle_cli("kernels", "output", "demo/snapshot-kernel", "-p", str(out)).returncode == 0
    assert (out / "sub" / "kept.txt").read_text() == "k" and not (out / "link.txt").exists()


def test_file_urls_carry_the_unescaped_name(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """Signed over the raw name and written raw: sent once-encoded it works (requests, the official CLI);
    a literal %20 in a name, or a '#', breaks (the official CLI stops at such a file with a 403)."""
    emulator.push("open('my file \u00e9.txt', 'w').write('spaced')\n", slug="spaced-names")
    emulator.push("for n in ['a%20b.txt', 'odd #1.txt']:\n    open(n, 'w').write(n)\n", slug="odd-names")
    assert emulator.wait_for_status("demo", "spaced-names") == emulator.wait_for_status("demo", "odd-names") \
        == "COMPLETE"
    url = emulator.rpc("ListKernelSessionOutput", ref("spaced-names"))["files"][0]["url"]
    assert "/my file \u00e9.txt?" in url
    assert requests.get(url, timeout=10).content == b"spaced"  # requests encodes it once
    requoted = url.replace(" ", urllib.parse.quote(urllib.parse.quote(" ")))
    assert requests.get(requoted, timeout=10).status_code == 403  # a client that quotes twice breaks
    out = tmp_path / "out"
    r = kaggle_cli("kernels", "output", "demo/spaced-names", "-p", str(out))
    assert r.returncode == 0 and (out / "my file \u00e9.txt").read_text() == "spaced", r.stdout + r.stderr
    files = {f["fileName"]: f["url"] for f in emulator.rpc("ListKernelSessionOutput", ref("odd-names"))["files"]}
    assert requests.get(files["a%20b.txt"], timeout=10).status_code == 403  # the server reads "a b.txt"
    assert requests.get(files["odd #1.txt"], timeout=10).status_code == 403  # the rest became a fragment
    r = kaggle_cli("kernels", "output", "demo/odd-names", "-p", str(tmp_path / "odd"))
    assert "403 Client Error" in r.stdout + r.stderr
    emulator.control("config", {"file_url_escaped": True})
    escaped = {f["fileName"]: f["url"] for f in emulator.rpc("ListKernelSessionOutput", ref("odd-names"))["files"]}
    assert requests.get(escaped["odd #1.txt"], timeout=10).text == "odd #1.txt"


# --- 5. smaller things -----------------------------------------------------------------------------
def test_page_size_above_500_is_400(emulator: EmulatorHandle) -> None:
    emulator.push("open('a.txt', 'w').write('a')", slug="paged-output")
    assert emulator.wait_for_status("demo", "paged-output") == "COMPLETE"
    assert len(emulator.rpc("ListKernelSessionOutput", ref("paged-output", pageSize=500))["files"]) == 1
    assert rpc_error(emulator, "ListKernelSessionOutput", ref("paged-output", pageSize=501)) == (
        400, envelope(400, "INVALID_ARGUMENT", "Page size must be at most 500."))


def test_retired_shapes_and_t4_highmem(emulator: EmulatorHandle) -> None:
    probe = "import os\nprint(os.environ.get('KAGGLE_DOCKER_IMAGE'))"
    for slug, shape in (("tpu-v2-kernel", "TpuV232"), ("tpu-v2-256-kernel", "TpuV2256"),
                        ("p100-kernel", "NvidiaTeslaP100"), ("tpu-v3-kernel", "TpuV38")):
        assert emulator.push(probe, slug=slug, machineShape=shape)["versionNumber"] == 1
    runs = {v["ref"].split("/")[1]: (v["kind"], v["machine_shape"]) for v in emulator.get("versions")["versions"]}
    assert runs["tpu-v2-kernel"] == runs["tpu-v2-256-kernel"] == ("cpu", "None")  # CPU, no accelerator
    assert runs["p100-kernel"] == ("gpu", "NvidiaTeslaT4")  # T4 x2
    assert runs["tpu-v3-kernel"] == ("tpu", "TpuV5E8")
    assert rpc_error(emulator, "SaveKernel", {"slug": "demo/highmem-kernel", "newTitle": "Highmem Kernel",
                                              "text": "print(1)", "language": "python", "kernelType": "script",
                                              "machineShape": "NvidiaTeslaT4Highmem"}) == (
        400, envelope(400, "INVALID_ARGUMENT", MSG_T4_HIGHMEM))
    emulator.control("config", {"allow_t4_highmem": True})
    assert emulator.push(probe, slug="highmem-kernel", machineShape="NvidiaTeslaT4Highmem")["versionNumber"] == 1


def test_notebook_without_kernelspec_fails_as_on_kaggle(emulator: EmulatorHandle) -> None:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": ["print('ran')"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    emulator.push(json.dumps(nb), slug="no-kernelspec", kernel_type="notebook")
    assert emulator.wait_for_status("demo", "no-kernelspec", timeout=60) == "ERROR"
    assert "No kernel name found in notebook" in emulator.status("demo", "no-kernelspec")[1]


# --- 6. CancelKernelSession ----------------------------------------------------------------------
def test_cancel_needs_the_session_id_and_the_starting_account(emulator: EmulatorHandle, tmp_path: Path) -> None:
    emulator.control("users", {"username": "editor", "key": "e" * 32})
    emulator.push("import os, time\nprint(os.environ['KAGGLE_CONTAINER_NAME'], flush=True)\ntime.sleep(60)",
                  slug="long-runner")
    session_id = int(live_container_name(emulator, "long-runner").split("-")[-2])
    kernel_id = emulator.rpc("GetKernel", ref("long-runner"))["metadata"]["id"]
    denied = (403, envelope(403, "PERMISSION_DENIED", MSG_CANCEL_DENIED))
    for wrong in (kernel_id, 1, session_id + 1):  # the kernel id, the version number, a neighbour: never 404
        assert rpc_error(emulator, "CancelKernelSession", {"kernelSessionId": wrong}) == denied
    assert rpc_error(emulator, "CancelKernelSession", {"kernelSessionId": session_id}, username="editor",
                     key="e" * 32) == denied
    emulator.control("config", {"cancel_always_denied": True})
    assert rpc_error(emulator, "CancelKernelSession", {"kernelSessionId": session_id}) == denied
    emulator.control("config", {"cancel_always_denied": False})
    assert emulator.rpc("CancelKernelSession", {"kernelSessionId": session_id}) == {}
    assert emulator.status("demo", "long-runner")[0] == "CANCEL_REQUESTED"
    assert emulator.wait_for_status("demo", "long-runner", timeout=30) == "CANCEL_ACKNOWLEDGED"
    assert [v["session_id"] for v in emulator.get("versions")["versions"]] == [session_id]


# --- issue 12 item 1: no self-mount ----------------------------------------------------------------
def test_a_kernel_cannot_mount_its_own_output(emulator: EmulatorHandle) -> None:
    emulator.push("open('ckpt.txt', 'w').write('epoch 1')", slug="relay-kernel")
    assert emulator.wait_for_status("demo", "relay-kernel") == "COMPLETE"
    probe = ("import os\nroot = os.environ.get('KAGGLE_KERNEL_ROOT', '/kaggle')\n"
             "open('seen.txt', 'w').write(str(os.path.isdir(os.path.join(root, 'input/notebooks/demo/relay-kernel'"
             "))))\n")
    answer = emulator.push(probe, slug="relay-kernel", kernelDataSources=["demo/relay-kernel"])
    assert answer["invalidKernelSources"] == ["demo/relay-kernel"] and answer["versionNumber"] == 2
    assert emulator.wait_for_status("demo", "relay-kernel", version=2) == "COMPLETE"
    assert (emulator.output_dir("demo", "relay-kernel", 2) / "seen.txt").read_text() == "False"
    # a sibling kernel may mount it (the relay), and allow_self_mount turns the refusal off
    sibling = emulator.push(probe, slug="relay-kernel-b", kernelDataSources=["demo/relay-kernel"])
    assert "invalidKernelSources" not in sibling
    assert emulator.wait_for_status("demo", "relay-kernel-b") == "COMPLETE"
    assert (emulator.output_dir("demo", "relay-kernel-b") / "seen.txt").read_text() == "True"
    emulator.control("config", {"allow_self_mount": True})
    again = emulator.push(probe, slug="relay-kernel", kernelDataSources=["demo/relay-kernel"])
    assert "invalidKernelSources" not in again
    assert emulator.wait_for_status("demo", "relay-kernel", version=3) == "COMPLETE"
    assert (emulator.output_dir("demo", "relay-kernel", 3) / "seen.txt").read_text() == "True"


# --- issue 10 item 15: a bind beyond loopback --------------------------------------------------------
def _serve_on_all_interfaces(tmp_path: Path, *args: str, **popen: Any) -> tuple[subprocess.Popen[Any], str]:
    """`emulator serve --host 0.0.0.0` in a subprocess, once it has written its ready file: (process, URL)."""
    ready = tmp_path / "ready.json"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "kagglekit.emulator", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--data-dir", str(tmp_path / "data"), "--ready-file", str(ready), *args], **popen)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc, str(json.loads(ready.read_text())["url"])


def test_serve_on_all_interfaces_warns_and_guards_the_control_routes(tmp_path: Path) -> None:
    proc, url = _serve_on_all_interfaces(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, "KAGGLEKIT_EMULATOR_CONTROL_TOKEN": ""})
    try:
        assert requests.post(f"{url}/__emulator/reset", timeout=10).status_code == 401
        assert requests.get(f"{url}/__emulator/state", timeout=10).status_code == 401
        assert requests.post(f"{url}/__emulator/users", json={"username": "mallory", "key": "k" * 8},
                             timeout=10).status_code == 401
        assert requests.get(f"{url}/__emulator/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    port = url.rsplit(":", 1)[1]
    assert f"listening on 0.0.0.0:{port}" in out
    assert "WARNING" in err and f"0.0.0.0:{port}" in err
    token = err.split("X-Emulator-Token: ", 1)[1].split()[0]
    assert len(token) >= 24

    proc, url = _serve_on_all_interfaces(tmp_path, "--control-token", "s3cret-token-for-this-test",
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert requests.get(f"{url}/__emulator/state", timeout=10,
                            headers={"X-Emulator-Token": "wrong"}).status_code == 401
        state = requests.get(f"{url}/__emulator/state", timeout=10,
                             headers={"X-Emulator-Token": "s3cret-token-for-this-test"})
        assert state.status_code == 200 and state.json()["control_token_required"] is True
    finally:
        proc.terminate()
        proc.wait(20)
