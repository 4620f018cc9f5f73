"""The unmodified official kaggle CLI drives the emulator: each command's real effect is checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kagglekit import constants as C
from tests.fixtures_emulator import EmulatorHandle, kaggle_executable

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults

Cli = Callable[..., subprocess.CompletedProcess[str]]

SCRIPT = """\
import os, sys
print("hello from the kernel", os.getcwd())
print("to stderr", file=sys.stderr)
os.makedirs("sub/dir", exist_ok=True)
with open("sub/dir/model.bin", "wb") as f:
    f.write(bytes(range(256)) * 40)
for i in range(5):
    with open(f"part{i}.txt", "w") as f:
        f.write(f"part {i}\\n")
"""


def write_kernel(folder: Path, slug: str, code: str, *, kernel_type: str = "script", **meta: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    code_file = "main.ipynb" if kernel_type == "notebook" else "main.py"
    (folder / code_file).write_text(code)
    md = {"id": f"demo/{slug}", "title": slug.replace("-", " ").title(), "code_file": code_file,
          "language": "python", "kernel_type": kernel_type, "is_private": "true", "enable_gpu": "false",
          "enable_tpu": "false", "enable_internet": "true", "dataset_sources": [], "competition_sources": [],
          "kernel_sources": [], "model_sources": [], **meta}
    (folder / "kernel-metadata.json").write_text(json.dumps(md))
    return folder


def test_push_status_output_pages_subfolder_byte_identical(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                           tmp_path: Path) -> None:
    """push runs the script for real; output fetches every page, a sub-folder file byte for byte, and the log."""
    folder = write_kernel(tmp_path / "k", "cli-script", SCRIPT)
    r = kaggle_cli("kernels", "push", "-p", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Kernel version 1 successfully pushed" in r.stdout
    assert emulator.wait_for_status("demo", "cli-script") == "COMPLETE"

    r = kaggle_cli("kernels", "status", "demo/cli-script")
    assert 'demo/cli-script has status "KernelWorkerStatus.COMPLETE"' in r.stdout

    out = tmp_path / "out"
    r = kaggle_cli("kernels", "output", "demo/cli-script", "-p", str(out), "--page-size", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "sub/dir/model.bin").read_bytes() == bytes(range(256)) * 40
    assert sorted(p.name for p in out.glob("part*.txt")) == [f"part{i}.txt" for i in range(5)]
    # 6 files at 2 per page: three ListKernelSessionOutput calls
    pages = [r for r in emulator.requests("rpc") if r["name"].endswith("ListKernelSessionOutput")]
    assert len(pages) == 3
    log = json.loads((out / "cli-script.log").read_text())
    assert {"stream_name": "stderr", "data": "to stderr\n"}.items() <= {**log[1], "time": 0}.items() or any(
        rec["data"] == "to stderr\n" and rec["stream_name"] == "stderr" for rec in log)
    assert any("hello from the kernel" in rec["data"] and "kaggle/working" in rec["data"] for rec in log)


WAIT_FOR_FLAG = """\
import os, sys, time
print("tick 0", flush=True)
flag = {flag!r}
deadline = time.time() + 30
while not os.path.exists(flag) and time.time() < deadline:
    time.sleep(0.02)
print("tick 1", flush=True)
open("done.txt", "w").write("done")
"""


def test_logs_and_logs_follow_while_running(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """`logs -f` streams a running kernel's log live and ends at END_OF_LOG; the one-shot `logs` reads the
    saved log, which Kaggle lists only once the run ended (nothing while it runs)."""
    flag = tmp_path / "go"
    folder = write_kernel(tmp_path / "k", "live-logs", WAIT_FOR_FLAG.format(flag=str(flag)))
    assert kaggle_cli("kernels", "push", "-p", str(folder)).returncode == 0
    emulator.wait_for_status("demo", "live-logs", statuses={"RUNNING"})

    env = {**os.environ, **emulator.demo_env(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([kaggle_executable(), "kernels", "logs", "demo/live-logs", "-f"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.strip() == "tick 0"
        assert emulator.status("demo", "live-logs")[0] == "RUNNING"  # it streamed while running
        one_shot = kaggle_cli("kernels", "logs", "demo/live-logs")
        assert one_shot.returncode == 0 and "tick" not in one_shot.stdout  # a RUNNING version has no log yet
        flag.write_text("go")
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert rest.strip().splitlines() == ["tick 1"]
    assert emulator.wait_for_status("demo", "live-logs") == "COMPLETE"
    saved = kaggle_cli("kernels", "logs", "demo/live-logs").stdout
    assert "tick 0" in saved and "tick 1" in saved
    sse = [r for r in emulator.requests("logs")]
    assert sse and sse[-1]["path"] == "/api/v1/kernels/logs/stream/demo/live-logs"


NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# A notebook kernel"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import os\n", "value = 6 * 7\n", "open('answer.txt', 'w').write(str(value))\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["print('the answer is', value, 'in', os.getcwd())"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_push_notebook_runs_cells_in_order(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """A notebook push executes its cells in order: cell 2 sees cell 1's variable; outputs and log come back."""
    folder = write_kernel(tmp_path / "nb", "nb-kernel", json.dumps(NOTEBOOK), kernel_type="notebook")
    r = kaggle_cli("kernels", "push", "-p", str(folder))
    assert "successfully pushed" in r.stdout, r.stdout + r.stderr
    assert emulator.wait_for_status("demo", "nb-kernel", timeout=90) == "COMPLETE", emulator.status("demo", "nb-kernel")
    out = tmp_path / "out"
    assert kaggle_cli("kernels", "output", "demo/nb-kernel", "-p", str(out)).returncode == 0
    assert (out / "answer.txt").read_text() == "42"
    log = json.loads((out / "nb-kernel.log").read_text())
    assert any("the answer is 42 in" in rec["data"] and "kaggle/working" in rec["data"] for rec in log)


