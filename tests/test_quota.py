"""quota: Kaggle's live numbers (from the emulator, which really ran the GPU kernels) merged with
the ledger, the Saturday-00:00-UTC week, the forecast, the session cap, the push preflight, the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kagglekit.api.client import KaggleApiClient
from kagglekit.api.transport import RetryPolicy
from kagglekit.constants import DEMO_KEY, DEMO_USERNAME, OUTPUT_BUDGET_BYTES
from kagglekit.credentials import demo_credentials
from kagglekit.download import pull_outputs
from kagglekit.ledger import Ledger
from kagglekit.quota import format_report, plot_week, preflight, quota_report
from tests.helpers import make_kernel

FAST = RetryPolicy(status_retries=2, connect_retries=1, read_retries=1, backoff_factor=0.01, backoff_max=0.05,
                   jitter=0.0)
HOUR = 3600.0
ACCOUNT = f"{DEMO_USERNAME}@local"  # KaggleApiClient.account on the emulator: kept apart from real Kaggle

GPU_SCRIPT = textwrap.dedent(
    """
    import json, os, time
    from datetime import datetime, timezone
    t0 = time.time()
    time.sleep({sleep})
    t1 = time.time()
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()
    os.makedirs("kagglekit", exist_ok=True)
    json.dump({{"mode": "full", "status": "complete", "started_at": iso(t0), "ended_at": iso(t1),
               "duration_s": t1 - t0, "peak_working_bytes": 1000,
               "accelerator": {{"requested": "NvidiaTeslaT4", "seen": "cpu"}}}}, open("kagglekit/run.json", "w"))
    """
)


@pytest.fixture
def client(emulator: Any) -> Iterator[KaggleApiClient]:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c:
        yield c


def gpu_run(emulator: Any, client: KaggleApiClient, ledger: Ledger, tmp_path: Path, slug: str,
            sleep: float = 0.5, wait: bool = True, recorded_push: bool = True) -> int:
    """Push a GPU kernel and record it the way `kagglekit push` / `status` do (push, then polled statuses);
    ``recorded_push=False``: pushed by another tool, so the ledger only sees the polled statuses."""
    pushed = client.push(make_kernel(tmp_path / f"src-{slug}-{time.monotonic_ns()}", slug,
                                     GPU_SCRIPT.format(sleep=sleep), machine_shape="NvidiaTeslaT4"))
    assert pushed.version is not None
    if recorded_push:
        ledger.record_push(client.account, f"{DEMO_USERNAME}/{slug}", pushed.version, mode="full",
                           machine_shape="NvidiaTeslaT4")
    if wait:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = client.status(pushed.ref)
            ledger.record_status(client.account, f"{DEMO_USERNAME}/{slug}", pushed.version, st.status)
            if st.is_final:
                break
            time.sleep(0.05)
        assert st.status == "COMPLETE"
    return pushed.version


def server_quota(emulator: Any) -> dict[str, Any]:
    return emulator.rpc("GetAcceleratorQuotaStatistics", {})  # type: ignore[no-any-return]


def secs(duration: str) -> float:
    return float(duration.rstrip("s"))


# --------------------------------------------------------------------------- live numbers


def test_quota_equals_the_emulators_after_a_few_runs_and_shows_what_kagglekit_did_not_see(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    ledger = Ledger()
    for slug in ("quota-run-a", "quota-run-b", "quota-run-a"):
        gpu_run(emulator, client, ledger, tmp_path, slug, sleep=0.6)
    for slug, version in (("quota-run-a", 2), ("quota-run-b", 1), ("quota-run-a", 1)):
        pull_outputs(client, f"{DEMO_USERNAME}/{slug}/{version}", target=tmp_path / slug / str(version),
                     ledger=ledger, progress=False)  # exact times from run.json
    report = quota_report(client, ledger)
    server = server_quota(emulator)

    assert not report.estimate
    assert report.gpu.used_s == pytest.approx(secs(server["gpuQuota"]["timeUsed"]), abs=0.01)
    assert report.gpu.total_s == secs(server["gpuQuota"]["totalTimeAllowed"])
    assert report.tpu.total_s == secs(server["tpuQuota"]["totalTimeAllowed"])
    assert report.refresh_time == datetime.fromisoformat(server["quotaRefreshTime"].replace("Z", "+00:00"))
    assert report.week_start == report.refresh_time - timedelta(days=7)
    assert len(report.runs) == 3 and all(r.source == "run.json" for r in report.runs)
    # What the ledger saw is what Kaggle counted, up to the kernel's start-up time.
    assert report.gpu.not_seen_s is not None and 0 <= report.gpu.not_seen_s < 3 * 1.0
    assert report.gpu.seen_s == pytest.approx(sum(r.cost_s for r in report.runs))

    # An interactive session kagglekit never saw shows up as the difference.
    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 2 * HOUR})
    later = quota_report(client, ledger)
    assert later.gpu.used_s == pytest.approx(secs(server_quota(emulator)["gpuQuota"]["timeUsed"]), abs=0.01)
    assert later.gpu.not_seen_s is not None and 2 * HOUR <= later.gpu.not_seen_s < 2 * HOUR + 3
    text = format_report(later)
    assert "live" in text and "quota-run-a v2" in text and "not seen" in text


def test_forecast_admission_and_the_output_budget(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    emulator.control("config", {"gpu_quota_seconds": 10 * HOUR})
    ledger = Ledger()
    kernel = f"{DEMO_USERNAME}/long-train"
    ledger.record_push(ACCOUNT, kernel, 1, mode="full", machine_shape="NvidiaTeslaT4")
    ledger.record_status(ACCOUNT, kernel, 1, "COMPLETE")
    ledger.record_manifest(ACCOUNT, kernel, 1, {"started_at": "2020-01-01T00:00:00Z",
                                                      "ended_at": "2020-01-01T03:00:00Z",
                                                      "peak_working_bytes": 5 * 1000**3})
    ledger.record_outputs(ACCOUNT, kernel, 1, 17 * 1000**3, 12)

    report = quota_report(client, ledger)
    (forecast,) = report.forecasts
    assert (forecast.kernel, forecast.run_s, forecast.runs_fit) == (kernel, 3 * HOUR, 3)  # 10 h / 3 h
    assert "v1" in forecast.how and "run.json" in forecast.how
    assert report.gpu.admits_new_session is True
    (budget,) = report.budgets
    assert (budget.output_bytes, budget.peak_working_bytes, budget.budget_bytes) == (
        17 * 1000**3, 5 * 1000**3, OUTPUT_BUDGET_BYTES)
    assert budget.warning and any("17.00 GB" in m for m in report.messages)

    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 10 * HOUR})
    full = quota_report(client, ledger)
    assert full.gpu.admits_new_session is False and full.forecasts[0].runs_fit == 0
    assert any("would be refused" in m for m in full.messages)


# --------------------------------------------------------------------------- the week


def next_saturday(now: datetime) -> datetime:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=(5 - midnight.weekday()) % 7 or 7)


@pytest.mark.parametrize("side", ["before", "after"])
def test_the_week_turns_at_saturday_midnight_utc_on_the_servers_clock(
        emulator: Any, client: KaggleApiClient, side: str) -> None:
    """Shift the emulator's clock to one hour before / after a Saturday 00:00 UTC: Kaggle's usage and
    kagglekit's week both turn exactly there; a run spanning the reset is split at it."""
    real_now = datetime.now(UTC)
    saturday = next_saturday(real_now)
    server_now = saturday + timedelta(hours=-1 if side == "before" else 1)
    emulator.control("clock", {"offset_seconds": (server_now - real_now).total_seconds()})
    if side == "after":  # prior usage, logged in the old week: the reset forgets it
        emulator.control("clock", {"offset_seconds": (saturday - timedelta(hours=2) - real_now).total_seconds()})
        emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 5 * HOUR})
        emulator.control("clock", {"offset_seconds": (server_now - real_now).total_seconds()})

    ledger = Ledger()
    kernel = f"{DEMO_USERNAME}/week-kernel"
    spans = {1: (-3.0, -2.0), 2: (-0.5, 0.5), 3: (0.25, 0.75)}  # hours around the reset
    for version, (a, b) in spans.items():
        ledger.record_push(ACCOUNT, kernel, version, mode="full", machine_shape="NvidiaTeslaT4",
                           pushed_at=saturday + timedelta(hours=a - 0.1))
        ledger.record_status(ACCOUNT, kernel, version, "COMPLETE", seen_at=saturday + timedelta(hours=b))
        ledger.record_manifest(ACCOUNT, kernel, version, {
            "started_at": (saturday + timedelta(hours=a)).isoformat(),
            "ended_at": (saturday + timedelta(hours=b)).isoformat()})

    report = quota_report(client, ledger, now=server_now)
    server = server_quota(emulator)
    refresh = datetime.fromisoformat(server["quotaRefreshTime"].replace("Z", "+00:00"))
    if side == "before":
        assert refresh == saturday
        assert report.week_start == saturday - timedelta(days=7) and report.refresh_time == saturday
        costs = {r.version: r.cost_s for r in report.runs}
        assert costs == {1: HOUR, 2: 0.5 * HOUR}  # v2 split at the reset; v3 is next week
    else:
        assert refresh == saturday + timedelta(days=7)
        assert report.week_start == saturday and report.week_start.weekday() == 5
        assert (report.week_start.hour, report.week_start.minute) == (0, 0)
        assert secs(server["gpuQuota"]["timeUsed"]) == 0.0 and report.gpu.used_s == 0.0  # reset
        costs = {r.version: r.cost_s for r in report.runs}
        assert costs == {2: 0.5 * HOUR, 3: 0.5 * HOUR}  # v2 split at the reset; v1 was last week


