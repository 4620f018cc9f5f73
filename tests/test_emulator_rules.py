"""Kaggle's rules with Kaggle's exact messages, each triggered for real against the emulator."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kagglekit import constants as C
from kagglekit.emulator.models import MSG_QUOTA_PROJECTED
from tests.fixtures_emulator import EmulatorError, EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults

Cli = Callable[..., subprocess.CompletedProcess[str]]


def waiting_script(flag: Path, before: str = "") -> str:
    """A kernel that stays RUNNING until ``flag`` exists (at most 30 s)."""
    return (f"import os, time\n{before}\nflag = {str(flag)!r}\nend = time.time() + 30\n"
            "while not os.path.exists(flag) and time.time() < end:\n    time.sleep(0.02)\n")


def gpu(**fields: object) -> dict[str, object]:
    return {"machineShape": "NvidiaTeslaT4", "enableGpu": True, **fields}


def test_source_over_limit_is_http_400_with_kaggles_message(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                            tmp_path: Path) -> None:
    """Over 1 MiB of source: HTTP 400 "The kernel source must be less than 1 megabytes in size."."""
    big = "x = 1\n" + "#" * (C.SOURCE_LIMIT_BYTES + 10)
    with pytest.raises(EmulatorError) as err:
        emulator.push(big, slug="too-big-kernel")
    assert err.value.status == 400
    assert json.loads(err.value.body) == {"error": {"code": 400, "message": C.MSG_SOURCE_TOO_LARGE,
                                                    "status": "INVALID_ARGUMENT"}}
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "main.py").write_text(big)
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": "demo/too-big-kernel", "title": "Too Big Kernel", "code_file": "main.py", "language": "python",
         "kernel_type": "script"}))
    r = kaggle_cli("kernels", "push", "-p", str(folder))
    # The official CLI does not read Kaggle's nested envelope: all it shows is the status line.
    assert r.returncode == 1 and "400 Client Error: Bad Request" in r.stdout + r.stderr
    emulator.push("x = 1\n" + "#" * (C.SOURCE_LIMIT_BYTES - 10), slug="just-fits-kernel")  # under: accepted


def test_two_gpu_kernels_run_at_once_and_a_third_is_refused(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                             tmp_path: Path) -> None:
    """Two GPU sessions run concurrently; a third push gets HTTP 200 with the session-cap error (CLI exit 0)."""
    flag = tmp_path / "go"
    for slug in ("gpu-one-kernel", "gpu-two-kernel"):
        assert emulator.push(waiting_script(flag), slug=slug, **gpu())["versionNumber"] == 1
    for slug in ("gpu-one-kernel", "gpu-two-kernel"):
        emulator.wait_for_status("demo", slug, statuses={"RUNNING"})
    assert emulator.status("demo", "gpu-one-kernel")[0] == emulator.status("demo", "gpu-two-kernel")[0] == "RUNNING"
    refused = emulator.push("print(3)", slug="gpu-three-kernel", **gpu())
    assert refused == {"error": "Maximum batch GPU session count of 2 reached."}
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "main.py").write_text("print(3)")
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": "demo/gpu-three-kernel", "title": "Gpu Three Kernel", "code_file": "main.py", "language": "python",
         "kernel_type": "script", "machine_shape": "NvidiaTeslaT4"}))
    r = kaggle_cli("kernels", "push", "-p", str(folder))
    assert r.returncode == 0 and "Kernel push error: Maximum batch GPU session count of 2 reached." in r.stdout
    assert emulator.push("print('cpu still fine')", slug="cpu-meanwhile")["versionNumber"] == 1
    flag.write_text("go")
    assert emulator.wait_for_status("demo", "gpu-one-kernel") == "COMPLETE"
    emulator.wait_for_status("demo", "gpu-two-kernel")
    assert emulator.push("print(3)", slug="gpu-three-kernel", **gpu())["versionNumber"] == 1  # slots free again


@pytest.mark.emulator_config({"max_sessions": {"cpu": 1}})
def test_cpu_session_cap_message(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """The CPU cap uses the same message shape ("Maximum batch CPU session count of N reached.")."""
    emulator.push(waiting_script(tmp_path / "go"), slug="cpu-one-kernel")
    assert emulator.push("print(2)", slug="cpu-two-kernel") == {"error": "Maximum batch CPU session count of 1 reached."}
    (tmp_path / "go").write_text("go")


def test_weekly_quota_refusal_and_week_boundary(emulator: EmulatorHandle) -> None:
    """30 h used this week: a GPU push is refused with Kaggle's message; next Saturday 00:00 UTC it is admitted."""
    emulator.control("usage", {"username": "demo", "kind": "gpu", "seconds": 30 * 3600})
    assert emulator.push("print(1)", slug="quota-kernel", **gpu()) == {
        "error": "Maximum weekly GPU quota of 30.00 hours reached."}
    assert emulator.push("print(1)", slug="quota-kernel")["versionNumber"] == 1  # CPU has no weekly quota
    q = emulator.rpc("GetAcceleratorQuotaStatistics", {})
    refresh = dt.datetime.strptime(q["quotaRefreshTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert refresh.weekday() == 5 and (refresh.hour, refresh.minute, refresh.second) == (0, 0, 0)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    emulator.control("clock", {"offset_seconds": (refresh - now).total_seconds() + 1})  # 1 s into next week
    q = emulator.rpc("GetAcceleratorQuotaStatistics", {})
    assert q["gpuQuota"]["timeUsed"] == "0s" and q["gpuQuota"]["totalTimeAllowed"] == "108000s"
    assert emulator.push("print(1)", slug="quota-kernel", **gpu())["versionNumber"] == 2


@pytest.mark.emulator_config({"gpu_quota_seconds": 100, "session_limit_seconds": {"gpu": 60}})
def test_admission_counts_reserved_time_of_running_sessions(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """used + reserved must stay under the allowance: a running 60 s session reserves its remaining time."""
    flag = tmp_path / "go"
    emulator.push(waiting_script(flag), slug="reserving-kernel", **gpu())
    emulator.wait_for_status("demo", "reserving-kernel", statuses={"RUNNING"})
    gq = emulator.rpc("GetAcceleratorQuotaStatistics", {})["gpuQuota"]
    reserved = float(gq["timeReserved"].rstrip("s"))
    assert 50 < reserved <= 60 and set(gq) >= {"timeUsed", "timeReserved", "totalTimeAllowed", "minimumTimeAllowed"}
    emulator.control("usage", {"username": "demo", "kind": "gpu", "seconds": 45})
    # used (45 s + the run's seconds) < 100 s, but used + reserved is over: Kaggle's "projected" refusal
    assert emulator.push("print(1)", slug="second-gpu-kernel", **gpu()) == {
        "error": MSG_QUOTA_PROJECTED.format(kind="GPU", hours=100 / 3600)}
    flag.write_text("go")
    emulator.wait_for_status("demo", "reserving-kernel")
    assert emulator.push("print(1)", slug="second-gpu-kernel", **gpu())["versionNumber"] == 1


def test_tpu_quota_message(emulator: EmulatorHandle) -> None:
    emulator.control("usage", {"username": "demo", "kind": "tpu", "seconds": 20 * 3600})
    assert emulator.push("print(1)", slug="tpu-kernel", machineShape="TpuV5E8") == {
        "error": "Maximum weekly TPU quota of 20.00 hours reached."}


def test_session_timeout_cancels_and_keeps_files(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """push -t 1: the run is killed, CANCEL_ACKNOWLEDGED with Kaggle's message, files written so far kept."""
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "main.py").write_text("import time\nopen('checkpoint.pt','w').write('epoch 1')\ntime.sleep(60)\n")
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": "demo/slow-kernel", "title": "Slow Kernel", "code_file": "main.py", "language": "python",
         "kernel_type": "script"}))
    assert kaggle_cli("kernels", "push", "-p", str(folder), "-t", "1").returncode == 0
    assert emulator.wait_for_status("demo", "slow-kernel", timeout=60) == "CANCEL_ACKNOWLEDGED"
    r = kaggle_cli("kernels", "status", "demo/slow-kernel")
    assert "KernelWorkerStatus.CANCEL_ACKNOWLEDGED" in r.stdout and C.MSG_TIMEOUT in r.stdout
    files = emulator.rpc("ListKernelSessionOutput", {"userName": "demo", "kernelSlug": "slow-kernel"})["files"]
    assert [f["fileName"] for f in files] == ["checkpoint.pt"]


