"""The run ledger: concurrent writers, crashes, migrations, time sources, chains.

Real SQLite files and real OS processes: the guarantees that matter (two kagglekit
processes at once, a process killed mid-write) only show up that way.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kagglekit import ledger as ledger_mod
from kagglekit.display import accelerator_label, runs_table
from kagglekit.kernel_ref import KernelRef
from kagglekit.ledger import Ledger
from kagglekit.quota import week_window
from kagglekit.watch import ensure_times

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

WRITER = textwrap.dedent(
    """
    import sys
    from kagglekit.ledger import Ledger
    path, account, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    led = Ledger(path)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for v in range(1, n + 1):
        led.record_push(account, "demo/race-kernel", v, mode="full", machine_shape="NvidiaTeslaT4")
        led.record_status(account, "demo/race-kernel", v, "RUNNING")
    print("done", flush=True)
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=os.environ.copy(),
    )


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    """2 x 500 pushes (+ a status each) from two real processes, started together: all 1000 land."""
    path = tmp_path / "ledger.sqlite3"
    procs = [_spawn(WRITER, str(path), account, "500") for account in ("alice", "bob")]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
    led = Ledger(path)
    assert led.count() == 1000
    for account in ("alice", "bob"):
        runs = led.runs(account=account)
        assert sorted(r.version for r in runs) == list(range(1, 501))
        assert all([e.status for e in r.statuses] == ["QUEUED", "RUNNING"] for r in runs)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM status_events").fetchone()[0] == 2000


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from kagglekit.ledger import Ledger
    led = Ledger(sys.argv[1])
    for v in range(1, 11):
        led.record_push("alice", "demo/crash-kernel", v, mode="full")
    with led._transaction() as conn:
        for v in range(11, 21):
            led._ensure_run(conn, "alice", "demo/crash-kernel", v)
        print("inside", flush=True)
        time.sleep(120)
    """
)


def test_a_writer_killed_inside_a_transaction_loses_nothing_committed(tmp_path: Path) -> None:
    """SIGKILL while a write transaction is open: committed runs stay, the half transaction vanishes,
    the file is consistent and the next writer is not blocked by a dead lock."""
    path = tmp_path / "ledger.sqlite3"
    proc = _spawn(KILLED_WRITER, str(path))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    led = Ledger(path)
    assert sorted(r.version for r in led.runs()) == list(range(1, 11))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    started = time.monotonic()
    led.record_push("alice", "demo/crash-kernel", 11, mode="full")
    assert time.monotonic() - started < 5
    assert led.count() == 11


def test_old_schema_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    """A ledger left at schema 1 by an older kagglekit upgrades on open, rows intact."""
    path = tmp_path / "ledger.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(ledger_mod._MIGRATIONS[0])
    con.execute(
        "INSERT INTO runs (account, kernel, version, status, created_at, updated_at) "
        "VALUES ('alice', 'demo/old-kernel', 3, 'COMPLETE', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    led = Ledger(path)
    assert led.schema_version == ledger_mod.SCHEMA_VERSION > 1
    old = led.get("alice", "demo/old-kernel", 3)
    assert old is not None and old.status == "COMPLETE"
    led.record_manifest("alice", "demo/old-kernel", 3, {"duration_s": 12.5})  # uses the v2 column
    rec = led.get("alice", "demo/old-kernel", 3)
    assert rec is not None and rec.duration_s == 12.5


def test_a_newer_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {ledger_mod.SCHEMA_VERSION + 5}")
    con.commit()
    con.close()
    with pytest.raises(ledger_mod.LedgerError) as info:
        Ledger(path)
    assert "newer" in info.value.message and info.value.hint


def test_time_sources_only_improve(tmp_path: Path) -> None:
    """polling < log < run.json: a worse source never overwrites a better one; each time says its source."""
    clock = [T0]
    led = Ledger(tmp_path / "l.sqlite3", clock=lambda: clock[0])
    led.record_push("alice", "alice/train-kernel", 1, mode="full", machine_shape="NvidiaTeslaT4")
    assert led.record_status("alice", "alice/train-kernel", 1, "RUNNING", seen_at=T0 + timedelta(seconds=30))
    assert not led.record_status("alice", "alice/train-kernel", 1, "RUNNING", seen_at=T0 + timedelta(seconds=60))
    led.record_status("alice", "alice/train-kernel", 1, "COMPLETE", seen_at=T0 + timedelta(seconds=630))
    rec = led.get("alice", "alice/train-kernel", 1)
    assert rec is not None
    assert (rec.duration_s, rec.duration_source, rec.started_source) == (600.0, "polling", "polling")
    assert [e.status for e in rec.statuses] == ["QUEUED", "RUNNING", "COMPLETE"]

    led.record_times("alice", "alice/train-kernel", 1, "log", duration_s=590.5)
    rec = led.get("alice", "alice/train-kernel", 1)
    assert rec is not None and (rec.duration_s, rec.duration_source) == (590.5, "log")

    led.record_manifest("alice", "alice/train-kernel", 1, {
        "started_at": "2026-11-20T10:00:40Z", "ended_at": "2026-11-20T10:10:20Z",
        "peak_working_bytes": 123456, "peak_rss_bytes": 789, "mode": "full"})
    rec = led.get("alice", "alice/train-kernel", 1)
    assert rec is not None
    assert (rec.duration_s, rec.duration_source, rec.started_source) == (580.0, "run.json", "run.json")
    assert (rec.peak_working_bytes, rec.peak_rss_bytes) == (123456, 789)

    # Later polling and a later log reading leave the exact figures alone.
    led.record_times("alice", "alice/train-kernel", 1, "log", duration_s=1.0)
    led.record_times("alice", "alice/train-kernel", 1, "polling", started_at=T0)
    rec = led.get("alice", "alice/train-kernel", 1)
    assert rec is not None and (rec.duration_s, rec.started_at) == (580.0, T0 + timedelta(seconds=40))


def test_a_stale_poll_does_not_revive_a_finished_run(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite3")
    led.record_status("alice", "alice/some-kernel", 2, "COMPLETE")
    assert not led.record_status("alice", "alice/some-kernel", 2, "RUNNING")
    rec = led.get("alice", "alice/some-kernel", 2)
    assert rec is not None and rec.status == "COMPLETE" and not led.active_runs()


def test_last_run_and_chain(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite3")
    k = "alice/long-train"
    led.record_push("alice", k, 1, mode="test")
    led.record_status("alice", k, 1, "COMPLETE")
    led.record_push("alice", k, 2, mode="full")
    led.record_status("alice", k, 2, "COMPLETE")
    led.record_push("alice", k, 3, mode="full", parent_version=2)
    led.record_status("alice", k, 3, "COMPLETE")
    led.record_push("alice", k, 4, mode="full", resume_from="alice/long-train/v3")
    led.record_push("alice", k, 5, mode="full")
    led.record_status("alice", k, 5, "ERROR", failure_message="boom")

    last_full = led.last_run("alice", k, mode="full")
    last_test = led.last_run("alice", k, mode="test")
    any_last = led.last_run("alice", k, complete=False)
    assert last_full is not None and last_full.version == 3
    assert last_test is not None and last_test.version == 1
    assert any_last is not None and any_last.version == 5 and any_last.failure_message == "boom"
    assert [r.version for r in led.chain("alice", k, 4)] == [2, 3, 4]
    assert [r.version for r in led.chain("alice", k, 1)] == [1]
    assert [r.version for r in led.active_runs()] == [4]


def test_runs_filters(tmp_path: Path) -> None:
    clock = [T0]
    led = Ledger(tmp_path / "l.sqlite3", clock=lambda: clock[0])
    led.record_push("alice", "alice/kernel-a", 1, pushed_at=T0 - timedelta(days=10))
    led.record_status("alice", "alice/kernel-a", 1, "COMPLETE", seen_at=T0 - timedelta(days=10))
    led.record_push("alice", "alice/kernel-b", 1, pushed_at=T0)
    led.record_push("bob", "bob/kernel-c", 1, pushed_at=T0)
    assert [r.kernel for r in led.runs(account="alice")] == ["alice/kernel-a", "alice/kernel-b"]
    assert [r.kernel for r in led.runs(kernel="bob/kernel-c")] == ["bob/kernel-c"]
    assert [r.kernel for r in led.runs(since=T0 - timedelta(days=1))] == ["alice/kernel-b", "bob/kernel-c"]


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 11, 27, 12, 0, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),  # Friday
        (datetime(2026, 11, 28, 0, 0, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)),  # Sat 00:00 exactly
        (datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
    ],
)
def test_week_window_starts_saturday_midnight_utc(now: datetime, start: datetime) -> None:
    assert week_window(now) == (start, start + timedelta(days=7))
    assert start.weekday() == 5


def test_a_run_first_seen_by_status_has_an_unknown_accelerator_until_run_json_says(tmp_path: Path) -> None:
    """A GPU run pushed with the official CLI and first seen by `status` is not taken for a CPU run;
    its run.json (accelerator.requested) fills the kind in. The table says cpu / gpu T4 x2, never None."""
    led = Ledger(tmp_path / "l.sqlite3")
    led.record_status("alice", "alice/gpu-elsewhere", 1, "RUNNING")
    rec = led.get("alice", "alice/gpu-elsewhere", 1)
    assert rec is not None and rec.accelerator is None and rec.kind == "unknown"
    led.record_manifest("alice", "alice/gpu-elsewhere", 1, {"accelerator": {"requested": "NvidiaTeslaT4"}})
    rec = led.get("alice", "alice/gpu-elsewhere", 1)
    assert rec is not None and (rec.kind, rec.machine_shape) == ("gpu", "NvidiaTeslaT4")

    led.record_push("alice", "alice/cpu-kernel", 1, machine_shape="None")  # how a CPU push is recorded
    led.record_push("alice", "alice/tpu-kernel", 1, machine_shape="TpuV5E8")
    led.record_manifest("alice", "alice/cpu-kernel", 1, {"accelerator": {"requested": "NvidiaTeslaT4"}})
    cpu = led.get("alice", "alice/cpu-kernel", 1)
    assert cpu is not None and cpu.kind == "cpu", "what kagglekit pushed is not overwritten"
    led.record_status("alice", "alice/never-pulled", 1, "COMPLETE")

    labels = {r.kernel: accelerator_label(r) for r in led.runs()}
    assert labels == {"alice/gpu-elsewhere": "gpu T4 x2", "alice/cpu-kernel": "cpu",
                      "alice/tpu-kernel": "tpu v5e-8", "alice/never-pulled": "unknown"}
    table = runs_table(led.runs())
    assert "None" not in table and "gpu T4 x2" in table and "unknown" in table


def test_runs_table_says_which_kernel_has_no_runs() -> None:
    assert runs_table([], kernel="alice/missing") == "No runs of alice/missing in the ledger."
    assert runs_table([]).startswith("No runs in the ledger yet")


def _log(*offsets: float) -> str:
    import json

    return json.dumps([{"stream_name": "stdout", "time": t, "data": f"line at {t}\n"} for t in offsets])


def test_ensure_times_places_the_logs_span_inside_what_polling_saw(tmp_path: Path) -> None:
    """QUEUED then straight COMPLETE: no start, no duration. The log's last - first offset is the
    duration (source log), ending by the first final status seen; RUNNING seen bounds it sooner."""
    led = Ledger(tmp_path / "l.sqlite3")
    k = "alice/log-timed"
    led.record_push("alice", k, 1, machine_shape="NvidiaTeslaT4", pushed_at=T0)
    led.record_status("alice", k, 1, "COMPLETE", seen_at=T0 + timedelta(seconds=600))
    before = led.get("alice", k, 1)
    assert before is not None and before.duration_s is None and before.elapsed_s() is None

    rec = ensure_times(None, led, "alice", KernelRef.parse(k).with_version(1), log_text=_log(2.0, 50.0, 302.0))
    assert rec is not None and (rec.duration_s, rec.duration_source) == (300.0, "log")
    assert (rec.started_at, rec.ended_at) == (T0 + timedelta(seconds=300), T0 + timedelta(seconds=600))
    assert (rec.started_source, rec.ended_source) == ("log", "log")

    led.record_push("alice", k, 2, machine_shape="NvidiaTeslaT4", pushed_at=T0)
    led.record_status("alice", k, 2, "RUNNING", seen_at=T0 + timedelta(seconds=100))
    led.record_status("alice", k, 2, "COMPLETE", seen_at=T0 + timedelta(seconds=900))
    rec = ensure_times(None, led, "alice", KernelRef.parse(k).with_version(2), log_text=_log(1.0, 301.0))
    assert rec is not None and rec.duration_s == 300.0
    assert (rec.started_at, rec.ended_at) == (T0 + timedelta(seconds=100), T0 + timedelta(seconds=400))

    # Not for a run still going, nor over run.json's exact figures; a one-instant log says nothing.
    led.record_push("alice", k, 3, pushed_at=T0)
    going = ensure_times(None, led, "alice", KernelRef.parse(k).with_version(3), log_text=_log(1.0, 9.0))
    assert going is not None and going.duration_s is None
    led.record_manifest("alice", k, 2, {"duration_s": 123.0, "status": "complete"})
    rec = ensure_times(None, led, "alice", KernelRef.parse(k).with_version(2), log_text=_log(1.0, 500.0))
    assert rec is not None and (rec.duration_s, rec.duration_source) == (123.0, "run.json")
    led.record_status("alice", k, 4, "ERROR", seen_at=T0)
    rec = ensure_times(None, led, "alice", KernelRef.parse(k).with_version(4), log_text=_log(7.0))
    assert rec is not None and rec.duration_s is None


def test_push_overrides_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record_push("alice", "alice/k-chain", 1, mode="full", overrides={"n_epoch": "60", "lr": "3e-4"})
    ledger.record_push("alice", "alice/k-chain", 2, mode="full")
    first, second = ledger.runs(kernel="alice/k-chain")
    assert first.overrides == {"lr": "3e-4", "n_epoch": "60"}
    assert second.overrides is None


@pytest.mark.parametrize("seconds, shown", [
    (0.00107, "0.0s"), (0.46, "0.5s"), (0.97, "1.0s"), (2.2913, "2.29s"), (42.34, "42.3s"), (59.6, "1m 00s"),
    (187, "3m 07s"), (3907, "1h 05m 07s"), (None, ""),
])
def test_durations_read_as_a_person_writes_them(seconds: float | None, shown: str) -> None:
    """Under a second: tenths (a run first seen RUNNING a millisecond after it started read '0.00107s')."""
    from kagglekit.display import duration

    assert duration(seconds) == shown