# --------------------------------------------------------------------------- sessions and preflight


def test_two_running_gpu_sessions_block_a_third_and_preflight_says_why(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    ledger = Ledger()
    for slug in ("busy-one", "busy-two"):
        gpu_run(emulator, client, ledger, tmp_path, slug, sleep=60, wait=False)
        emulator.wait_for_status(DEMO_USERNAME, slug, statuses={"RUNNING"})
    try:
        report = quota_report(client, ledger)
        assert report.sessions_running["gpu"] == 2 and report.session_cap["gpu"] == 2
        assert any("2 GPU sessions are running" in m for m in report.messages)
        advice = preflight(client, ledger, ACCOUNT, f"{DEMO_USERNAME}/third-kernel", "full", "gpu")
        assert not advice.ok and any("busy-one" in m and "busy-two" in m for m in advice.messages)
        cpu = preflight(client, ledger, ACCOUNT, f"{DEMO_USERNAME}/third-kernel", "full", "cpu")
        assert cpu.ok and cpu.messages == []
    finally:
        for slug in ("busy-one", "busy-two"):
            emulator.control("cancel", {"owner": DEMO_USERNAME, "slug": slug})
    for slug in ("busy-one", "busy-two"):
        emulator.wait_for_status(DEMO_USERNAME, slug)
    after = quota_report(client, ledger)  # refreshed from Kaggle: the ledger learns they ended
    assert after.sessions_running["gpu"] == 0
    assert {r.status for r in ledger.runs()} == {"CANCEL_ACKNOWLEDGED"}


def test_preflight_compares_the_quota_left_with_this_kernels_history(emulator: Any, client: KaggleApiClient) -> None:
    emulator.control("config", {"gpu_quota_seconds": 4 * HOUR})
    ledger = Ledger()
    kernel = f"{DEMO_USERNAME}/history-kernel"

    fresh = preflight(client, ledger, ACCOUNT, kernel, "full", "gpu")
    assert fresh.ok and fresh.expected_seconds is None and "no complete full run" in fresh.how_obtained

    ledger.record_push(ACCOUNT, kernel, 1, mode="full", machine_shape="NvidiaTeslaT4")
    ledger.record_status(ACCOUNT, kernel, 1, "COMPLETE")
    ledger.record_manifest(ACCOUNT, kernel, 1, {"duration_s": 3 * HOUR, "status": "complete"})
    ledger.record_push(ACCOUNT, kernel, 2, mode="test", machine_shape="NvidiaTeslaT4")
    ledger.record_status(ACCOUNT, kernel, 2, "COMPLETE")
    ledger.record_manifest(ACCOUNT, kernel, 2, {"duration_s": 60.0, "status": "complete"})

    roomy = preflight(client, ledger, ACCOUNT, kernel, "full", "gpu")
    assert roomy.ok and roomy.expected_seconds == 3 * HOUR and "v1" in roomy.how_obtained

    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 2 * HOUR})
    tight = preflight(client, ledger, ACCOUNT, kernel, "full", "gpu")
    assert not tight.ok and tight.expected_seconds == 3 * HOUR
    assert any("2.00 h" in m and "3.00 h" in m and "run.json" in m for m in tight.messages)
    test_mode = preflight(client, ledger, ACCOUNT, kernel, "test", "gpu")  # a 1-minute smoke run fits
    assert test_mode.ok and test_mode.expected_seconds == 60.0

    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 2 * HOUR})
    refused = preflight(client, ledger, ACCOUNT, kernel, "test", "gpu")
    assert not refused.ok and any("would refuse" in m for m in refused.messages)