@pytest.mark.emulator_config({"session_limit_seconds": {"cpu": 1}})
def test_per_kind_session_limit(emulator: EmulatorHandle) -> None:
    """The per-kind limit (12 h on Kaggle, 1 s here) applies without a push timeout."""
    emulator.push("import time\ntime.sleep(60)", slug="cpu-limit-kernel")
    assert emulator.wait_for_status("demo", "cpu-limit-kernel", timeout=60) == "CANCEL_ACKNOWLEDGED"
    assert emulator.status("demo", "cpu-limit-kernel")[1] == C.MSG_TIMEOUT


@pytest.mark.emulator_config({"output_limit_bytes": 1_000_000})
def test_output_over_limit_is_an_error(emulator: EmulatorHandle) -> None:
    emulator.push("import os\nos.makedirs('a', exist_ok=True)\nopen('a/big.bin','wb').write(b'0' * 1_500_000)",
                  slug="big-output-kernel")
    assert emulator.wait_for_status("demo", "big-output-kernel") == "ERROR"
    assert emulator.status("demo", "big-output-kernel")[1] == C.MSG_OUTPUT_TOO_LARGE.format(limit="1 MB")


def test_exit_code_and_lifecycle(emulator: EmulatorHandle) -> None:
    """QUEUED -> RUNNING -> ERROR for a non-zero exit, with the code and last error line in the message."""
    emulator.control("config", {"queue_seconds": 0.5})
    emulator.push("import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)", slug="failing-kernel")
    seen = [emulator.status("demo", "failing-kernel")[0]]
    emulator.wait_for_status("demo", "failing-kernel")
    status, failure = emulator.status("demo", "failing-kernel")
    assert seen == ["QUEUED"] and status == "ERROR"
    assert failure == "The kernel process exited with code 3: boom"
    versions = emulator.server.backend.versions_of(emulator.server.backend.kernel_by_ref("demo", "failing-kernel").id)
    assert versions[0].started is not None and versions[0].ended >= versions[0].started


