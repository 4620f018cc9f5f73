"""`kagglekit report` shows the hyper-parameters the generated project records in summary.json
(effective batch size, accumulation steps, lr, seed, optimizer, every other setting), and the GPU
facts a GPU run records (names, CUDA / cuDNN, reserved as well as allocated memory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kagglekit.report import build_report, summary_lines
from kagglekit.scaffold import init_project
from tests.test_scaffold import edit_config, run_project, strict_json


@pytest.mark.slow
def test_report_shows_the_recorded_hyperparameters(tmp_path: Path) -> None:
    project = tmp_path / "hyper-report"
    init_project(project)
    edit_config(project, batch_size="32", accum_iter="3", lr="0.01", seed="7", test_n_epoch="2")
    done = run_project(project)
    assert done.returncode == 0, done.stdout + done.stderr
    out = project / "outputs"
    recorded = strict_json((out / "summary.json").read_text())["hyperparameters"]
    assert (recorded["effective_batch_size"], recorded["accum_iter"], recorded["lr"], recorded["seed"]) == (
        96, 3, 0.01, 7)

    report = build_report(out, out=tmp_path / "report.md")
    assert report.hyperparameters == recorded
    page = report.path.read_text()
    assert "## Hyper-parameters" in page
    assert "| Effective batch size | 96 (32 × 3 accumulation steps) |" in page
    assert "| Learning rate (lr) | 0.01 |" in page and "| Seed | 7 |" in page
    assert "| Optimizer | AdamW (lr 0.01, betas 0.9, 0.999, eps 1e-08, weight_decay 0.0001" in page
    assert "| hidden | 64 |" in page and "| dropout | 0.1 |" in page and "| dataset | None |" in page
    assert "| Peak GPU memory | 0 B allocated, 0 B reserved |" in page  # the CPU run records zeros
    assert "| GPU |" not in page
    assert "Hyper:    effective batch 96 = 32 x 3, lr 0.01, seed 7" in summary_lines(report)


def test_report_shows_a_gpu_runs_device_and_both_memory_figures(tmp_path: Path) -> None:
    """A summary.json as the template writes it on a two-GPU Kaggle machine (written by hand: no GPU here)."""
    out = tmp_path / "v3"
    out.mkdir()
    summary = {"running_test": True, "device": "cuda", "gpu": ["Tesla T4", "Tesla T4"], "cuda": "12.4",
               "cudnn": 90100, "deterministic": True, "peak_gpu_mb": 1.0, "peak_gpu_reserved_mb": 2.0,
               "hyperparameters": {"effective_batch_size": 128, "batch_size": 64, "accum_iter": 2, "lr": 0.003,
                                   "seed": 923}}
    (out / "summary.json").write_text(json.dumps(summary))
    page = build_report(out, out=tmp_path / "gpu.md").path.read_text()
    assert "| GPU | Tesla T4 x2, CUDA 12.4, cuDNN 90100, deterministic |" in page
    assert "| Peak GPU memory | 1.05 MB allocated, 2.10 MB reserved |" in page
    assert "| Effective batch size | 128 (64 × 2 accumulation steps) |" in page


def test_report_of_an_older_summary_without_hyperparameters(tmp_path: Path) -> None:
    """Outputs of the old template (no "hyperparameters") still report, with what they had."""
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"running_test": False, "device": "cpu", "batch_size": 64,
                                                  "n_epoch": 30, "peak_gpu_mb": 0.0}))
    report = build_report(out, out=tmp_path / "old.md")
    page = report.path.read_text()
    assert report.hyperparameters == {"batch_size": 64, "n_epoch": 30}
    assert "| batch_size | 64 |" in page and "Effective batch size" not in page
    assert "| Peak GPU memory | 0 B |" in page
    assert not any(line.startswith("Hyper:") for line in summary_lines(report))