# --------------------------------------------------------------------------- offline, plot, CLI


def test_unreachable_api_gives_a_ledger_estimate_marked_as_such(emulator: Any, client: KaggleApiClient,
                                                                tmp_path: Path) -> None:
    ledger = Ledger()
    gpu_run(emulator, client, ledger, tmp_path, "offline-kernel", sleep=0.3)
    live = quota_report(client, ledger)  # also keeps this reading for later
    # The emulator on another port is still the emulator (name@local): its kept reading applies.
    with KaggleApiClient(demo_credentials(), endpoint="http://127.0.0.1:9", timeout=(0.5, 0.5), retry=FAST) as down:
        report = quota_report(down, ledger)
    assert report.estimate and "estimate" in report.source and report.account == ACCOUNT
    assert report.gpu.total_s == live.gpu.total_s  # from the kept reading, not a constant
    assert report.gpu.not_seen_s is None and [r.kernel for r in report.runs] == [f"{DEMO_USERNAME}/offline-kernel"]
    assert any(m.startswith("Could not read the live quota") for m in report.messages)
    assert "ESTIMATE (API unreachable)" in format_report(report)


def test_without_a_client_the_estimate_is_a_real_accounts_never_the_emulators(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """No credentials: the emulator's demo runs and its kept reading must not pass for the real quota;
    the report says why it is an estimate; a real account's runs and reading are used."""
    from kagglekit import quota
    from kagglekit.api.types import AcceleratorQuota, QuotaInfo

    ledger = Ledger()
    gpu_run(emulator, client, ledger, tmp_path, "emulated-kernel", sleep=0.2)
    quota_report(client, ledger)  # keeps the emulator's reading (demo@local)

    bare = quota_report(None, ledger, reason="no Kaggle credentials")
    assert bare.estimate and bare.account is None and bare.runs == []
    assert bare.gpu.seen_s == 0 and bare.gpu.total_s is None and bare.forecasts == [] and bare.budgets == []
    text = format_report(bare)
    assert "ESTIMATE (no Kaggle credentials)" in text and "emulated-kernel" not in text

    now = datetime.now(UTC)
    real = "alice/real-kernel"
    ledger.record_push("alice", real, 1, mode="full", machine_shape="NvidiaTeslaT4", pushed_at=now - timedelta(hours=2))
    ledger.record_status("alice", real, 1, "COMPLETE", seen_at=now - timedelta(minutes=50))
    ledger.record_manifest("alice", real, 1, {"started_at": (now - timedelta(hours=2)).isoformat(),
                                              "ended_at": (now - timedelta(hours=1)).isoformat()})
    week_end = quota_report(None, ledger).refresh_time  # the Saturday-based week (no server to ask)
    info = QuotaInfo(gpu=AcceleratorQuota(used_seconds=5 * HOUR, total_seconds=30 * HOUR),
                     tpu=AcceleratorQuota(used_seconds=0, total_seconds=20 * HOUR), refresh_time=week_end)
    quota._save_reading("alice", info, now)
    with_real = quota_report(None, ledger, reason="no Kaggle credentials")
    assert with_real.account == "alice" and [r.kernel for r in with_real.runs] == [real]
    assert with_real.gpu.seen_s == pytest.approx(HOUR, abs=1)
    assert (with_real.gpu.used_s, with_real.gpu.total_s) == (5 * HOUR, 30 * HOUR)

    # A reading from an earlier week: its allowance still tells, its usage no longer does.
    stale = QuotaInfo(gpu=AcceleratorQuota(used_seconds=29 * HOUR, total_seconds=30 * HOUR),
                      tpu=info.tpu, refresh_time=week_end - timedelta(days=7))
    quota._save_reading("alice", stale, now - timedelta(days=7))
    reading = quota.last_reading("alice")
    assert reading is not None and not reading.current and reading.left_hours() == {}
    old = quota_report(None, ledger, reason="no Kaggle credentials")
    assert old.gpu.total_s == 30 * HOUR and old.gpu.used_s == pytest.approx(HOUR, abs=1)
    assert any("earlier week" in m for m in old.messages)


def test_a_run_seen_queued_then_complete_gets_its_cost_from_the_log(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """No RUNNING was seen and there is no run.json: quota fetches the saved log and counts its span,
    instead of listing the run as "0.0 min (no times yet)"."""
    slug = "log-cost-kernel"
    script = "import time\nprint('start', flush=True)\ntime.sleep(0.8)\nprint('end', flush=True)\n"
    pushed = client.push(make_kernel(tmp_path / "src", slug, script, machine_shape="NvidiaTeslaT4"))
    assert pushed.version is not None
    kernel = f"{DEMO_USERNAME}/{slug}"
    ledger = Ledger()
    ledger.record_push(client.account, kernel, pushed.version, mode="full", machine_shape="NvidiaTeslaT4")
    assert emulator.wait_for_status(DEMO_USERNAME, slug, pushed.version) == "COMPLETE"
    ledger.record_status(client.account, kernel, pushed.version, "COMPLETE")  # QUEUED -> COMPLETE

    report = quota_report(client, ledger)
    (run,) = report.runs
    assert run.source == "log" and 0.7 <= run.cost_s < 15.0  # the 0.8 s between the prints; more under load
    assert "no times yet" not in format_report(report)
    rec = ledger.get(client.account, kernel, pushed.version)
    assert rec is not None and rec.duration_s == pytest.approx(run.cost_s)


def test_a_gpu_run_first_seen_by_status_is_not_taken_for_cpu(emulator: Any, client: KaggleApiClient,
                                                             tmp_path: Path) -> None:
    """Pushed with the official CLI, seen first by `status`: its accelerator is unknown (said so), and
    once its outputs are pulled (run.json: accelerator.requested) its time counts as seen GPU time."""
    ledger = Ledger()
    version = gpu_run(emulator, client, ledger, tmp_path, "elsewhere-kernel", sleep=0.3, recorded_push=False)
    kernel = f"{DEMO_USERNAME}/elsewhere-kernel"
    before = quota_report(client, ledger)
    assert before.runs == [] and before.gpu.seen_s == 0
    assert any("unknown accelerator" in m and f"{kernel}/{version}" in m for m in before.messages)

    pull_outputs(client, f"{kernel}/{version}", target=tmp_path / "pulled", ledger=ledger, progress=False)
    after = quota_report(client, ledger)
    assert [(r.kernel, r.kind, r.source) for r in after.runs] == [(kernel, "gpu", "run.json")]
    assert after.gpu.seen_s > 0 and not any("unknown accelerator" in m for m in after.messages)


@pytest.mark.parametrize(("endpoint", "account"), [
    ("https://api.kaggle.com", DEMO_USERNAME),
    ("http://127.0.0.1:8765", f"{DEMO_USERNAME}@local"),
    ("http://127.9.9.9:1234/api", f"{DEMO_USERNAME}@local"),
    ("http://localhost:9", f"{DEMO_USERNAME}@local"),
    ("http://[::1]:8080", f"{DEMO_USERNAME}@local"),
    ("https://kaggle-proxy.example.com:8443/k", f"{DEMO_USERNAME}@kaggle-proxy.example.com"),
])
def test_the_account_key_says_which_server(endpoint: str, account: str) -> None:
    """The ledger and quota readings are keyed by it: the emulator (any port) never mixes with Kaggle."""
    with KaggleApiClient(demo_credentials(), endpoint=endpoint) as c:
        assert c.username == DEMO_USERNAME and c.account == account


def test_plot_of_the_week(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    import matplotlib.image

    ledger = Ledger()
    for slug in ("plot-kernel-a", "plot-kernel-b"):
        gpu_run(emulator, client, ledger, tmp_path, slug, sleep=0.3)
    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 4 * HOUR})
    out = plot_week(quota_report(client, ledger), tmp_path / "week.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(out).shape[:2]
    assert (width, height) == (1210, 605)


def test_cli_quota_runs_and_pull_outputs(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    ledger = Ledger()
    gpu_run(emulator, client, ledger, tmp_path, "cli-kernel", sleep=0.2)
    env = {**os.environ, "KAGGLE_USERNAME": DEMO_USERNAME, "KAGGLE_KEY": DEMO_KEY}

    def kk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kagglekit", "--endpoint", emulator.url, *args],
                              env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    quota = kk("quota", "--json", "--plot", str(tmp_path / "q.png"))
    assert quota.returncode == 0, quota.stderr
    data = json.loads(quota.stdout)
    assert data["gpu"]["total_s"] == secs(server_quota(emulator)["gpuQuota"]["totalTimeAllowed"])
    assert data["estimate"] is False and (tmp_path / "q.png").stat().st_size > 10_000

    pulled = kk("pull-outputs", f"{DEMO_USERNAME}/cli-kernel", "--json")
    assert pulled.returncode == 0, pulled.stderr
    summary = json.loads(pulled.stdout)
    assert summary["target"] == str(tmp_path / "outputs" / "cli-kernel" / "v1") and summary["files"] == 1

    project = tmp_path / "project"  # inside a project, KERNEL defaults to the project's kernel
    project.mkdir()
    (project / "kagglekit.toml").write_text(f'kernel = "{DEMO_USERNAME}/cli-kernel"\n')
    again = subprocess.run([sys.executable, "-m", "kagglekit", "--endpoint", emulator.url, "pull-outputs"],
                           env=env, capture_output=True, text=True, timeout=60, cwd=project)
    assert again.returncode == 0, again.stderr
    assert (project / "outputs" / "cli-kernel" / "v1" / "kagglekit" / "run.json").is_file()

    runs = kk("runs", "--json")
    (run,) = json.loads(runs.stdout)
    assert (run["kernel"], run["version"], run["status"], run["duration_source"]) == (
        f"{DEMO_USERNAME}/cli-kernel", 1, "COMPLETE", "run.json")
    table = kk("runs", "--kernel", "cli-kernel")
    assert "cli-kernel" in table.stdout and "exact" in table.stdout

    missing = kk("pull-outputs", f"{DEMO_USERNAME}/no-such-kernel")
    assert missing.returncode == 5 and "Error:" in missing.stderr and "Traceback" not in missing.stderr
