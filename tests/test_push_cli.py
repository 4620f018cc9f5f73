"""push / status / logs / pull-outputs, as a user types them, against the emulator.

Every command here is the real ``kagglekit`` entry point (``cli.main``), talking
over HTTP through the real kagglesdk client to an emulator that runs the bundled
script in a subprocess. Nothing about Kaggle is mocked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from tests.helpers import write

CONFIG = """\
    import os


    class Config:
        at_cloud = 'kaggle/working' in os.getcwd()
        n_example = 1000
        n_epoch = 20
        lr = 0.01
        running_test = True  # flipped by kagglekit push --test/--full in the bundled copy
"""

TRAIN = """\
    import json, os
    from mypkg.config import Config
    from mypkg.helpers import double

    print("training", Config.running_test, Config.n_epoch, flush=True)
    with open("result.json", "w") as f:
        json.dump({"running_test": Config.running_test, "n_epoch": Config.n_epoch, "lr": Config.lr,
                   "double": double(21), "at_cloud": Config.at_cloud,
                   "mode_env": os.environ.get("KAGGLEKIT_MODE")}, f)
    os.makedirs("sub", exist_ok=True)
    open("sub/model.pt", "wb").write(b"w" * 1000)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A multi-module project: a package, a config, an entry module, and a data folder to leave out."""
    root = write(tmp_path / "proj", {
        "pyproject.toml": """\
            [tool.kagglekit]
            kernel = "multi-module"
            entry = "mypkg.train"
            test-flag = "mypkg/config.py:Config.running_test"
        """,
        "mypkg/__init__.py": "",
        "mypkg/config.py": CONFIG,
        "mypkg/helpers.py": "def double(x):\n    return 2 * x\n",
        "mypkg/train.py": TRAIN,
    })
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * (3 * 1024 * 1024))  # would break the 1 MiB limit
    return root


def pulled_result(root: Path, version: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((root / "outputs" / "multi-module" / f"v{version}" / "result.json").read_text())
    return result


def test_test_then_full_mode_runs_prove_mode_and_overrides(kk: Any, project: Path) -> None:
    before = (project / "mypkg" / "config.py").read_text()

    code, out, err = kk("push", "--cpu", "--test", "--wait", "--interval", "0.3", cwd=project)
    assert code == 0, err
    assert "Pushed demo/multi-module version 1" in out
    assert "running_test = True (already so)" in out  # what the toggle did (here: nothing to change)
    assert kk("pull-outputs", cwd=project)[0] == 0
    assert pulled_result(project, 1) == {"running_test": True, "n_epoch": 20, "lr": 0.01, "double": 42,
                                         "at_cloud": True, "mode_env": "test"}

    code, out, err = kk("push", "--cpu", "--full", "--set", "n_epoch=1", "--set", "lr=0.5", "--wait",
                        "--interval", "0.3", cwd=project)
    assert code == 0, err
    assert "running_test: True → False" in out and "n_epoch: 20 → 1" in out
    assert kk("pull-outputs", cwd=project)[0] == 0
    assert pulled_result(project, 2) == {"running_test": False, "n_epoch": 1, "lr": 0.5, "double": 42,
                                         "at_cloud": True, "mode_env": "full"}
    # The sub-folder file came back, the local config was never touched, the ledger knows both runs.
    assert (project / "outputs" / "multi-module" / "v2" / "sub" / "model.pt").stat().st_size == 1000
    assert (project / "mypkg" / "config.py").read_text() == before
    code, out, _ = kk("--json", "runs", cwd=project)
    runs = json.loads(out)
    assert [(r["version"], r["mode"], r["status"]) for r in runs] == [(1, "test", "COMPLETE"), (2, "full", "COMPLETE")]


def test_a_push_says_how_the_code_and_requirements_travel_once(kk: Any, project: Path) -> None:
    (project / "requirements.txt").write_text("numpy\n")
    code, out, err = kk("push", "--cpu", cwd=project)
    assert code == 0, out + err
    both = out + err
    assert both.count("in the one kernel script") == 1 and "code inline, in the one kernel script" in out  # once
    assert "script " in out and " kB, bundle " in out and "KiB" not in both  # one unit: display.size's
    assert both.count("already in Kaggle's image") == 1 and "Requirements:" not in err


def test_seed_style_runing_test_is_toggled_and_local_file_unchanged(kk: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "seed", {
        "kagglekit.toml": 'kernel = "seed-style"\nentry = "main.py"\n',
        "main.py": """\
            import os

            class Config:
                data_path = '../input/x'
                runing_test = True   # the notes' spelling
                n_example = 20 if runing_test else 10000

            print("RUNING_TEST", Config.runing_test, "N", Config.n_example)
        """,
    })
    before = (root / "main.py").read_text()
    code, out, err = kk("push", "--cpu", "--full", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, err
    assert "runing_test: True → False" in out
    code, log, _ = kk("logs", cwd=root)
    assert code == 0 and "RUNING_TEST False N 10000" in log
    assert (root / "main.py").read_text() == before


def test_failing_kernel_gives_nonzero_watch_with_traceback_tail(kk: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "boom", {
        "kagglekit.toml": 'kernel = "boom-kernel"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": "print('starting')\ndef train():\n    raise ValueError('shape mismatch in layer 3')\ntrain()\n",
    })
    code, out, err = kk("push", "--cpu", cwd=root)
    assert code == 0, err
    code, out, err = kk("status", "--watch", "--interval", "0.3", cwd=root)
    assert code == 8, (out, err)
    assert "ERROR" in out
    assert "ValueError: shape mismatch in layer 3" in err  # the log tail, in the error message
    assert "logs demo/boom-kernel/1" in err  # and where to read the rest


@pytest.mark.parametrize("window, said", [
    ({"new_private_403_seconds": 60, "run_start_delay_seconds": 60}, "just pushed, and Kaggle does not show it yet"),
    ({"new_private_403_seconds": 0.2, "run_start_delay_seconds": 60}, "pushed but not started: Kaggle has no run"),
])
def test_resuming_from_a_push_that_has_not_started_says_so(kk: Any, emulator: Any, tmp_path: Path,
                                                          window: dict[str, float], said: str) -> None:
    """Right after a push Kaggle answers 403 (a new private kernel) or 404 "No runs found" (no session yet):
    --resume must say the run has not ended, not that the kernel has no version."""
    emulator.control("config", window)
    root = write(tmp_path / "fresh", {"kagglekit.toml": 'kernel = "fresh-kernel"\nentry = "main.py"\n'
                                                         'test-flag = false\n', "main.py": "print(1)\n"})
    assert kk("push", cwd=root)[0] == 0
    time.sleep(0.5)  # past the short 403 window of the second case
    code, out, err = kk("push", "--resume", cwd=root)
    assert code == 1 and said in err and "no checkpoint to resume from yet" in err, (out, err)
    assert "has no version on Kaggle" not in err


def test_session_cap_and_quota_refusals_are_clear_errors(kk: Any, emulator: Any, tmp_path: Path) -> None:
    # No 403 window nor start delay for a new kernel: the resume below reads the running one at once.
    emulator.control("config", {"max_sessions": {"gpu": 2, "cpu": 5, "tpu": 2}, "new_private_403_seconds": 0,
                                "run_start_delay_seconds": 0})
    roots = []
    for i in range(3):
        roots.append(write(tmp_path / f"k{i}", {
            "kagglekit.toml": f'kernel = "sleepy-{i}"\nentry = "main.py"\ntest-flag = false\n',
            "main.py": "import time\ntime.sleep(30)\n",
        }))
    assert kk("push", "--gpu", cwd=roots[0])[0] == 0
    assert kk("push", "--gpu", cwd=roots[1])[0] == 0
    prefix = f"kagglekit --endpoint {emulator.url}"  # how kk invokes it: hints name the command so
    code, out, err = kk("push", "--gpu", cwd=roots[2])
    assert code == 6, (out, err)
    assert "Maximum batch GPU session count of 2 reached." in err
    assert "already running" in err  # kagglekit's own preflight warned before sending
    assert f"finish ({prefix} status), then push again" in err  # the API client's hint, completed

    # Resuming from a session still running is refused (chain.plan_resume), and so is one never pushed.
    code, out, err = kk("push", "--gpu", "--resume", cwd=roots[0])
    assert code == 1 and "no checkpoint to resume from yet" in err, (out, err)
    assert f"Wait for it ({prefix} status --watch), or let `{prefix} push --resume --until-done`" in err
    code, out, err = kk("push", "--cpu", "--resume-from", "demo/never-pushed", cwd=roots[2])
    assert code == 5 and "nothing to resume from" in err, (out, err)
    assert f"({prefix} push), then resume from that run; `{prefix} runs` lists" in err

    emulator.control("usage", {"username": C.DEMO_USERNAME, "kind": "tpu", "seconds": 20 * 3600})
    code, out, err = kk("push", "--tpu", cwd=roots[2])
    assert code == 6, (out, err)
    assert "Maximum weekly TPU quota of 20.00 hours reached." in err
    assert f"`{prefix} quota` shows the week." in err  # quota.explain_refusal's hint


def test_dry_run_sends_nothing_and_shows_the_metadata(kk: Any, emulator: Any, project: Path) -> None:
    code, out, err = kk("push", "--gpu", "--full", "--dry-run", cwd=project)
    assert code == 0, err
    assert "Dry run: nothing was sent" in out
    assert '"machine_shape": "NvidiaTeslaT4"' in out and '"enable_internet": true' in out
    assert not [r for r in emulator.requests() if "SaveKernel" in r["path"]]


def test_local_dry_run_starts_no_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A dry run sends nothing, so under --local it need not start the emulator: the owner is the demo account."""
    from kagglekit import local, paths
    from tests.helpers import run_main

    monkeypatch.chdir(write(tmp_path / "dry", {"kagglekit.toml": 'kernel = "dry-local"\nentry = "main.py"\n',
                                               "main.py": "print('hi')\n"}))
    code, out, err = run_main(["--local", "push", "--gpu", "--dry-run"], capsys)
    assert code == 0, err
    assert f"This would push {C.DEMO_USERNAME}/dry-local:" in out and '"id": "demo/dry-local"' in out
    assert "Started the local Kaggle emulator" not in err
    assert not paths.emulator_state_path().exists() and local.status() is None


