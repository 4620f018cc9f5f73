"""The in-kernel runtime, exercised through real bundled scripts in subprocesses.

A killed run must still leave run.json, exit codes must be those of a plain ``python``
run, and input paths must resolve on both of Kaggle's mount layouts; so these tests
run generated scripts for real (fake /kaggle root) and kill them with real signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kagglekit.bundle import build_bundle, bundle_project
from kagglekit.run_options import RunOptions
from kagglekit.runtime import paths as rpaths
from kagglekit.runtime import session as rsession
from kagglekit.settings import load_project
from tests.test_bundle import read_run_json, run_kernel


def script_project(tmp_path: Path, train_py: str, toml_extra: str = "", name: str = "runtime-check") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "kagglekit.toml").write_text(f'kernel = "demo/{name}"\nentry = "train.py"\n{toml_extra}')
    (root / "train.py").write_text(train_py)
    return root


def bundle_script(tmp_path: Path, train_py: str, toml_extra: str = "", run: RunOptions | None = None) -> Path:
    root = script_project(tmp_path, train_py, toml_extra)
    return bundle_project(root, tmp_path / "out", run or RunOptions()).script_path


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize(("body", "code", "status"), [
    ("raise ValueError('bad shape 3x4')", 1, "error"),
    ("import sys; sys.exit(3)", 3, "error"),
    ("import sys; sys.exit('fatal: no data')", 1, "error"),
    ("import sys; sys.exit(0)", 0, "complete"),
    ("print('done')", 0, "complete"),
])
def test_exit_codes_propagate_and_run_json_records_them(tmp_path: Path, body: str, code: int,
                                                        status: str) -> None:
    script = bundle_script(tmp_path, f"def helper():\n    {body}\n\nhelper()\n")
    proc = run_kernel(script, tmp_path)
    assert proc.returncode == code, proc.stderr
    run = read_run_json(tmp_path)
    assert (run["status"], run["exit_code"]) == (status, code)
    assert run["ended_at"] is not None and run["duration_s"] >= 0
    if "ValueError" in body:
        assert "ValueError: bad shape 3x4" in proc.stderr and 'train.py", line 2, in helper' in proc.stderr
        assert "runpy" not in proc.stderr and "bootstrap.py" not in proc.stderr  # user frames only
        assert run["traceback_tail"].endswith("ValueError: bad shape 3x4")
    if "fatal" in body:
        assert "fatal: no data" in proc.stderr


def test_sigterm_mid_run_leaves_an_interrupted_run_json(tmp_path: Path) -> None:
    script = bundle_script(tmp_path, "import time\n\ndef train():\n    print('epoch 0', flush=True)\n"
                                     "    while True:\n        time.sleep(0.05)\n\ntrain()\n")
    proc = run_kernel(script, tmp_path, wait=False)
    try:
        manifest = tmp_path / "kaggle" / "working" / "kagglekit" / "run.json"
        wait_for(lambda: manifest.exists() and read_run_json(tmp_path)["last_seen_at"]
                 != read_run_json(tmp_path)["started_at"])
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    run = read_run_json(tmp_path)
    assert run["status"] == "interrupted" and run["exit_code"] == 143 and run["ended_at"]
    assert "in train" in run["traceback_tail"] and "SIGTERM" in run["traceback_tail"]


def test_sigkill_leaves_the_last_tick(tmp_path: Path) -> None:
    script = bundle_script(tmp_path, "import time\nwhile True:\n    time.sleep(0.05)\n")
    proc = run_kernel(script, tmp_path, wait=False)
    try:
        manifest = tmp_path / "kaggle" / "working" / "kagglekit" / "run.json"
        wait_for(lambda: manifest.exists() and read_run_json(tmp_path)["duration_s"] > 0.5)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    run = read_run_json(tmp_path)
    assert run["status"] == "running" and run["ended_at"] is None and run["duration_s"] > 0.5
    leftovers = [p.name for p in manifest.parent.iterdir() if p.name != "run.json"]
    assert leftovers == [] or all(n.endswith(".tmp") for n in leftovers)


def test_manifest_contents_packages_budget_warnings_and_no_env_values(tmp_path: Path) -> None:
    """Imported third-party modules map to distribution names; budget warnings fire; env values never leak."""
    secret = "SuperSecretTokenValue123"
    train = (
        "import time, os\n"
        "import dateutil, numpy, json\n"  # dateutil is distributed as python-dateutil
        "from kagglekit_runtime import should_stop, time_left, session_limit_s\n"
        "print('LEFT', round(time_left()), 'LIMIT', session_limit_s(), 'STOP', should_stop(1.0), should_stop(60.0))\n"
        "open('blob.bin', 'wb').write(b'x' * 850)\n"
        "time.sleep(0.8)\n"
        "open('blob.bin', 'wb').write(b'x' * 990)\n"
        "time.sleep(0.8)\n"
    )
    script = bundle_script(tmp_path, train, 'output-budget = 1000\ntimeout = "30s"\naccelerator = "gpu"\n')
    proc = run_kernel(script, tmp_path, env={"KAGGLE_USER_SECRETS_TOKEN": secret})
    assert proc.returncode == 0, proc.stderr
    # time_left() counts from the process start; importing numpy on a loaded machine may take seconds
    (left,) = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("LEFT ")]
    assert 20 <= left <= 30
    assert f"LEFT {left} LIMIT 30.0 STOP False True" in proc.stdout
    assert proc.stderr.count("WARNING") == 2 and not re.search(r"(?<!\d)80%", proc.stderr.split("WARNING")[2])
    run = read_run_json(tmp_path)
    import dateutil
    import numpy

    assert run["packages"].get("numpy") == numpy.__version__
    assert run["packages"].get("python-dateutil") == dateutil.__version__
    assert "json" not in run["packages"] and "kagglekit" not in json.dumps(run["packages"])
    assert run["accelerator"] == {"requested": "NvidiaTeslaT4", "seen": "cpu", "devices": []}
    assert run["session_limit_s"] == 30 and run["output_budget_bytes"] == 1000
    assert run["peak_working_bytes"] >= 990 and run["peak_rss_bytes"] > 10_000_000
    assert run["python"].count(".") == 2 and run["kernel"] == "demo/runtime-check"
    for text in (proc.stdout, proc.stderr, json.dumps(run)):
        assert secret not in text


def test_input_path_resolves_inside_a_kernel_on_the_legacy_layout(tmp_path: Path) -> None:
    train = ("from kagglekit_runtime import input_path\n"
             "p = input_path('dataset', 'alice/digits', 'train.csv')\n"
             "print('ROWS', len(p.read_text().splitlines()), p.parent.name)\n")
    script = bundle_script(tmp_path, train)
    legacy = tmp_path / "kaggle" / "input" / "digits"
    legacy.mkdir(parents=True)
    (legacy / "train.csv").write_text("a\nb\nc\n")
    proc = run_kernel(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ROWS 3 digits" in proc.stdout


def test_damaged_archive_is_refused(tmp_path: Path) -> None:
    script = bundle_script(tmp_path, "print('never')\n")
    text = script.read_text()
    start = text.index('ARCHIVE = """\n') + len('ARCHIVE = """\n') + 200
    swapped = "A" if text[start] != "A" else "B"
    script.write_text(text[:start] + swapped + text[start + 1:])
    proc = run_kernel(script, tmp_path)
    assert proc.returncode == 2 and "damaged" in proc.stderr and "never" not in proc.stdout


# --- input_path and the session helpers, in-process -------------------------------------------

@pytest.fixture
def kroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_KERNEL_ROOT", str(root))
    return root


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def test_input_path_current_layout(kroot: Path) -> None:
    i = kroot / "input"
    f = touch(i / "datasets" / "alice" / "digits" / "train.csv")
    assert rpaths.input_path("dataset", "alice/digits", "train.csv") == f
    assert rpaths.input_path("datasets", "alice/digits/3") == f.parent  # a version is not in the mount path
    assert rpaths.input_path("dataset", "digits") == f.parent  # owner unknown: any owner
    c = touch(i / "competitions" / "titanic" / "test.csv")
    assert rpaths.input_path("competition", "titanic", "test.csv") == c
    n = touch(i / "notebooks" / "bob" / "feature-maker" / "feats.parquet")
    assert rpaths.input_path("notebook", "bob/feature-maker", "feats.parquet") == n
    m1 = touch(i / "models" / "google" / "gemma" / "pytorch" / "2b" / "1" / "w.bin")
    m2 = touch(i / "models" / "google" / "gemma" / "pytorch" / "2b" / "3" / "w.bin")
    assert rpaths.input_path("model", "google/gemma/pytorch/2b/1", "w.bin") == m1
    assert rpaths.input_path("model", "google/gemma/pytorch/2b", "w.bin") == m2  # latest version
    # Handles spell the framework in mixed case; mounts are lower case.
    assert rpaths.input_path("model", "google/gemma/pyTorch/2b", "w.bin") == m2
    assert rpaths.input_path("model", "google/gemma/PyTorch/2b/1") == m1.parent


def test_input_path_legacy_layout_and_the_not_found_message(kroot: Path) -> None:
    i = kroot / "input"
    f = touch(i / "digits" / "train.csv")
    assert rpaths.input_path("dataset", "alice/digits", "train.csv") == f
    c = touch(i / "titanic" / "train.csv")
    assert rpaths.input_path("competition", "titanic", "train.csv") == c
    m = touch(i / "gemma" / "pytorch" / "2b" / "1" / "w.bin")
    assert rpaths.input_path("model", "google/gemma/pytorch/2b/1", "w.bin") == m
    moved = touch(i / "somewhere" / "else" / "cifar" / "meta.json")  # layout changed again: found by searching
    assert rpaths.input_path("dataset", "carol/cifar", "meta.json") == moved
    with pytest.raises(FileNotFoundError) as err:
        rpaths.input_path("dataset", "alice/mnist-png", "x.csv")
    assert "datasets/alice/mnist-png" in str(err.value) and "sources" in str(err.value)
    with pytest.raises(ValueError):
        rpaths.input_path("volume", "x")


def test_working_dir_and_mode_helpers(kroot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert rpaths.working_dir() == kroot / "working"
    monkeypatch.delenv("KAGGLE_KERNEL_ROOT")
    assert rpaths.working_dir() == Path("/kaggle/working")
    monkeypatch.setenv("KAGGLEKIT_MODE", "test")
    assert rsession.mode() == "test" and rsession.running_test() is True
    monkeypatch.setenv("KAGGLEKIT_MODE", "full")
    monkeypatch.setenv("KAGGLEKIT_RUNNING_TEST", "0")
    assert rsession.mode() == "full" and rsession.running_test() is False
    monkeypatch.setenv("KAGGLEKIT_SESSION_LIMIT_SECONDS", "3600")
    monkeypatch.setenv("KAGGLEKIT_STARTED_AT", repr(time.time() - 3300))
    assert 290 < rsession.time_left() <= 300
    assert rsession.should_stop() is True  # default margin: min(15 min, 10%) = 360 s > 300 s left
    assert rsession.should_stop(margin_s=60) is False


def test_runtime_uses_only_the_standard_library() -> None:
    """It runs inside Kaggle's image with nothing of kagglekit installed."""
    import ast
    import sys

    folder = Path(rpaths.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                assert name in sys.stdlib_module_names or name == "__future__", (path.name, name)


def test_env_values_are_not_in_the_script(tmp_path: Path) -> None:
    os.environ["KAGGLEKIT_TEST_CANARY"] = "canary-value-42"
    try:
        script = bundle_script(tmp_path, "print(1)\n")
    finally:
        del os.environ["KAGGLEKIT_TEST_CANARY"]
    assert "canary-value-42" not in script.read_text()
    proc = subprocess.run(["python3", "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())", str(script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0


@pytest.mark.parametrize("layout", ["notebooks/demo/prev-run", "prev-run"])
def test_resume_copies_the_previous_runs_checkpoints_into_working(tmp_path: Path, layout: str) -> None:
    """push --resume: the previous version's output is mounted as an input; its checkpoints land in working."""
    root = script_project(tmp_path, "import os\nprint('FOUND', sorted(os.listdir('.')), "
                                    "open('checkpoint.pt').read(), os.environ['KAGGLEKIT_RESUME_FROM'])\n",
                          'checkpoints = ["checkpoint*.pt"]\n')
    result = build_bundle(load_project(root), out_dir=tmp_path / "out", resume_from="demo/prev-run/4")
    assert result.metadata["kernel_sources"] == ["demo/prev-run/4"]
    prev = tmp_path / "kaggle" / "input" / layout
    touch(prev / "checkpoint.pt").write_text("epoch=7")
    touch(prev / "metrics.jsonl")
    touch(prev / "kagglekit" / "run.json")
    proc = run_kernel(result.script_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "FOUND ['checkpoint.pt', 'kagglekit'] epoch=7 demo/prev-run/4" in proc.stdout
    run = read_run_json(tmp_path)
    assert run["resume_from"] == "demo/prev-run/4" and run["restored_files"] == ["checkpoint.pt"]


def test_gpus_listed_by_nvidia_smi_are_recorded(tmp_path: Path) -> None:
    """No GPU here: a stand-in nvidia-smi prints the real `-L` format, so the parsing and `seen` are checked."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "nvidia-smi"
    fake.write_text("#!/bin/sh\n[ \"$1\" = \"-L\" ] || exit 9\n"
                    "echo 'GPU 0: Tesla T4 (UUID: GPU-0b6e0c2a-1f3e-4b4e-9d0e-1a2b3c4d5e6f)'\n"
                    "echo 'GPU 1: Tesla T4 (UUID: GPU-7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d)'\n")
    fake.chmod(0o755)
    script = bundle_script(tmp_path, "import time\ntime.sleep(0.5)\n", 'accelerator = "gpu"\n')
    proc = run_kernel(script, tmp_path, env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert read_run_json(tmp_path)["accelerator"] == {"requested": "NvidiaTeslaT4", "seen": "cuda",
                                                      "devices": ["Tesla T4", "Tesla T4"]}


# --- fork safety, refused resume, watchdog cost, CUDA, child output -------------------------------

def run_kernel_group(script: Path, tmp: Path, *, stall_s: float, env: dict[str, str] | None = None) -> Any:
    """Like run_kernel, with a watchdog tick every 10 ms; on a hang its forked workers are killed with it.

    A hang is judged by progress, not by a total wall-clock guess: the entry prints a line per step, and
    the run has hung when no new line comes for ``stall_s`` seconds (a deadlock never prints again, while a
    loaded machine only makes every step slower)."""
    proc = run_kernel(script, tmp, wait=False, env={"KAGGLEKIT_WATCHDOG_INTERVAL": "0.01", **(env or {})})
    out: list[str] = []
    err: list[str] = []

    def drain(stream: Any, into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            into.append(line)

    readers = [threading.Thread(target=drain, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    seen, last_progress = 0, time.monotonic()
    while proc.poll() is None:
        time.sleep(0.05)
        if len(out) != seen:
            seen, last_progress = len(out), time.monotonic()
        elif time.monotonic() - last_progress > stall_s:
            with_children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                            text=True).stdout.split()]
            for pid in [proc.pid, *with_children]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(f"the run hung: no progress for {stall_s} s after {out[-1:] or 'no output'} "
                                 "(forked workers deadlocked?)")
    for t in readers:
        t.join(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), "".join(err))


def test_fork_pool_terminate_does_not_hang_or_touch_run_json(tmp_path: Path) -> None:
    """Pool.terminate() SIGTERMs forked workers; they must die at once, not run the bootstrap's handler.

    The watchdog ticks every 10 ms (it holds the manifest lock often), and the entry forks
    many pools, so a fork while the lock is held, which used to hang the kernel, is likely.
    """
    train = ("import multiprocessing as mp, os, signal\n"
             "def square(x):\n    return x * x\n"
             "total = 0\n"
             "for step in range(25):\n"
             "    with mp.get_context('fork').Pool(4) as pool:\n"
             "        total += sum(pool.map(square, range(40)))\n"
             "    print('POOL', step, flush=True)\n"
             "ready_r, ready_w = os.pipe()\n"  # a plain forked child, SIGTERMed once it runs: default action
             "pid = os.fork()\n"
             "if pid == 0:\n    os.write(ready_w, b'1')\n    while True:\n        signal.pause()\n"
             "os.read(ready_r, 1)\n"
             "os.kill(pid, signal.SIGTERM)\n"
             "print('CHILD', os.waitpid(pid, 0)[1] & 0x7F == signal.SIGTERM, 'TOTAL', total, flush=True)\n")
    script = bundle_script(tmp_path, train)
    proc = run_kernel_group(script, tmp_path, stall_s=60)
    assert proc.returncode == 0, proc.stderr
    assert f"CHILD True TOTAL {25 * sum(x * x for x in range(40))}" in proc.stdout
    run = read_run_json(tmp_path)
    assert (run["status"], run["exit_code"]) == ("complete", 0)
    assert "SIGTERM" not in proc.stderr and "interrupted" not in json.dumps(run)


@pytest.mark.parametrize("mounted", [True, False])
def test_a_resume_that_restores_nothing_stops_before_the_entry(tmp_path: Path, mounted: bool) -> None:
    """Training from scratch for hours when a resume was asked for wastes the GPU quota: refuse instead."""
    root = script_project(tmp_path, "print('ENTRY RAN')\n", 'checkpoints = ["checkpoint*.pt"]\n')
    result = build_bundle(load_project(root), out_dir=tmp_path / "out", resume_from="demo/prev-run/4")
    if mounted:
        touch(tmp_path / "kaggle" / "input" / "notebooks" / "demo" / "prev-run" / "metrics.jsonl")
    proc = run_kernel(result.script_path, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "ENTRY RAN" not in proc.stdout
    assert "demo/prev-run/4" in proc.stderr and "checkpoint*.pt" in proc.stderr
    if mounted:
        assert "notebooks/demo/prev-run" in proc.stderr and "metrics.jsonl" in proc.stderr
    else:
        assert "not mounted" in proc.stderr
    run = read_run_json(tmp_path)
    assert (run["status"], run["exit_code"], run["restored_files"]) == ("error", 3, [])
    assert "checkpoint*.pt" in run["traceback_tail"]


def test_watchdog_walk_is_adaptive_and_finish_writes_the_status_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow walk of /kaggle/working (many files) must not eat the CPU every tick, nor delay the final status."""
    from kagglekit.runtime import manifest as rmanifest

    real_walk = rmanifest.tree_bytes
    walks: list[str | None] = []

    def slow_walk(root: Path) -> int:
        run_json = root / "kagglekit" / "run.json"
        walks.append(json.loads(run_json.read_text())["status"] if run_json.exists() else None)
        time.sleep(0.01)  # 50 x 10 ms: the next walk no sooner than 0.5 s later
        return real_walk(root)

    monkeypatch.setattr(rmanifest, "tree_bytes", slow_walk)
    m = rmanifest.RunManifest(tmp_path, {}, interval_s=0.01, output_budget_bytes=0, skip_under=[],
                              started_at=time.time())
    m.write()
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        m.tick(full=False)
        time.sleep(0.01)
    assert len(walks) == 1 and m.data["peak_working_bytes"] >= 100
    (tmp_path / "b.bin").write_bytes(b"x" * 5000)
    m.finish("complete", 0)
    assert walks[-1] == "complete"  # the final walk ran after the status was on disk
    assert json.loads(m.path.read_text())["peak_working_bytes"] >= 5100


def test_watchdog_never_initialises_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calling torch.cuda from the watchdog would create a CUDA context the project did not ask for."""
    import types

    from kagglekit.runtime import manifest as rmanifest

    calls: list[str] = []
    cuda = types.SimpleNamespace(
        is_initialized=lambda: False,
        is_available=lambda: calls.append("is_available") or True,
        device_count=lambda: calls.append("device_count") or 1,
        get_device_name=lambda i: calls.append("get_device_name") or "Tesla T4",
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert rmanifest.torch_devices() == [] and calls == []
    cuda.is_initialized = lambda: True
    assert rmanifest.torch_devices() == ["Tesla T4"] and "get_device_name" in calls


def test_child_process_output_survives_a_kill(tmp_path: Path) -> None:
    """A subprocess writing to a pipe is block-buffered; killed, its lines would be lost from the log."""
    train = ("import subprocess, sys\n"
             "subprocess.run([sys.executable, '-c', \"import os, signal; print('CHILD LINE'); "
             "os.kill(os.getpid(), signal.SIGKILL)\"])\n")
    script = bundle_script(tmp_path, train)
    proc = run_kernel(script, tmp_path, env={"PYTHONUNBUFFERED": ""})
    assert proc.returncode == 0, proc.stderr
    assert "CHILD LINE" in proc.stdout


def test_model_fallback_search_finds_the_version_folder_not_the_model_root(kroot: Path) -> None:
    """A layout we do not know: the search must still land on framework/variation/version."""
    w = touch(kroot / "input" / "odd-place" / "gemma" / "pytorch" / "2b" / "2" / "w.bin")
    touch(kroot / "input" / "odd-place" / "gemma" / "README.md")
    assert rpaths.input_path("model", "google/gemma/pyTorch/2b", "w.bin") == w
    assert rpaths.input_path("model", "google/gemma/pytorch/2b/2") == w.parent
    with pytest.raises(FileNotFoundError):
        rpaths.input_path("model", "google/gemma/pytorch/7b", "w.bin")


# --- the resume relay: session identity and training progress (issue 12) --------------------------

def test_session_id_from_the_container_name_is_logged_and_recorded(tmp_path: Path) -> None:
    """Kaggle's KAGGLE_CONTAINER_NAME carries the session id CancelKernelSession needs; nothing else does."""
    script = bundle_script(tmp_path, "print('ok')\n")
    proc = run_kernel(script, tmp_path, env={"KAGGLE_CONTAINER_NAME": "kaggle_3f9a1c-270000042-webtier"})
    assert proc.returncode == 0, proc.stderr
    assert "kagglekit: kernel session id 270000042" in proc.stdout
    assert "3f9a1c" not in proc.stdout  # the rest of the container name is not printed
    assert read_run_json(tmp_path)["session_id"] == 270000042


def test_no_container_name_no_session_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "kaggle_abc-webtier", "something-else"):
        monkeypatch.setenv("KAGGLE_CONTAINER_NAME", value)
        assert rsession.session_id() is None
    monkeypatch.setenv("KAGGLE_CONTAINER_NAME", "kaggle_x-12-webtier")
    assert rsession.session_id() == 12


def test_reported_progress_reaches_run_json(tmp_path: Path) -> None:
    """The project says how far it got and whether it finished; run.json carries it as `training`."""
    body = ("from kagglekit_runtime import report_progress\n"
            "for epoch in (5, 6, 7):\n"
            "    report_progress(epoch, 20)\n"
            "report_progress(7, 20, finished=False, reason='time')\n")
    script = bundle_script(tmp_path, body)
    proc = run_kernel(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    training = read_run_json(tmp_path)["training"]
    assert {k: training[k] for k in ("epoch", "total", "first_epoch", "finished", "reason")} == \
        {"epoch": 7, "total": 20, "first_epoch": 5, "finished": False, "reason": "time"}


def test_a_run_that_reports_nothing_has_no_training_block(tmp_path: Path) -> None:
    script = bundle_script(tmp_path, "print('no progress reported')\n")
    assert run_kernel(script, tmp_path).returncode == 0
    assert read_run_json(tmp_path)["training"] is None
