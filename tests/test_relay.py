"""The resume relay (issue 12): training carried across sessions by two kernels that mount each other.

Everything runs for real: the kagglekit CLI drives the real kaggle client over HTTP against the
emulator, whose kernels run in subprocesses with short session limits. The emulator refuses a
self-mount, as Kaggle does, so a chain can only work through the relay sibling. The training
script is tiny (one "epoch" is a sleep) so that the session boundaries are what is tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from tests.helpers import write

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

TRAIN = """\
    import json, os, time
    from config import Config
    from kagglekit_runtime import report_progress, time_left

    CKPT = "checkpoint.json"
    state = json.load(open(CKPT)) if os.path.exists(CKPT) else {"epoch": 0, "history": []}
    print(f"resumed from epoch {state['epoch']}" if state["epoch"] else "fresh start", flush=True)
    while state["epoch"] < Config.n_epoch:
        time.sleep(Config.epoch_s)
        epoch = state["epoch"] + 1
        loss = 2.0 / (1 + epoch)
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1, "score": 1 - loss / 2})
        with open(CKPT + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(CKPT + ".tmp", CKPT)
        with open("metrics.jsonl.tmp", "w") as f:
            f.writelines(json.dumps(row) + "\\n" for row in state["history"])
        os.replace("metrics.jsonl.tmp", "metrics.jsonl")
        print(f"epoch {epoch}/{Config.n_epoch} loss {loss:.4f}", flush=True)
        report_progress(epoch, Config.n_epoch)
        if epoch < Config.n_epoch and time_left() < Config.margin_s + 1.5 * Config.epoch_s:
            report_progress(epoch, Config.n_epoch, finished=False, reason="time")
            print(f"stopping after epoch {epoch} for the session limit", flush=True)
            break
    else:
        report_progress(state["epoch"], Config.n_epoch, finished=True, reason="completed")
"""

CONFIG = """\
    class Config:
        running_test = False
        n_epoch = 22
        epoch_s = 0.5
        margin_s = 1.5
"""


def relay_project(tmp_path: Path, name: str = "relay-train", n_epoch: int = 22) -> Path:
    return write(tmp_path / name, {
        "kagglekit.toml": f'kernel = "demo/{name}"\nentry = "train.py"\ncheckpoints = ["checkpoint.json"]\n',
        "config.py": CONFIG.replace("n_epoch = 22", f"n_epoch = {n_epoch}"),
        "train.py": TRAIN,
    })


def metrics(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines() if line]


def test_until_done_crosses_four_sessions_through_the_relay(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """30 epochs of 0.5 s, sessions of 6 s that stop themselves (at most 8 epochs each): at least four sessions,
    alternating kernels, each continuing where the previous one stopped; report covers the chain and its GPU time."""
    root = relay_project(tmp_path, n_epoch=30)
    code, out, err = kk("push", "--gpu", "--timeout", "6", "--until-done", "--interval", "0.3", "--max-sessions", "10",
                        cwd=root)
    assert code == 0, (out, err)
    assert "finished the training" in err

    code, out, _ = kk("--json", "runs", cwd=root)
    runs = [r for r in json.loads(out) if r["chain_id"] is not None]
    runs.sort(key=lambda r: r["chain_seq"])
    assert len(runs) >= 4, runs
    kernels = [r["kernel"] for r in runs]
    assert kernels == [("demo/relay-train" if i % 2 == 0 else "demo/relay-train-relay") for i in range(len(runs))]
    assert all(r["status"] == "COMPLETE" for r in runs)  # each ended by its own time guard, none killed
    # continuous epochs: each session starts right after the previous one's last epoch
    spans = [(r["training"]["first_epoch"], r["training"]["epoch"]) for r in runs]
    assert spans[0][0] == 1 and spans[-1][1] == 30
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in pairwise(spans)), spans
    assert runs[-1]["training"]["finished"] is True
    for prev, nxt in pairwise(runs):
        assert nxt["resume_from"] == f"{prev['kernel']}/{prev['version']}"

    # The project's commands follow the chain's newest session, whichever kernel ran it.
    last = runs[-1]
    code, out, err = kk("status", cwd=root)
    assert code == 0 and f"{last['kernel']} v{last['version']}: COMPLETE" in out, (out, err)
    code, out, err = kk("pull-outputs", cwd=root)
    assert code == 0, err
    newest = root / "outputs" / last["kernel"].split("/")[1] / f"v{last['version']}"
    assert metrics(newest) == list(range(1, 31))
    code, out, err = kk("runs", cwd=root)
    assert code == 0 and f"chain {runs[0]['chain_id']}" in out and "epochs 1-" in out, out

    code, out, err = kk("--json", "report", cwd=root)
    assert code == 0, err
    report = json.loads(out)
    assert [row["epoch"] for row in report["epochs"]] == list(range(1, 31))  # the loss curve across sessions
    chain = report["chain"]
    assert [(s["kernel"], s["version"]) for s in chain["sessions"]] == [(r["kernel"], r["version"]) for r in runs]
    total = sum(r["duration_s"] for r in runs) / 3600
    assert chain["accelerator_hours"] == pytest.approx(total, rel=1e-6) and chain["kind"] == "gpu"
    assert Path(report["plot"]).stat().st_size > 0


def test_resume_pushes_to_the_sibling_and_a_self_mount_is_refused(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """push --resume never lists a kernel in its own sources; a project that does gets Kaggle's refusal."""
    root = relay_project(tmp_path, n_epoch=6)
    # 6 epochs of 0.5 s do not fit in 3 s: the time guard stops the first session
    code, out, err = kk("push", "--cpu", "--timeout", "3", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, err
    code, out, err = kk("push", "--resume", "--dry-run", cwd=root)
    assert code == 0, err
    assert "This would push demo/relay-train-relay:" in out  # the sibling, its title slugifying to its slug
    assert '"title": "Relay Train Relay"' in out and '"demo/relay-train/1"' in out

    code, out, err = kk("push", "--resume", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, (out, err)
    assert "Pushed demo/relay-train-relay version 1" in out
    assert kk("pull-outputs", cwd=root)[0] == 0  # the project's pull follows the chain to the sibling
    run = json.loads((root / "outputs" / "relay-train-relay" / "v1" / "kagglekit" / "run.json").read_text())
    assert run["resume_from"] == "demo/relay-train/1" and run["restored_files"] == ["checkpoint.json"]
    assert metrics(root / "outputs" / "relay-train-relay" / "v1") == list(range(1, 7))

    # A kernel naming its own output: Kaggle does not attach it (invalidKernelSources), nothing is mounted.
    (root / "kagglekit.toml").write_text('kernel = "demo/relay-train"\nentry = "train.py"\n'
                                         'kernels = ["demo/relay-train"]\n')
    code, out, err = kk("push", "--cpu", "--wait", "--interval", "0.3", cwd=root)
    assert "Kaggle did not attach these kernels" in err and "demo/relay-train" in err


def test_until_done_sessions_keep_the_first_pushs_arguments(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """Arguments given after -- on the first push reach every later session of `push --resume --until-done`
    (each relay takes its parent's), not just the first one."""
    root = relay_project(tmp_path, name="relay-args", n_epoch=16)
    code, _, err = kk("push", "--cpu", "--timeout", "4", "--wait", "--interval", "0.3", "--", "--tag", "x y",
                      cwd=root)
    assert code == 0, err
    code, out, err = kk("push", "--cpu", "--timeout", "4", "--resume", "--until-done", "--interval", "0.3",
                        "--max-sessions", "10", cwd=root)
    assert code == 0, (out, err)
    assert "Resuming with demo/relay-args/1's arguments after --: --tag 'x y'" in err
    code, out, _ = kk("--json", "runs", cwd=root)
    runs = sorted((r for r in json.loads(out) if r["chain_id"] is not None), key=lambda r: r["chain_seq"])
    assert len(runs) >= 3, runs  # the first session, then at least two relays (the second one's parent is a relay)
    assert runs[-1]["training"]["finished"] is True
    assert all(r["args"] == ["--tag", "x y"] for r in runs), [r["args"] for r in runs]


def test_until_done_with_a_bare_double_dash_drops_the_first_pushs_arguments(kk: Any, emulator: Any,
                                                                            tmp_path: Path) -> None:
    """A bare `--` on `push --resume --until-done` means no arguments: the chain's sessions get none."""
    root = relay_project(tmp_path, name="relay-noargs", n_epoch=6)
    code, _, err = kk("push", "--cpu", "--timeout", "4", "--wait", "--interval", "0.3", "--", "--tag", "x",
                      cwd=root)
    assert code == 0, err
    code, out, err = kk("push", "--cpu", "--timeout", "4", "--resume", "--until-done", "--interval", "0.3",
                        "--max-sessions", "10", "--", cwd=root)
    assert code == 0, (out, err)
    assert "Resuming without demo/relay-noargs/1's arguments after --: --tag x (an empty -- was given)" in err
    code, out, _ = kk("--json", "runs", cwd=root)
    runs = sorted((r for r in json.loads(out) if r["chain_id"] is not None), key=lambda r: r["chain_seq"])
    assert len(runs) >= 2 and runs[-1]["training"]["finished"] is True, runs
    assert runs[0]["args"] == ["--tag", "x"] and not any(r["args"] for r in runs[1:]), [r["args"] for r in runs]


def test_resume_from_a_killed_session_warns_what_it_means(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """A session killed at the limit (its guard off) is CANCEL_ACKNOWLEDGED: push --resume says what that means."""
    root = relay_project(tmp_path, n_epoch=40)
    (root / "config.py").write_text((root / "config.py").read_text().replace("margin_s = 1.5", "margin_s = -100"))
    code, _, err = kk("push", "--cpu", "--timeout", "3", "--wait", "--interval", "0.3", cwd=root)
    assert code == 9, err  # killed at the limit
    code, _, err = kk("push", "--resume", "--dry-run", cwd=root)
    assert code == 0, err
    assert "was stopped (CANCEL_ACKNOWLEDGED), not ended by its own time guard" in err
    assert "Kaggle may not mount a cancelled version's output" in err


def _kagglekit(args: list[str], cwd: Path, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "kagglekit", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_until_done_survives_being_killed_and_continues(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """Ctrl-C the driver mid-chain: the session goes on; the same command again continues the same chain."""
    root = relay_project(tmp_path, n_epoch=12)
    args = ["push", "--gpu", "--timeout", "5", "--until-done", "--interval", "0.3"]
    driver = _kagglekit(args, root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the second session exists, then interrupt
        if any(v["ref"] == "demo/relay-train-relay" for v in emulator.get("versions")["versions"]):
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=30)
    assert driver.returncode == 130, (out, err)
    assert "run the same command again to continue it" in err

    code, out, err = kk(*args, cwd=root)
    assert code == 0, (out, err)
    assert "Continuing chain" in err
    code, out, _ = kk("--json", "runs", cwd=root)
    runs = sorted((r for r in json.loads(out) if r["chain_id"] is not None), key=lambda r: r["chain_seq"])
    assert len({r["chain_id"] for r in runs}) == 1  # one chain, not a second one started by the rerun
    assert [r["chain_seq"] for r in runs] == list(range(1, len(runs) + 1))
    spans = [(r["training"]["first_epoch"], r["training"]["epoch"]) for r in runs]
    assert spans[0][0] == 1 and spans[-1][1] == 12 and runs[-1]["training"]["finished"] is True
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in pairwise(spans)), spans
    # every version on the emulator is one of the chain's sessions: nothing was pushed twice
    on_server = {(v["ref"], v["version"]) for v in emulator.get("versions")["versions"]}
    assert on_server == {(r["kernel"], r["version"]) for r in runs}


def _wait_running(emulator: Any, slug: str, version: int = 1) -> None:
    emulator.wait_for_status(C.DEMO_USERNAME, slug, version, statuses={"RUNNING"}, timeout=60)


def test_stop_cancels_with_the_session_id_and_ends_the_chain(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = relay_project(tmp_path, n_epoch=400)
    assert kk("push", "--cpu", cwd=root)[0] == 0
    _wait_running(emulator, "relay-train")
    code, out, err = kk("stop", "--dry-run", cwd=root)
    assert code == 0, err
    assert "Dry run" in out and "cancel session" in out
    assert emulator.status("demo", "relay-train", 1)[0] == "RUNNING"  # a dry run touched nothing

    code, out, err = kk("stop", cwd=root)
    assert code == 0, (out, err)
    assert "Cancel requested for demo/relay-train v1 (session" in out
    assert emulator.wait_for_status("demo", "relay-train", 1, timeout=30) == "CANCEL_ACKNOWLEDGED"
    cancels = [r for r in emulator.requests("rpc") if r.get("name", "").endswith("CancelKernelSession")]
    assert cancels, "stop did not call CancelKernelSession"


@pytest.mark.emulator_config({"cancel_always_denied": True})
def test_stop_on_403_says_where_and_deletes_only_after_pulling(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """Kaggle refuses the cancel: stop says so and where to press Stop Session; --delete pulls every saved
    output first, asks, and only then deletes the kernel; the chain's other kernel keeps its outputs."""
    root = relay_project(tmp_path, n_epoch=400)
    assert kk("push", "--cpu", "--timeout", "3", "--wait", "--interval", "0.3", cwd=root)[0] == 0  # stops itself
    assert kk("push", "--resume", "--timeout", "3", "--wait", "--interval", "0.3", cwd=root)[0] == 0  # relay v1
    assert kk("push", "--resume", "--timeout", "100", cwd=root)[0] == 0  # v2 of the project's kernel: runs long
    _wait_running(emulator, "relay-train", 2)

    code, out, err = kk("stop", cwd=root)
    assert code == 15, (out, err)
    assert "Permission 'kernelSessions.cancel' was denied" in out
    assert "Stop Session" in out and "https://www.kaggle.com/code/demo/relay-train" in out
    assert "--delete" in out
    assert emulator.status("demo", "relay-train", 2)[0] == "RUNNING"

    # --delete without a yes (no terminal to ask on): outputs pulled, nothing deleted
    code, out, err = kk("stop", "--delete", cwd=root)
    assert code == 15, (out, err)
    assert "Not deleted" in out
    assert emulator.status("demo", "relay-train", 2)[0] == "RUNNING"
    pulled = root / "outputs" / "relay-train" / "v1"
    assert (pulled / "checkpoint.json").exists() and (pulled / "kagglekit" / "run.json").exists()

    code, out, err = kk("stop", "--delete", "--yes", cwd=root)
    assert code == 0, (out, err)
    assert "Deleted demo/relay-train" in out
    assert json.loads((pulled / "checkpoint.json").read_text())["epoch"] >= 1  # nothing saved was lost
    from tests.fixtures_emulator import EmulatorError

    with pytest.raises(EmulatorError):
        emulator.rpc("GetKernel", {"userName": "demo", "kernelSlug": "relay-train"})
    # the sibling and its saved session are untouched: the chain can go on from it
    assert emulator.status("demo", "relay-train-relay", 1)[0] == "COMPLETE"


@pytest.mark.emulator_config({"legacy_layout": True})
def test_the_relay_finds_the_checkpoint_in_the_flat_input_layout(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """Kaggle still mounts some outputs at /kaggle/input/<slug>: the runtime finds the sibling's checkpoint there."""
    root = relay_project(tmp_path, n_epoch=6)
    assert kk("push", "--cpu", "--timeout", "3", "--wait", "--interval", "0.3", cwd=root)[0] == 0
    code, out, err = kk("push", "--resume", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, (out, err)
    assert kk("pull-outputs", cwd=root)[0] == 0
    relay = root / "outputs" / "relay-train-relay" / "v1"
    run = json.loads((relay / "kagglekit" / "run.json").read_text())
    assert run["restored_files"] == ["checkpoint.json"] and run["training"]["first_epoch"] > 1
    assert metrics(relay) == list(range(1, 7))


def test_a_push_the_ledger_missed_is_adopted_not_pushed_twice(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """The driver killed between Kaggle accepting a push and the ledger recording it: the rerun follows that
    version instead of pushing the same session again."""
    from kagglekit.connection import open_client
    from kagglekit.ledger import Ledger
    from kagglekit.push import PushRequest, push
    from kagglekit.run_options import RunOptions

    root = relay_project(tmp_path, n_epoch=6)
    args = ["push", "--cpu", "--timeout", "4", "--until-done", "--interval", "0.3", "--max-sessions", "1"]
    code, out, err = kk(*args, cwd=root)
    assert code == 0 and "halted" in out and "--max-sessions" in out, (out, err)  # one session, then halted
    client = open_client(endpoint=emulator.url)
    req = PushRequest(project_dir=root, run=RunOptions(timeout="4"), resume=True)
    lost = push(client, req, None, info=lambda m: None)  # accepted by Kaggle, never recorded (no ledger)
    assert (lost.kernel, lost.version) == ("demo/relay-train-relay", 1)
    assert Ledger().get(client.account, lost.kernel, 1) is None

    code, out, err = kk(*args[:-2], "--max-sessions", "10", cwd=root)
    assert code == 0, (out, err)
    assert "Found demo/relay-train-relay v1 on Kaggle, pushed before the last interruption" in err
    code, out, _ = kk("--json", "runs", cwd=root)
    runs = sorted((r for r in json.loads(out) if r["chain_id"] is not None), key=lambda r: r["chain_seq"])
    assert [(r["kernel"], r["version"]) for r in runs][:2] == [("demo/relay-train", 1), ("demo/relay-train-relay", 1)]
    on_server = {(v["ref"], v["version"]) for v in emulator.get("versions")["versions"]}
    assert on_server == {(r["kernel"], r["version"]) for r in runs}  # nothing pushed twice
    assert runs[-1]["training"]["finished"] is True and runs[-1]["training"]["epoch"] == 6

    # Once finished, --resume --until-done pushes nothing.
    code, out, err = kk(*args[:-2], "--resume", cwd=root)
    assert code == 0 and "already finished the training" in out and "nothing was pushed" in out, (out, err)
    assert {(v["ref"], v["version"]) for v in emulator.get("versions")["versions"]} == on_server


def test_stop_while_until_done_runs_ends_the_chain(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """`kagglekit stop` from another terminal: the session is cancelled and the driver pushes nothing more."""
    root = relay_project(tmp_path, n_epoch=400)
    driver = _kagglekit(["push", "--cpu", "--timeout", "100", "--until-done", "--interval", "0.3"], root)
    try:
        _wait_running(emulator, "relay-train")
        code, out, err = kk("stop", cwd=root)
        assert code == 0, (out, err)
        assert "Cancel requested" in out
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 9, (out, err)  # the chain ended stopped, not finished
    assert "was stopped (CANCEL_ACKNOWLEDGED)" in err
    assert [v["ref"] for v in emulator.get("versions")["versions"]] == ["demo/relay-train"]
    code, out, _ = kk("--json", "runs", cwd=root)
    assert "stopped" in kk("runs", cwd=root)[1]