def test_after_test_stops_when_the_test_run_fails(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "gate", {
        "kagglekit.toml": 'kernel = "gated-run"\nentry = "main.py"\n',
        "main.py": """\
            class Config:
                running_test = False

            if Config.running_test:
                raise SystemExit("the test mode found a bug")
            print("full run")
        """,
    })
    code, out, err = kk("push", "--gpu", "--full", "--after-test", "--interval", "0.3", cwd=root)
    assert code == 8, (out, err)
    assert "the test mode found a bug" in err
    saves = [r for r in emulator.requests() if r["path"].endswith("/SaveKernel")]
    assert len(saves) == 1  # the full run was never pushed


def test_commands_outside_a_project_ask_for_a_kernel(kk: Any, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-project"
    empty.mkdir()
    for cmd in (["status"], ["logs"], ["pull-outputs"]):
        code, out, err = kk(*cmd, cwd=empty)
        assert code == 3, (cmd, out, err)
        assert "No KERNEL given" in err


def test_push_leaves_no_bundle_folder_behind(kk: Any, project: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    code, _, err = kk("push", "--cpu", "--test", cwd=project)
    assert code == 0, err
    assert list(scratch.iterdir()) == []


def test_global_options_also_work_after_the_command(kk: Any, project: Path) -> None:
    code, out, err = kk("push", "--cpu", "--test", "--wait", "--interval", "0.3", "--json", cwd=project)
    assert code == 0, err
    assert json.loads(out)["final_status"] == "COMPLETE"  # --json after the command name took effect
    code, out, err = kk("status", "--json", "-v", cwd=project)
    assert code == 0 and json.loads(out)["status"] == "COMPLETE"


def test_resume_keeps_the_parent_runs_mode_and_overrides(kk: Any, project: Path) -> None:
    assert kk("push", "--cpu", "--full", "--set", "n_epoch=3", "--set", "lr=0.5", "--wait", "--interval", "0.3",
              cwd=project)[0] == 0
    code, _, err = kk("push", "--cpu", "--resume", "--set", "lr=0.25", "--wait", "--interval", "0.3", cwd=project)
    assert code == 0, err
    assert "Resuming in full mode, as demo/multi-module/1 ran" in err
    assert "Resuming with demo/multi-module/1's overrides: n_epoch=3 (--set NAME=VALUE to change)" in err
    assert kk("pull-outputs", cwd=project)[0] == 0  # the resumed session ran on the relay sibling
    result = json.loads((project / "outputs" / "multi-module-relay" / "v1" / "result.json").read_text())
    assert (result["running_test"], result["n_epoch"], result["lr"]) == (False, 3, 0.25)
    code, _, err = kk("push", "--cpu", "--test", "--resume", "--dry-run", cwd=project)
    assert code == 0 and "ran in full mode and this run is test mode" in err


ARGS_TRAIN = """\
    import json, sys
    print("argv", sys.argv[1:], flush=True)
    json.dump({"argv": sys.argv[1:]}, open("result.json", "w"))
    open("checkpoint.pt", "wb").write(b"state")  # --resume refuses a parent that left no checkpoint
"""


def test_resume_reuses_the_parent_pushs_arguments_after_the_double_dash(kk: Any, tmp_path: Path) -> None:
    """`push --resume` used to drop what the first push gave after `--`: the resumed session ran other code paths.
    A bare `--` used to be no way to drop them."""
    root = write(tmp_path / "args-proj", {
        "kagglekit.toml": 'kernel = "demo/args-proj"\nentry = "train.py"\ntest-flag = false\nargs = ["--seed", "1"]\n',
        "train.py": ARGS_TRAIN,
    })

    def argv(kernel: str, version: int) -> list[str]:
        assert kk("pull-outputs", f"demo/{kernel}/{version}", cwd=root)[0] == 0
        got: list[str] = json.loads((root / "outputs" / kernel / f"v{version}" / "result.json").read_text())["argv"]
        return got

    code, out, err = kk("push", "--cpu", "--full", "--wait", "--interval", "0.3", "--", "--fold", "3", cwd=root)
    assert code == 0, err
    assert argv("args-proj", 1) == ["--seed", "1", "--fold", "3"]
    code, out, err = kk("push", "--cpu", "--resume", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, err
    assert "Resuming with demo/args-proj/1's arguments after --: --fold 3 (give new ones after -- to change them)" in err
    assert "arguments: --seed 1 --fold 3" in out  # the push's own summary says what the entry point gets
    assert argv("args-proj-relay", 1) == ["--seed", "1", "--fold", "3"]
    # New arguments after -- win, and are not merged with the parent's.
    code, out, err = kk("push", "--cpu", "--resume", "--wait", "--interval", "0.3", "--", "--fold", "4", cwd=root)
    assert code == 0, err
    assert "arguments after --" not in err and "arguments: --seed 1 --fold 4" in out
    assert argv("args-proj", 2) == ["--seed", "1", "--fold", "4"]
    # A `--` that is an option's value does not end the options: the parent's arguments are still reused.
    code, out, err = kk("push", "--cpu", "--resume", "--dry-run", "-m", "--", cwd=root)
    assert code == 0, err
    assert "Resuming with demo/args-proj/2's arguments after --: --fold 4" in err
    # A bare `--` means no arguments: the parent's are dropped, and the push says so.
    code, out, err = kk("push", "--cpu", "--resume", "--wait", "--interval", "0.3", "--", cwd=root)
    assert code == 0, err
    assert "Resuming without demo/args-proj/2's arguments after --: --fold 4 (an empty -- was given)" in err
    assert "arguments: --seed 1\n" in out
    assert argv("args-proj-relay", 2) == ["--seed", "1"]
    # The settings' own args changed since: the split cannot be told, so nothing is carried, and it says so.
    (root / "kagglekit.toml").write_text('kernel = "demo/args-proj"\nentry = "train.py"\ntest-flag = false\n'
                                         'args = ["--seed", "2"]\n')
    code, out, err = kk("push", "--cpu", "--resume-from", "demo/args-proj/2", "--dry-run", cwd=root)
    assert code == 0, err
    assert "ran with the arguments --seed 1 --fold 4, which do not start with the project's args" in err
    assert "arguments: --seed 2\n" in out


def test_following_a_failing_run_exits_like_status_watch(kk: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "follow", {
        "kagglekit.toml": 'kernel = "follow-fail"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": "import time\nprint('working', flush=True)\ntime.sleep(1)\nraise SystemExit(3)\n",
    })
    assert kk("push", "--cpu", cwd=root)[0] == 0
    code, out, err = kk("logs", "-f", cwd=root)
    assert "working" in out
    assert code == 8, (out, err)
    assert "ERROR" in err


def test_filters_that_select_nothing_and_resume_without_checkpoint_are_said(kk: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "nockpt", {
        "kagglekit.toml": 'kernel = "no-checkpoint"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": "open('submission.csv', 'w').write('id,y\\n1,0\\n')\n",
    })
    assert kk("push", "--cpu", "--wait", "--interval", "0.3", cwd=root)[0] == 0
    code, _, err = kk("pull-outputs", "--include", "*.nomatch", cwd=root)
    assert code == 0, err
    assert "No output file of demo/no-checkpoint v1 matches --include *.nomatch" in err
    assert not (root / "outputs" / "no-checkpoint" / "v1" / "submission.csv").exists()
    code, _, err = kk("push", "--cpu", "--resume", "--dry-run", cwd=root)
    assert code == 0, err
    assert "demo/no-checkpoint v1 left no file matching the checkpoint patterns" in err


def test_ctrl_c_stops_watching_and_leaves_the_run_alone(emulator: Any, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    root = write(tmp_path / "sleepy", {
        "kagglekit.toml": 'kernel = "sleepy-watch"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": "import time\ntime.sleep(300)\n",  # still RUNNING when checked, even under load
    })
    env = {**os.environ, "KAGGLE_USERNAME": C.DEMO_USERNAME, "KAGGLE_KEY": C.DEMO_KEY,
           "KAGGLEKIT_ENDPOINT": emulator.url}
    kk_cmd = [sys.executable, "-m", "kagglekit"]
    subprocess.run([*kk_cmd, "push", "--cpu"], cwd=root, env=env, check=True, capture_output=True)
    emulator.wait_for_status("demo", "sleepy-watch", statuses={"RUNNING"}, timeout=30)
    proc = subprocess.Popen([*kk_cmd, "status", "--watch", "--interval", "0.3"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "RUNNING" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Stopped watching. The run keeps running on Kaggle" in err and "Traceback" not in err
    assert emulator.status("demo", "sleepy-watch")[0] == "RUNNING"


def test_status_never_reports_the_previous_run_as_the_new_one(kk: Any, tmp_path: Path) -> None:
    """Right after a push Kaggle may still describe the last run: status must say the new one is queued."""
    from kagglekit.ledger import Ledger

    root = write(tmp_path / "stale", {
        "kagglekit.toml": 'kernel = "stale-view"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": "raise SystemExit(1)\n",
    })
    assert kk("push", "--cpu", "--wait", "--interval", "0.3", cwd=root)[0] == 8  # v1 ended in ERROR
    # A v2 that kagglekit pushed but the API does not show yet (the window right after SaveKernel).
    Ledger().record_push(f"{C.DEMO_USERNAME}@local", "demo/stale-view", 2, mode="full", machine_shape="None")
    code, out, err = kk("status", cwd=root)
    assert code == 0, err
    assert out.startswith("demo/stale-view v2: QUEUED") and "has not registered v2 yet" in out
    assert "ERROR" not in out  # v1's status is not passed off as v2's
    code, out, _ = kk("status", "demo/stale-view/1", cwd=root)
    assert code == 0 and out.startswith("demo/stale-view v1: ERROR")


def test_a_source_kaggle_drops_is_said_and_the_ledger_keeps_the_accelerator(kk: Any, tmp_path: Path) -> None:
    """Kaggle answers a push with the sources it did not attach; the run goes on, and its ledger row
    still says gpu in its accelerator column (before, the name of the dropped kind of source took its place)."""
    from kagglekit.ledger import Ledger

    root = write(tmp_path / "dropped", {
        "kagglekit.toml": 'kernel = "dropped-source"\nentry = "train.py"\ndatasets = ["nobody/missing-data"]\n',
        "train.py": "print('hello')\n",
    })
    code, out, err = kk("push", "--gpu", cwd=root)
    assert code == 0, err
    assert "did not attach these datasets" in out + err and "nobody/missing-data" in out + err
    runs = Ledger().runs(kernel=f"{C.DEMO_USERNAME}/dropped-source")
    assert [(r.version, r.accelerator, r.kind) for r in runs] == [(1, "gpu", "gpu")]
