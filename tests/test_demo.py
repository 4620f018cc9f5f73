"""The README's first command: the whole loop against the embedded (background) emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_loop_and_leaves_report_and_plots(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "KAGGLEKIT_"))}
    proc = subprocess.run([sys.executable, "-m", "kagglekit.demo", "--workdir", str(work)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in ("kagglekit init", "kagglekit push --gpu --test --wait", "kagglekit status", "kagglekit pull-outputs",
                 "kagglekit quota --plot", "kagglekit report", "kagglekit runs"):
        assert step in out, step
    assert "COMPLETE" in out
    report = work / "report.html"
    assert report.is_file() and "Full-run estimate" in report.read_text()
    pulled = work / "my-project" / "outputs" / "my-first-kernel" / "v1"
    assert (pulled / "kagglekit" / "run.json").is_file() and (pulled / "metrics.jsonl").is_file()
    assert (work / "quota-week.png").stat().st_size > 10_000
    assert (pulled / "loss_curve.png").stat().st_size > 10_000
    assert f"report       {report}" in out
    # The demo's own state stays in its workspace and its background emulator is stopped.
    state = work / ".kagglekit-home" / "emulator.json"
    assert not state.exists() or "pid" not in state.read_text()