def test_invalid_sources_reported_like_kaggle(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    emulator.control("datasets", {"ref": "demo/known-data", "path": str(data)})
    resp = emulator.push("print(1)", slug="sources-kernel",
                         datasetDataSources=["demo/known-data", "nobody/missing-data"],
                         competitionDataSources=["no-such-comp"], kernelDataSources=["nobody/no-kernel"],
                         modelDataSources=["a/b/pyTorch/c/1"])
    assert resp["invalidDatasetSources"] == ["nobody/missing-data"]
    assert resp["invalidCompetitionSources"] == ["no-such-comp"]
    assert resp["invalidKernelSources"] == ["nobody/no-kernel"]
    assert resp["invalidModelSources"] == ["a/b/pyTorch/c/1"]
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "main.py").write_text("print(1)")
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": "demo/sources-kernel", "title": "Sources Kernel", "code_file": "main.py", "language": "python",
         "kernel_type": "script", "dataset_sources": ["nobody/missing-data"]}))
    r = kaggle_cli("kernels", "push", "-p", str(folder))
    assert ("The following are not valid dataset sources and could not be added to the kernel: "
            "['nobody/missing-data']") in r.stdout


def test_title_and_slug_rules(emulator: EmulatorHandle) -> None:
    """A new kernel takes its slug from its title (as on Kaggle); short titles and slugs are refused."""
    resp = emulator.rpc("SaveKernel", {"slug": "demo/requested-slug", "newTitle": "Another Title", "text": "print(1)",
                                       "language": "python", "kernelType": "script"})
    assert resp["ref"] == "/code/demo/another-title" and resp["url"].endswith("/code/demo/another-title")
    with pytest.raises(EmulatorError) as err:
        emulator.rpc("SaveKernel", {"slug": "demo/short-title", "newTitle": "Abc", "text": "", "language": "python",
                                    "kernelType": "script"})
    assert err.value.status == 400 and "Title must be at least five characters" in err.value.body
    with pytest.raises(EmulatorError) as err:
        emulator.rpc("SaveKernel", {"slug": "demo/abc", "text": "", "language": "python", "kernelType": "script"})
    assert "Kernel slug must be at least five characters" in err.value.body
    emulator.control("users", {"username": "mallory", "key": "m-key"})
    with pytest.raises(EmulatorError) as err:
        emulator.rpc("SaveKernel", {"slug": "demo/another-title", "text": "print(2)", "language": "python",
                                    "kernelType": "script"}, username="mallory", key="m-key")
    assert err.value.status == 403


def test_quick_save_does_not_run(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """--no-run saves version N+1 as NEW_SCRIPT without running it."""
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "main.py").write_text("open('ran.txt','w').write('x')")
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": "demo/quick-saved", "title": "Quick Saved", "code_file": "main.py", "language": "python",
         "kernel_type": "script"}))
    r = kaggle_cli("kernels", "push", "-p", str(folder), "--no-run")
    assert "Kernel version 1 successfully saved without running" in r.stdout, r.stdout + r.stderr
    assert emulator.status("demo", "quick-saved", 1)[0] == "NEW_SCRIPT"
    assert not (emulator.output_dir("demo", "quick-saved", 1) / "ran.txt").exists()
