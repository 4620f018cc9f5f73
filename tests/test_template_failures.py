"""The generated project fails loudly: NaN inputs and non-finite losses end the run non-zero with a
message naming the problem, and every JSON file it writes is strict JSON.

train.py runs for real in subprocesses on the CPU, on a dataset with NaN written as a CSV.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kagglekit.scaffold import init_project
from tests.test_scaffold import PYTHON, edit_config, project_env, run_project, strict_json
from tests.test_template_resume import write_table


def nan_project(path: Path, fraction: float = 0.02) -> Path:
    """A project reading alice/nan-data, whose column f3 has `fraction` NaN."""
    import numpy as np

    init_project(path)
    edit_config(path, dataset='"alice/nan-data"', test_n_epoch="2")
    (path / "data" / "nan-data").mkdir(parents=True)
    table = write_table(path / "data" / "nan-data" / "train.csv", rows=1000, seed=3)
    table.loc[np.random.default_rng(0).random(len(table)) < fraction, "f3"] = np.nan
    table.to_csv(path / "data" / "nan-data" / "train.csv", index=False)
    return path


@pytest.mark.slow
def test_nan_in_an_input_column_ends_the_run_non_zero_naming_the_column(tmp_path: Path) -> None:
    project = nan_project(tmp_path / "nan-input")
    done = run_project(project)
    assert done.returncode == 1, done.stdout + done.stderr
    n_nan = int(done.stderr.split("f3 (")[1].split(" NaN")[0])
    assert 5 < n_nan < 50  # ~2% of 1000 rows
    assert "error: train.csv: non-finite values in 1 column(s): f3 (" in done.stderr
    assert 'Config.fill_missing = "median"' in done.stderr and "Traceback" not in done.stderr
    out = project / "outputs"
    assert not (out / "submission.csv").exists() and not (out / "checkpoint.pt").exists()
    summary = strict_json((out / "summary.json").read_text())
    assert summary["stop_reason"] == "error" and "f3" in summary["error"]

    # the documented fix: fill with the training median, and the same data trains
    edit_config(project, fill_missing='"median"')
    filled = run_project(project)
    assert filled.returncode == 0, filled.stdout + filled.stderr
    summary = strict_json((out / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["best_val_loss"] > 0


@pytest.mark.slow
def test_non_finite_loss_stops_after_max_bad_steps(tmp_path: Path) -> None:
    """lr = 1e30 blows the weights up after the first step: NaN losses, exit 1 after max_bad_steps batches."""
    project = tmp_path / "nan-loss"
    init_project(project)
    edit_config(project, lr="1e30", max_bad_steps="4", batch_size="16")
    done = run_project(project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the training loss was nan in 4 batch(es) (first at epoch 1, batch " in done.stderr
    assert "Config.max_bad_steps = 4" in done.stderr and "lr = 1e+30" in done.stderr
    assert "Traceback" not in done.stderr
    out = project / "outputs"
    assert not (out / "submission.csv").exists() and not (out / "model.pt").exists()
    summary = strict_json((out / "summary.json").read_text())  # strict: no NaN / Infinity tokens
    assert summary["stop_reason"] == "error" and summary["hyperparameters"]["lr"] == 1e30


def test_json_files_are_strict_even_with_non_finite_numbers(tmp_path: Path) -> None:
    """write_json turns NaN / inf (and numpy / torch scalars) into plain JSON; json.loads' strict mode accepts it."""
    project = tmp_path / "strict-json"
    init_project(project)
    script = """
import math, numpy as np, torch
from utils import to_json, write_json
write_json({"best": float("inf"), "rows": [float("nan"), -math.inf, 1.5], "np": np.float32(0.25),
            "n": np.int64(3), "t": torch.tensor(2.0), "nested": {"x": (float("nan"),)}}, "s.json")
print(to_json({"loss": float("nan")}))
"""
    done = subprocess.run([PYTHON, "-c", script], cwd=project, env=project_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert strict_json((project / "s.json").read_text()) == {
        "best": None, "rows": [None, None, 1.5], "np": 0.25, "n": 3, "t": 2.0, "nested": {"x": [None]}}
    assert strict_json(done.stdout) == {"loss": None}
    with pytest.raises(ValueError, match="non-standard JSON token"):
        strict_json('{"best_val_loss": Infinity}')  # what the old template wrote