def test_broken_notebook_errors_without_hurting_the_emulator(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                            tmp_path: Path) -> None:
    """A notebook that raises ends in ERROR with the exception in the failure message; the server keeps serving."""
    nb = json.loads(json.dumps(NOTEBOOK))
    nb["cells"][2]["source"] = ["1 / 0"]
    folder = write_kernel(tmp_path / "nb", "bad-notebook", json.dumps(nb), kernel_type="notebook")
    assert kaggle_cli("kernels", "push", "-p", str(folder)).returncode == 0
    assert emulator.wait_for_status("demo", "bad-notebook", timeout=90) == "ERROR"
    r = kaggle_cli("kernels", "status", "demo/bad-notebook")
    assert "KernelWorkerStatus.ERROR" in r.stdout and "ZeroDivisionError" in r.stdout
    # not even valid JSON: still an ERROR, never a crash
    emulator.push("{not json", slug="garbage-notebook", kernel_type="notebook")
    assert emulator.wait_for_status("demo", "garbage-notebook", timeout=30) == "ERROR"
    assert "could not be read" in emulator.status("demo", "garbage-notebook")[1]
    assert emulator.get("health")["ok"] is True


def test_pull_metadata_round_trip(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """`pull -m` returns the pushed source and metadata; pushing that folder again makes version 2."""
    folder = write_kernel(tmp_path / "k", "pull-me", "print('v1')\n", keywords=["gpu"])
    assert kaggle_cli("kernels", "push", "-p", str(folder)).returncode == 0
    emulator.wait_for_status("demo", "pull-me")  # past the moment a new private kernel answers 403
    dest = tmp_path / "pulled"
    r = kaggle_cli("kernels", "pull", "demo/pull-me", "-p", str(dest), "-m")
    assert r.returncode == 0, r.stdout + r.stderr
    md = json.loads((dest / "kernel-metadata.json").read_text())
    assert md["id"] == "demo/pull-me" and isinstance(md["id_no"], int)
    assert md["language"] == "python" and md["kernel_type"] == "script" and md["keywords"] == ["gpu"]
    assert (dest / md["code_file"]).read_text() == "print('v1')\n"
    (dest / md["code_file"]).write_text("print('v2')\n")
    r = kaggle_cli("kernels", "push", "-p", str(dest))
    assert "Kernel version 2 successfully pushed" in r.stdout, r.stdout + r.stderr
    assert emulator.wait_for_status("demo", "pull-me", version=2) == "COMPLETE"
    r = kaggle_cli("kernels", "pull", "demo/pull-me/1", "-p", str(tmp_path / "v1"))
    assert (tmp_path / "v1" / "pull-me.py").read_text() == "print('v1')\n"


def test_list_mine_and_private_kernels_of_others(emulator: EmulatorHandle, kaggle_cli: Cli,
                                                 tmp_path: Path) -> None:
    """`list --mine` shows my kernels; another user's private kernel is invisible (status 403, not listed)."""
    emulator.control("users", {"username": "alice", "key": "alice-key"})
    emulator.push("print(1)", slug="alice-secret", username="alice", key="alice-key")
    emulator.push("print(1)", slug="alice-public", username="alice", key="alice-key", isPrivate=False)
    emulator.push("print(1)", slug="demo-mine")
    r = kaggle_cli("kernels", "list", "--mine")
    assert "demo/demo-mine" in r.stdout and "alice" not in r.stdout, r.stdout + r.stderr
    r = kaggle_cli("kernels", "list")
    assert "alice/alice-public" in r.stdout and "alice-secret" not in r.stdout
    r = kaggle_cli("kernels", "status", "alice/alice-secret")
    assert r.returncode == 1 and "Cannot access kernel 'alice/alice-secret'" in r.stderr
    emulator.wait_for_status("alice", "alice-public")  # past the post-push 404 (test_emulator_prod covers it)
    r = kaggle_cli("kernels", "status", "alice/alice-public")
    assert 'alice/alice-public has status "KernelWorkerStatus.' in r.stdout


def test_delete_removes_kernel_and_outputs(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """`kernels delete` removes the kernel: status then fails, the list is empty, the output folder is gone."""
    emulator.push("open('x.txt','w').write('x')", slug="doomed-kernel")
    emulator.wait_for_status("demo", "doomed-kernel")
    out_dir = emulator.output_dir("demo", "doomed-kernel")
    assert (out_dir / "x.txt").exists()
    r = kaggle_cli("kernels", "delete", "demo/doomed-kernel", "-y")
    assert r.returncode == 0 and "deleted successfully" in r.stdout, r.stdout + r.stderr
    assert not out_dir.exists()
    r = kaggle_cli("kernels", "status", "demo/doomed-kernel")
    assert r.returncode == 1 and "Cannot access kernel" in r.stderr
    assert "Not found" in kaggle_cli("kernels", "list", "--mine").stdout


def test_quota_moves_with_gpu_wall_time(emulator: EmulatorHandle, kaggle_cli: Cli, tmp_path: Path) -> None:
    """`kaggle quota` reports the wall time of a GPU session: 2.5 h pass (clock moved) while it runs."""
    r = kaggle_cli("quota")
    assert re.search(r"GPU\s+0\.00h\s+30\.00h\s+30\.00h", r.stdout), r.stdout + r.stderr
    flag = tmp_path / "go"
    folder = write_kernel(tmp_path / "k", "gpu-quota", WAIT_FOR_FLAG.format(flag=str(flag)),
                          machine_shape="NvidiaTeslaT4", enable_gpu="true")
    assert kaggle_cli("kernels", "push", "-p", str(folder)).returncode == 0
    emulator.wait_for_status("demo", "gpu-quota", statuses={"RUNNING"})
    emulator.control("clock", {"advance_seconds": 9000})
    flag.write_text("go")
    assert emulator.wait_for_status("demo", "gpu-quota") == "COMPLETE"
    r = kaggle_cli("quota")
    assert re.search(r"GPU\s+2\.50h\s+27\.50h\s+30\.00h", r.stdout), r.stdout
    assert re.search(r"TPU\s+0\.00h\s+20\.00h\s+20\.00h", r.stdout), r.stdout


def test_bad_credentials_get_401_and_token_auth_works(emulator: EmulatorHandle, kaggle_cli: Cli) -> None:
    """A wrong key is refused (the CLI prints its auth help); the demo token works through IntrospectToken."""
    r = kaggle_cli("kernels", "list", "--mine", env={"KAGGLE_KEY": "wrong"})
    assert r.returncode == 1 and "Authentication required" in r.stdout + r.stderr
    assert [x["status"] for x in emulator.requests("rpc")][-1] == 401
    emulator.push("print(1)", slug="token-visible")
    r = kaggle_cli("kernels", "list", "--mine",
                   env={"KAGGLE_USERNAME": "", "KAGGLE_KEY": "", "KAGGLE_API_TOKEN": C.DEMO_TOKEN})
    assert "demo/token-visible" in r.stdout, r.stdout + r.stderr
    assert any(x["name"] == "security.OAuthService/IntrospectToken" for x in emulator.requests("rpc"))


def test_absolute_form_targets_through_http_proxy(emulator: EmulatorHandle, kaggle_cli: Cli) -> None:
    """Recipe §3.2: LOCALHOST + HTTP_PROXY=emulator sends absolute-form targets, which the emulator serves."""
    emulator.push("print(1)", slug="proxy-visible")
    r = kaggle_cli("kernels", "list", "--mine",
                   env={"PYTHONPATH": "", "KAGGLE_EMULATOR_URL": "", "HTTP_PROXY": emulator.url, "NO_PROXY": ""})
    assert "demo/proxy-visible" in r.stdout, r.stdout + r.stderr
