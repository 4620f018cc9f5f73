"""The test mode runs the whole pipeline end to end: run it before every full run.

It runs train.py in a temporary folder (so ./outputs of real runs is left alone) with
KAGGLEKIT_RUNNING_TEST=1, and checks that every output exists and is consistent.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def strict_json(text):
    """json.loads refusing NaN / Infinity, as strict parsers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_running_test_mode_writes_every_output(tmp_path):
    env = {**os.environ, "KAGGLEKIT_RUNNING_TEST": "1"}
    done = subprocess.run([sys.executable, str(PROJECT / "train.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "outputs"

    summary = strict_json((out / "summary.json").read_text())
    assert summary["running_test"] is True
    assert summary["n_example"] < summary["full_n_example"]
    hyper = summary["hyperparameters"]
    assert hyper["effective_batch_size"] == hyper["batch_size"] * hyper["accum_iter"]

    rows = [strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, summary["last_epoch"] + 1))
    assert all(row["train_loss"] > 0 and 0 <= row["score"] <= 1 for row in rows)

    with open(out / "submission.csv", newline="") as f:
        assert sum(1 for _ in csv.DictReader(f)) == summary["n_test"]
    assert (out / "model.pt").stat().st_size > 0
    assert (out / "checkpoint.pt").stat().st_size > 0
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "torch" in json.loads((out / "versions.json").read_text())["packages"]
