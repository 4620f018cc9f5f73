"""`kagglekit report`: its figures are the run's own (run.json, metrics.jsonl, summary.json).

The outputs come from a real test-mode run of the generated project; run.json is written
here by hand in the runtime's schema (docs/run-manifest.md) with known values.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from kagglekit.api.types import AcceleratorQuota, QuotaInfo
from kagglekit.cli import main
from kagglekit.errors import ConfigError, NotFoundError
from kagglekit.report import ESTIMATE_HIGH, ESTIMATE_LOW, ROUGH_WARNING, build_report, resolve_target
from kagglekit.scaffold import init_project

LOCAL_NUMPY = metadata.version("numpy")


def run_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 1, "kagglekit_version": "0.1.0", "kernel": "alice/report-demo", "mode": "test",
        "overrides": {}, "bundle_sha256": "0" * 64, "started_at": "2026-11-07T10:00:00+00:00",
        "last_seen_at": "2026-11-07T10:00:42+00:00", "ended_at": "2026-11-07T10:00:42+00:00",
        "duration_s": 42.5, "status": "complete", "exit_code": 0,
        "accelerator": {"requested": "gpu", "seen": "cuda", "devices": ["Tesla T4", "Tesla T4"]},
        "python": "3.99.0",
        "packages": {"torch": "0.0.1", "numpy": LOCAL_NUMPY, "surely-not-installed-pkg": "1.2.3"},
        "peak_working_bytes": 3_000_000_000, "output_budget_bytes": 20_000_000_000,
        "peak_rss_bytes": 2_500_000_000, "session_limit_s": 43200, "traceback_tail": None,
    }
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def real_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outputs/ of a real test-mode run of the generated project (run once for the module)."""
    project = tmp_path_factory.mktemp("rep") / "report-demo"
    init_project(project)
    env = {**os.environ, "KAGGLEKIT_RUNNING_TEST": "1"}
    done = subprocess.run([sys.executable, "train.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return project / "outputs"


@pytest.fixture
def outputs(real_outputs: Path, tmp_path: Path) -> Path:
    """A private copy of the run's outputs plus a hand-written kagglekit/run.json."""
    copy = tmp_path / "v1"
    shutil.copytree(real_outputs, copy)
    write_run(copy, run_json())
    return copy


def write_run(folder: Path, data: dict[str, Any]) -> None:
    (folder / "kagglekit").mkdir(exist_ok=True)
    (folder / "kagglekit" / "run.json").write_text(json.dumps(data))


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_figures_match_run_json_metrics_and_summary(outputs: Path) -> None:
    report = build_report(outputs, quota={"gpu": 20.0})
    rows = read_metrics(outputs)
    summary = json.loads((outputs / "summary.json").read_text())

    assert report.kernel == "alice/report-demo" and report.mode == "test" and report.status == "complete"
    assert report.duration_s == 42.5
    assert report.quota_kind == "gpu" and report.quota_cost_h == pytest.approx(42.5 / 3600)
    assert (report.accelerator_requested, report.accelerator_seen) == ("gpu", "cuda")
    assert report.devices == ["Tesla T4", "Tesla T4"]
    assert report.peak_output_bytes == 3_000_000_000 and report.output_fraction == pytest.approx(0.15)
    assert report.peak_rss_bytes == 2_500_000_000
    assert report.epochs == rows
    assert report.best_epoch == summary["best_epoch"] and report.best_score == summary["best_score"]
    assert report.parameters == summary["parameters"] and report.peak_ram_mb == summary["peak_ram_mb"]
    assert report.epoch_time_median_s == statistics.median(r["epoch_time_s"] for r in rows)
    diffs = {d.package: (d.run, d.local) for d in report.version_diffs}
    assert diffs == {"torch": ("0.0.1", metadata.version("torch")), "surely-not-installed-pkg": ("1.2.3", None)}
    assert report.python_run == "3.99.0"


def test_test_mode_estimate_is_a_range_from_per_epoch_time_epochs_and_data_ratio(outputs: Path) -> None:
    report = build_report(outputs, quota={"gpu": 20.0})
    rows = read_metrics(outputs)
    summary = json.loads((outputs / "summary.json").read_text())
    e = report.estimate
    assert e is not None
    per_epoch = statistics.median(r["epoch_time_s"] for r in rows)
    ratio = summary["full_n_example"] / summary["n_example"]
    fixed = 42.5 - sum(r["epoch_time_s"] for r in rows) - summary["data_time_s"]
    mid = fixed + summary["data_time_s"] * ratio + per_epoch * ratio * summary["full_n_epoch"]
    assert (e.per_epoch_s, e.data_ratio, e.full_n_epoch) == (per_epoch, ratio, 30)
    assert e.mid_s == pytest.approx(mid)
    assert e.low_s == pytest.approx(mid * ESTIMATE_LOW)
    assert e.high_s == pytest.approx(mid * ESTIMATE_HIGH)
    assert e.fits_session == "yes" and e.sessions_needed == 1 and e.fits_quota == "yes"
    assert ROUGH_WARNING in report.notes

    tight = build_report(outputs, quota={"gpu": e.low_s / 3600 / 2})  # less quota than the low end
    assert tight.estimate is not None and tight.estimate.fits_quota == "no"
    between = build_report(outputs, quota={"gpu": mid / 3600})
    assert between.estimate is not None and between.estimate.fits_quota == "maybe"

    write_run(outputs, run_json(session_limit_s=mid / 3))  # a limit the full run overruns
    short = build_report(outputs)
    assert short.estimate is not None and short.estimate.fits_session == "no"
    assert short.estimate.sessions_needed >= 4 and short.estimate.fits_quota is None


def test_html_and_markdown_reports_show_the_figures_and_the_curve(outputs: Path, tmp_path: Path) -> None:
    html_report = build_report(outputs)
    assert html_report.path == outputs / "report.html"
    page = html_report.path.read_text()
    assert html_report.plot == outputs / "report_loss_curve.png"
    assert html_report.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '<img src="report_loss_curve.png"' in page
    assert "0.012 GPU hours" in page and "3.00 GB (15.00% of 20.00 GB)" in page
    assert "surely-not-installed-pkg" in page and "not installed" in page
    assert "time is not linear in the number of examples" in page

    md = build_report(outputs, out=tmp_path / "out" / "run.md")
    text = md.path.read_text()
    assert md.plot == tmp_path / "out" / "run_loss_curve.png" and md.plot.exists()
    assert "![loss curve](run_loss_curve.png)" in text
    assert "| Quota cost | 0.012 GPU hours |" in text
    assert "| torch | 0.0.1 |" in text


def test_cpu_runs_cost_no_gpu_hours_and_a_wasted_gpu_is_flagged(outputs: Path) -> None:
    write_run(outputs, run_json(accelerator={"requested": "cpu", "seen": "cpu", "devices": []}, mode="full"))
    cpu = build_report(outputs)
    assert cpu.quota_kind == "cpu" and cpu.quota_cost_h == 0.0 and cpu.estimate is None

    write_run(outputs, run_json(accelerator={"requested": "NvidiaTeslaT4", "seen": "cpu", "devices": []}))
    wasted = build_report(outputs)
    assert wasted.quota_kind == "gpu" and wasted.quota_cost_h == pytest.approx(42.5 / 3600)
    assert any("used only the CPU" in note for note in wasted.notes)


def test_a_failed_run_shows_its_traceback_and_cut_metrics_lines_are_skipped(outputs: Path) -> None:
    write_run(outputs, run_json(status="error", exit_code=1, traceback_tail="ValueError: bad shape"))
    with (outputs / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 11, "train_lo')  # a kill in the middle of a line
    report = build_report(outputs, out=outputs / "r.md")
    text = report.path.read_text()
    assert "ValueError: bad shape" in text and "error (exit code 1)" in text
    assert len(report.epochs) == len(read_metrics_lenient(outputs))
    assert any("unreadable line" in note for note in report.notes)


def read_metrics_lenient(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def test_bad_inputs_are_expected_errors(outputs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.html or \.md"):
        build_report(outputs, out=tmp_path / "report.txt")
    with pytest.raises(NotFoundError):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no kagglekit run outputs"):
        build_report(tmp_path / "empty")
    (outputs / "kagglekit" / "run.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_report(outputs)


def test_kernel_version_resolves_to_pulled_outputs(tmp_path: Path) -> None:
    for version in (1, 3, 12):
        (tmp_path / "outputs" / "report-demo" / f"v{version}").mkdir(parents=True)
    base = tmp_path / "outputs" / "report-demo"
    assert resolve_target("alice/report-demo", tmp_path) == base / "v12"
    assert resolve_target("alice/report-demo/3", tmp_path) == base / "v3"
    assert resolve_target("report-demo/v1", tmp_path) == base / "v1"
    assert resolve_target(None, tmp_path) == base / "v12"
    assert resolve_target(str(base / "v3"), tmp_path) == base / "v3"
    with pytest.raises(NotFoundError, match="Version 2"):
        resolve_target("alice/report-demo/2", tmp_path)
    with pytest.raises(NotFoundError, match="No pulled outputs for alice/other-kernel") as info:
        resolve_target("alice/other-kernel", tmp_path)
    assert info.value.hint == "Pull them first: kagglekit pull-outputs alice/other-kernel."


def test_cli_report_uses_the_last_quota_reading(outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from kagglekit import quota

    gpu = AcceleratorQuota(used_seconds=25 * 3600, total_seconds=30 * 3600)
    tpu = AcceleratorQuota(used_seconds=0, total_seconds=20 * 3600)
    quota._save_reading("alice", QuotaInfo(gpu=gpu, tpu=tpu, refresh_time=None), datetime.now(UTC))
    # The emulator's reading, taken later, must not stand in for the real account's.
    emulated = AcceleratorQuota(used_seconds=29 * 3600, total_seconds=30 * 3600)
    quota._save_reading("demo@local", QuotaInfo(gpu=emulated, tpu=tpu, refresh_time=None), datetime.now(UTC))
    project = tmp_path / "proj"
    target = project / "outputs" / "report-demo" / "v4"
    target.parent.mkdir(parents=True)
    shutil.copytree(outputs, target)
    monkeypatch.chdir(project)

    with pytest.raises(SystemExit) as done:
        main(["report", "alice/report-demo", "-o", str(tmp_path / "r.md")])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert f"Report:   {tmp_path / 'r.md'}" in out and "fits the GPU quota: yes" in out
    assert "(5.0 h left, kagglekit quota for alice at" in (tmp_path / "r.md").read_text()

    with pytest.raises(SystemExit) as done:
        main(["--json", "report", "-o", str(tmp_path / "r.html"), "--quota-left", "0"])
    data = json.loads(capsys.readouterr().out)
    assert done.value.code == 0 and data["estimate"]["fits_quota"] == "no"
    assert Path(data["source"]).resolve() == target.resolve(), "no TARGET: the one pulled kernel's latest"


@pytest.mark.slow
def test_report_of_a_bundled_run_agrees_with_the_runtimes_run_json(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The real chain: init -> kagglekit bundle --test -> the kernel script under a Kaggle-like root -> report."""
    project = tmp_path / "bundled-demo"
    init_project(project)
    with pytest.raises(SystemExit) as done:
        main(["bundle", str(project), "--test", "--gpu", "-o", str(tmp_path / "kernel")])
    assert done.value.code == 0
    kaggle = tmp_path / "sandbox" / "kaggle"
    for sub in ("working", "input", "temp"):
        (kaggle / sub).mkdir(parents=True)
    ran = subprocess.run([sys.executable, str(tmp_path / "kernel" / "bundled-demo.py")], cwd=kaggle / "working",
                         env={**os.environ, "KAGGLE_KERNEL_ROOT": str(kaggle)}, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    working = kaggle / "working"
    run = json.loads((working / "kagglekit" / "run.json").read_text())
    report = build_report(working, out=tmp_path / "report.html")
    assert report.mode == "test" == run["mode"] and report.status == "complete"
    assert report.duration_s == run["duration_s"]
    assert report.accelerator_requested == run["accelerator"]["requested"] == "NvidiaTeslaT4"
    assert report.accelerator_seen == "cpu" and any("used only the CPU" in n for n in report.notes)
    assert report.quota_cost_h == pytest.approx(run["duration_s"] / 3600)
    assert report.peak_output_bytes == run["peak_working_bytes"] > 0
    assert report.peak_rss_bytes == run["peak_rss_bytes"]
    assert report.epochs == read_metrics(working) and report.estimate is not None
    assert report.version_diffs == [], "same machine, same packages"


def test_a_quota_reading_from_an_earlier_week_or_another_server_is_not_used(tmp_path: Path) -> None:
    """Hours left last week say nothing about this week; the emulator's say nothing about Kaggle's."""
    from datetime import timedelta

    from kagglekit import quota
    from kagglekit.report import last_quota_reading

    gpu = AcceleratorQuota(used_seconds=10 * 3600, total_seconds=30 * 3600)
    tpu = AcceleratorQuota(used_seconds=0, total_seconds=20 * 3600)
    now = datetime.now(UTC)
    quota._save_reading("alice@local", QuotaInfo(gpu=gpu, tpu=tpu, refresh_time=now + timedelta(days=1)), now)
    assert last_quota_reading() == (None, None)
    left, source = last_quota_reading("alice@local")  # asked for by name, the emulator's own is there
    assert left == {"gpu": 20.0, "tpu": 20.0} and source and "alice@local" in source

    last_week = now - timedelta(days=8)
    quota._save_reading("alice", QuotaInfo(gpu=gpu, tpu=tpu, refresh_time=last_week + timedelta(days=1)), last_week)
    assert last_quota_reading() == (None, None) and last_quota_reading("alice") == (None, None)
    quota._save_reading("alice", QuotaInfo(gpu=gpu, tpu=tpu, refresh_time=now + timedelta(hours=5)), now)
    assert last_quota_reading()[0] == {"gpu": 20.0, "tpu": 20.0}


def test_the_report_uses_one_unit_system(outputs: Path) -> None:
    """The project's *_mb figures are MiB; the report shows every size in decimal units (kB, MB, GB)."""
    summary = json.loads((outputs / "summary.json").read_text())
    page = build_report(outputs, out=outputs / "r.md").path.read_text()
    row = next(line for line in page.splitlines() if line.startswith("| Peak RAM (project) |"))
    number, unit = row.split("|")[2].split()
    assert float(number) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[unit] == pytest.approx(
        summary["peak_ram_mb"] * 1024**2, rel=0.01)
    assert "MiB" not in page and "KiB" not in page
