"""Checkpoint chaining across the session limit: init → full run stopped by its time guard → push --resume.

The generated PyTorch project trains for real inside the emulator. The first full
version has a short session (``--timeout``): the template's time guard stops it after an
epoch, COMPLETE, with its checkpoint saved. ``push --resume`` pushes the next session to
the relay sibling (a kernel cannot mount its own output, and the emulator refuses that as
Kaggle does), which mounts that output; the runtime restores the checkpoint, and training
continues from the next epoch instead of starting over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def epochs(metrics: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in metrics.read_text().splitlines() if line.strip()]


def test_killed_full_run_is_resumed_from_its_checkpoint(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = tmp_path / "chain"
    code, _, err = kk("init", str(root), "--kernel", "demo/resume-chain", cwd=tmp_path)
    assert code == 0, err

    # v1: a test-mode run that completes: an older COMPLETE output that --resume must NOT pick.
    code, out, err = kk("push", "--cpu", "--test", "--wait", "--interval", "0.5", cwd=root)
    assert code == 0, (out, err)
    v1_run = json.loads((emulator.output_dir("demo", "resume-chain", 1) / "kagglekit" / "run.json").read_text())
    v1_seconds = float(v1_run["duration_s"])

    # v2: full mode with more epochs than fit in its session: the template's time guard ends it. The session
    # is sized from v1's own run time on this machine now (torch import, then 10 epochs), so a loaded machine
    # gets a longer one and the guard still has room for the last save and prediction. v2 needs the import,
    # one epoch of 1000 rows (2.5 of v1's 400-row epochs), a save and a prediction: twice v1 is ample.
    timeout = max(25, round(2 * v1_seconds + 10))
    code, out, err = kk("push", "--gpu", "--full", "--timeout", str(timeout), "--set", "n_epoch=100000", "--set",
                        "n_example=1000", "--set", "early_stop=1000000", "--wait", "--interval", "0.5", cwd=root)
    assert code == 0, (out, err[-3000:])  # COMPLETE: it stopped itself, it was not killed
    assert kk("pull-outputs", cwd=root)[0] == 0
    v2 = root / "outputs" / "resume-chain" / "v2"
    done_in_v2 = epochs(v2 / "metrics.jsonl")
    assert done_in_v2 and done_in_v2 == list(range(1, len(done_in_v2) + 1))
    target = len(done_in_v2) + 5  # the next session trains five more epochs, then finishes
    assert (v2 / "checkpoint.pt").exists()
    run_json = json.loads((v2 / "kagglekit" / "run.json").read_text())
    assert run_json["mode"] == "full"
    assert run_json["training"]["finished"] is False and run_json["training"]["reason"] == "time"
    assert "stopping after epoch" in (v2 / "log.txt").read_text()

    # The next session: the relay sibling, mounting v2's output (pinned: v2, not the completed v1).
    code, out, err = kk("push", "--gpu", "--full", "--set", f"n_epoch={target}", "--set", "n_example=1000",
                        "--set", "early_stop=1000000", "--resume", "--wait", "--interval", "0.5", cwd=root)
    assert code == 0, (out, err)
    assert "Pushed demo/resume-chain-relay version 1" in out
    assert "resumes from the checkpoint in demo/resume-chain/2's output" in out
    assert kk("pull-outputs", cwd=root)[0] == 0  # the project's pull follows the chain to the sibling
    v3 = root / "outputs" / "resume-chain-relay" / "v1"
    assert epochs(v3 / "metrics.jsonl") == list(range(1, target + 1))  # each once: continued, not restarted
    log = (v3 / "log.txt").read_text()
    assert f"resumed from epoch {done_in_v2[-1]}" in log or f"resumed from epoch {done_in_v2[-1] + 1}" in log
    run3 = json.loads((v3 / "kagglekit" / "run.json").read_text())
    assert run3["resume_from"] == "demo/resume-chain/2"
    assert any(name.endswith("checkpoint.pt") for name in run3["restored_files"])
    assert run3["training"]["finished"] is True and run3["training"]["first_epoch"] == done_in_v2[-1] + 1

    # The ledger links the two sessions into one chain across both kernels.
    code, out, _ = kk("--json", "runs", "-k", "demo/resume-chain", cwd=root)
    by_ref = {(r["kernel"], r["version"]): r for r in json.loads(out)}
    v2_rec, v3_rec = by_ref[("demo/resume-chain", 2)], by_ref[("demo/resume-chain-relay", 1)]
    assert v2_rec["chain_id"] == v3_rec["chain_id"] is not None
    assert (v2_rec["chain_seq"], v3_rec["chain_seq"]) == (1, 2)
    assert v2_rec["status"] == "COMPLETE" and v3_rec["status"] == "COMPLETE"
    assert v3_rec["resume_from"] == "demo/resume-chain/2"
