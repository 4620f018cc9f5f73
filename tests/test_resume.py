"""Checkpoint chaining across the session limit: init → full run killed → push --resume finishes it.

The generated PyTorch project trains for real inside the emulator. The first
version is killed by a short session limit (CANCEL_ACKNOWLEDGED, files kept);
``push --resume`` mounts that output, the runtime restores the checkpoint, and
training continues from the next epoch instead of starting over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_push_cli import kk  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def epochs(metrics: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in metrics.read_text().splitlines() if line.strip()]


def test_killed_full_run_is_resumed_from_its_checkpoint(kk: Any, emulator: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "chain"
    code, _, err = kk("init", str(root), "--kernel", "demo/resume-chain", cwd=tmp_path)
    assert code == 0, err

    # v1: a test-mode run that completes: an older COMPLETE output that --resume must NOT pick.
    code, out, err = kk("push", "--cpu", "--test", "--wait", "--interval", "0.5", cwd=root)
    assert code == 0, (out, err)
    v1_run = json.loads((emulator.output_dir("demo", "resume-chain", 1) / "kagglekit" / "run.json").read_text())
    v1_seconds = float(v1_run["duration_s"])

    # v2: full mode with more epochs than fit, killed by the emulator's session limit. The limit is sized
    # from v1's own run time on this machine now (torch import, then 10 epochs of 400 examples: the work of
    # one full epoch of 4000), so a loaded machine gets a longer session and v2 still has checkpointed
    # epochs when it is killed; a quiet one keeps the 10 s that makes the test quick.
    limit = max(10.0, round(3 * v1_seconds + 2))
    emulator.control("config", {"session_limit_seconds": {"cpu": limit, "gpu": limit, "tpu": limit}})
    code, out, err = kk("push", "--gpu", "--full", "--set", "n_epoch=100000", "--set", "n_example=4000",
                        "--set", "early_stop=1000000", "--wait", "--interval", "0.5", cwd=root)
    assert code == 9, (out, err)  # CANCEL_ACKNOWLEDGED: "exceeded the max allowed execution duration"
    assert "exceeded the max allowed execution duration" in err
    assert kk("pull-outputs", cwd=root)[0] == 0
    v2 = root / "outputs" / "resume-chain" / "v2"
    done_in_v2 = epochs(v2 / "metrics.jsonl")
    assert done_in_v2, f"no epoch finished within a {limit} s session (v1 took {v1_seconds:.1f} s)"
    assert done_in_v2 == list(range(1, len(done_in_v2) + 1))
    target = len(done_in_v2) + 5  # v3 trains five more epochs, then finishes
    assert (v2 / "checkpoint.pt").exists()
    run_json = json.loads((v2 / "kagglekit" / "run.json").read_text())
    assert run_json["mode"] == "full"

    # v3: more time; --resume attaches v2's output (pinned: v2, not the completed v1) and restores
    # its checkpoint before train.py starts.
    emulator.control("config", {"session_limit_seconds": {"cpu": 120, "gpu": 120, "tpu": 120}})
    code, out, err = kk("push", "--gpu", "--full", "--set", f"n_epoch={target}", "--set", "n_example=4000",
                        "--set", "early_stop=1000000", "--resume", "--wait", "--interval", "0.5", cwd=root)
    assert code == 0, (out, err)
    assert "resumes from the checkpoint in demo/resume-chain" in out
    assert kk("pull-outputs", cwd=root)[0] == 0
    v3 = root / "outputs" / "resume-chain" / "v3"
    assert epochs(v3 / "metrics.jsonl") == list(range(1, target + 1))  # each once: continued, not restarted
    log = (v3 / "log.txt").read_text()
    assert f"resumed from epoch {done_in_v2[-1]}" in log or f"resumed from epoch {done_in_v2[-1] + 1}" in log
    run3 = json.loads((v3 / "kagglekit" / "run.json").read_text())
    assert run3["resume_from"] == "demo/resume-chain/2"
    assert any(name.endswith("checkpoint.pt") for name in run3["restored_files"])

    # The ledger links the two versions into a chain.
    code, out, _ = kk("--json", "runs", cwd=root)
    by_version = {r["version"]: r for r in json.loads(out)}
    assert by_version[3]["parent_version"] == 2
    assert by_version[2]["status"] == "CANCEL_ACKNOWLEDGED" and by_version[3]["status"] == "COMPLETE"
