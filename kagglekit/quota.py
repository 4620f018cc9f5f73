"""``kagglekit quota``: the weekly accelerator quota, live from Kaggle and explained by the ledger.

Kaggle's ``GetAcceleratorQuotaStatistics`` gives used / reserved / total per accelerator and
the refresh time, and nothing else. This module adds what a user needs to plan:

- this week's runs from the ledger and what each cost; the part of Kaggle's count that
  kagglekit never saw (interactive sessions) as the difference;
- a forecast: hours left, how many more runs like each kernel's last full run fit, whether
  a new session would be admitted now (Kaggle's rule: used + reserved < total), and the
  sessions running against the per-account cap;
- the 20 GB ``/kaggle/working`` budget per kernel;
- :func:`preflight`, which ``push`` calls before an accelerator run.

Totals are never hard-coded (accounts get 30, 45, 60 h...): they come from the API. When the
API cannot be reached the report falls back to the ledger and the last reading kept on disk,
and says plainly that it is an estimate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit import paths
from kagglekit.constants import (
    MAX_BATCH_SESSIONS,
    OUTPUT_BUDGET_BYTES,
    QUOTA_WEEK_START_WEEKDAY,
    SESSION_LIMIT_SECONDS,
    STATUS_QUEUED,
)
from kagglekit.display import countdown, quota_time, size
from kagglekit.errors import CLI, CredentialsError, KagglekitError, KaggleRefusedError
from kagglekit.ledger import (
    KIND_UNKNOWN,
    Ledger,
    RunRecord,
    is_real_account,
    utcnow,
)
from kagglekit.watch import ensure_times

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient

ACCELERATORS = ("gpu", "tpu")
BUDGET_WARN_FRACTION = 0.8
LAST_READING_FILE = "quota-last.json"


def week_window(now: datetime, refresh_time: datetime | None = None) -> tuple[datetime, datetime]:
    """The quota week containing ``now``: [Saturday 00:00 UTC, next Saturday 00:00 UTC).

    When the server's ``quotaRefreshTime`` is known it wins: the week is the 7 days before
    it (the server's clock, e.g. the emulator's offset clock, is the one that counts).
    """
    if refresh_time is not None:
        end = refresh_time.astimezone(UTC)
        return end - timedelta(days=7), end
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=(midnight.weekday() - QUOTA_WEEK_START_WEEKDAY) % 7)
    return start, start + timedelta(days=7)


@dataclasses.dataclass
class AcceleratorUsage:
    """One accelerator's week: Kaggle's numbers (None in an estimate) next to the ledger's."""

    kind: str
    used_s: float | None
    reserved_s: float | None
    total_s: float | None
    seen_s: float  # what kagglekit's ledger accounts for this week
    not_seen_s: float | None  # used - seen: interactive sessions, runs pushed by other tools
    remaining_s: float | None  # total - used
    available_s: float | None  # total - used - reserved: what new runs can still count on
    admits_new_session: bool | None  # used + reserved < total

    @property
    def used_fraction(self) -> float | None:
        if self.used_s is None or not self.total_s:
            return None
        return self.used_s / self.total_s


@dataclasses.dataclass
class WeekRun:
    """One accelerator run this week, and its cost in quota seconds (clipped to the week)."""

    kernel: str
    version: int
    kind: str
    mode: str | None
    status: str | None
    start: datetime | None
    end: datetime | None
    cost_s: float
    source: str | None  # where the duration came from: run.json / log / polling
    active: bool


@dataclasses.dataclass
class KernelForecast:
    kernel: str
    kind: str
    version: int
    run_s: float
    how: str
    runs_fit: int | None  # more runs like that one that fit in what is available


@dataclasses.dataclass
class KernelBudget:
    kernel: str
    version: int
    output_bytes: int | None
    peak_working_bytes: int | None
    budget_bytes: int
    used_fraction: float
    warning: str | None


@dataclasses.dataclass
class QuotaReport:
    estimate: bool  # True: the API could not be reached; the ledger (and a kept reading) only
    source: str
    account: str | None
    now: datetime
    week_start: datetime
    refresh_time: datetime
    refresh_local: str
    refresh_in_s: float
    gpu: AcceleratorUsage
    tpu: AcceleratorUsage
    runs: list[WeekRun]
    forecasts: list[KernelForecast]
    sessions_running: dict[str, int]
    session_cap: dict[str, int]
    budgets: list[KernelBudget]
    messages: list[str]
    reason: str | None = None  # why it is an estimate: "no Kaggle credentials", "API unreachable", ...

    def usage(self, kind: str) -> AcceleratorUsage:
        return self.gpu if kind == "gpu" else self.tpu


@dataclasses.dataclass
class PreflightAdvice:
    """What ``push`` should know before starting an accelerator run: ok False = warn (or refuse, --strict)."""

    ok: bool
    messages: list[str]
    expected_seconds: float | None
    how_obtained: str


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.endswith("s"):
        with contextlib.suppress(ValueError):
            return float(value[:-1])
    return None


def _acc_numbers(acc: Any) -> tuple[float | None, float | None, float | None]:
    """(used, reserved, total) seconds from the client's AcceleratorQuota, spelled either way."""
    if acc is None or getattr(acc, "reported", True) is False:
        return None, None, None

    def pick(*names: str) -> float | None:
        for name in names:
            value = acc.get(name) if isinstance(acc, dict) else getattr(acc, name, None)
            secs = _seconds(value)
            if secs is not None:
                return secs
        return None

    return (pick("used_seconds", "used_s", "time_used", "timeUsed"),
            pick("reserved_seconds", "reserved_s", "time_reserved", "timeReserved"),
            pick("total_seconds", "total_s", "total_time_allowed", "totalTimeAllowed"))


def admits(used: float, reserved: float, total: float) -> bool:
    """Kaggle's admission rule for a new accelerator session (kaggle-prod-behaviour §4): it starts while
    the hours used plus what running sessions reserve up to their limit stay under the allowance. The
    push preflight and the queue (kagglekit/queue.py) both predict refusals with it."""
    return used + reserved < total


def quota_numbers(info: Any, kind: str) -> tuple[float | None, float | None, float | None, datetime | None]:
    """(used, reserved, total, refresh) for ``kind`` from a ``client.quota()`` answer (None: not reported)."""
    used, reserved, total = _acc_numbers(getattr(info, kind, None))
    return used, reserved, total, _refresh_of(info)


def _refresh_of(info: Any) -> datetime | None:
    value = info.get("refresh_time") if isinstance(info, dict) else getattr(info, "refresh_time", None)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _reading_path() -> Path:
    return paths.data_dir() / LAST_READING_FILE


READING_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class QuotaReading:
    """The last live quota kagglekit read for one account, kept on disk for offline estimates."""

    account: str
    read_at: datetime
    refresh_time: datetime | None
    numbers: dict[str, tuple[float | None, float | None, float | None]]  # kind -> (used, reserved, total) s
    current: bool  # read in the quota week that holds ``now``: its usage still counts

    def left_hours(self) -> dict[str, float]:
        """Hours left by accelerator (total - used); empty unless the reading is from this week."""
        if not self.current:
            return {}
        left = {}
        for kind, (used, _, total) in self.numbers.items():
            if used is not None and total is not None:
                left[kind] = max(0.0, total - used) / 3600
        return left


def _read_all_readings() -> dict[str, Any]:
    try:
        data = json.loads(_reading_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != READING_FORMAT or not isinstance(data.get("readings"), dict):
        return {}  # an older single-reading file could be the emulator's: start again
    return {k: v for k, v in data["readings"].items() if isinstance(k, str) and isinstance(v, dict)}


def _save_reading(account: str | None, info: Any, now: datetime) -> None:
    """Keep this reading under its account (one per account: the emulator's never hides a real one)."""
    if not account:
        return
    data: dict[str, Any] = {"read_at": now.isoformat()}
    refresh = _refresh_of(info)
    data["refresh_time"] = refresh.isoformat() if refresh else None
    for kind in ACCELERATORS:
        used, reserved, total = _acc_numbers(getattr(info, kind, None))
        data[kind] = {"used_s": used, "reserved_s": reserved, "total_s": total}
    readings = _read_all_readings()
    readings[account] = data
    with contextlib.suppress(OSError):
        paths.write_text_atomic(_reading_path(), json.dumps({"format": READING_FORMAT, "readings": readings},
                                                            indent=1, sort_keys=True))


def _parse_reading(account: str, data: dict[str, Any], now: datetime) -> QuotaReading | None:
    def when(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    read_at = when(data.get("read_at"))
    if read_at is None:
        return None
    refresh = when(data.get("refresh_time"))
    numbers = {}
    for kind in ACCELERATORS:
        raw = data.get(kind)
        if not isinstance(raw, dict):
            raw = {}
        numbers[kind] = (_seconds(raw.get("used_s")), _seconds(raw.get("reserved_s")), _seconds(raw.get("total_s")))
    if refresh is not None:
        current = refresh - timedelta(days=7) <= now < refresh
    else:
        start, end = week_window(read_at)
        current = start <= now < end
    return QuotaReading(account, read_at, refresh, numbers, current)


def last_reading(account: str | None = None, now: datetime | None = None) -> QuotaReading | None:
    """The last live quota reading of ``account``; with None, the newest of a real Kaggle account
    (never the emulator's or another server's). ``current`` says whether it is from this week."""
    now = (now or utcnow()).astimezone(UTC)
    found = []
    for name, data in _read_all_readings().items():
        if (name == account) if account is not None else is_real_account(name):
            reading = _parse_reading(name, data, now)
            if reading is not None:
                found.append(reading)
    return max(found, key=lambda r: r.read_at, default=None)


def _span(run: RunRecord, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Best guess of when a run held its machine."""
    start, end, dur = run.started_at, run.ended_at, run.duration_s
    if start is None and end is not None and dur is not None:
        start = end - timedelta(seconds=dur)
    if start is None and run.active and run.status != STATUS_QUEUED:
        start = run.status_seen_at or run.pushed_at
    if start is None and dur is not None:
        start = run.pushed_at
    if end is None and start is not None and dur is not None:
        end = start + timedelta(seconds=dur)
    if end is None and start is not None and run.active:
        end = now
    return start, end


def week_runs(runs: Iterable[RunRecord], week_start: datetime, week_end: datetime, now: datetime) -> list[WeekRun]:
    """Accelerator runs that overlap the week, each with its cost clipped to the week."""
    out = []
    for run in runs:
        kind = run.kind
        if kind not in ACCELERATORS:
            continue
        start, end = _span(run, now)
        if start is None or end is None:
            if run.pushed_at is not None and week_start <= run.pushed_at < week_end:
                out.append(WeekRun(run.kernel, run.version, kind, run.mode, run.status, start, end, 0.0,
                                   run.duration_source, run.active))
            continue
        lo, hi = max(start, week_start), min(end, week_end)
        if hi <= lo and not (week_start <= start < week_end):
            continue
        cost = max(0.0, (hi - lo).total_seconds())
        out.append(WeekRun(run.kernel, run.version, kind, run.mode, run.status, start, end, cost,
                           run.duration_source, run.active))
    out.sort(key=lambda r: (r.start or week_start, r.kernel, r.version))
    return out


def refresh_active(client: KaggleApiClient | None, ledger: Ledger, account: str | None, limit: int = 20) -> list[str]:
    """Ask Kaggle about runs the ledger still thinks are queued/running; record what it says."""
    if client is None:
        return []
    problems = []
    for run in ledger.active_runs(account)[-limit:]:
        try:
            st = client.status(run.kernel_ref)
        except KagglekitError as exc:
            problems.append(f"{run.ref}: {exc.message}")
            continue
        status = getattr(st, "status", st)
        name = str(getattr(status, "name", status)).rsplit(".", 1)[-1].upper()
        ledger.record_status(run.account, run.kernel, run.version, name,
                             failure_message=getattr(st, "failure_message", None) or None)
    return problems


def sessions_running(ledger: Ledger, account: str | None) -> dict[str, int]:
    counts = {"gpu": 0, "tpu": 0, "cpu": 0}
    for run in ledger.active_runs(account):
        counts[run.kind] = counts.get(run.kind, 0) + 1
    return counts


ENSURE_TIMES_LIMIT = 20  # log requests one quota report may make for runs without a duration


def _reason_of(exc: BaseException) -> str:
    from kagglekit.errors import CredentialsError

    return "credentials not accepted" if isinstance(exc, CredentialsError) else "API unreachable"


def _pick_account(ledger: Ledger, reading: QuotaReading | None, messages: list[str]) -> str | None:
    """Without a client: the real Kaggle account to estimate for (never the emulator's)."""
    runs = [r for r in ledger.runs() if is_real_account(r.account)]
    accounts = sorted({r.account for r in runs})
    if reading is not None:
        chosen: str | None = reading.account
    elif runs:
        chosen = max(runs, key=lambda r: r.updated_at or r.pushed_at or utcnow()).account
    else:
        chosen = None
    others = [a for a in accounts if a != chosen]
    if chosen is not None and others:
        messages.append(f"Showing {chosen}; the ledger also holds runs of {', '.join(others)}.")
    return chosen


def quota_report(client: KaggleApiClient | None, ledger: Ledger, now: datetime | None = None,
                 account: str | None = None, reason: str | None = None) -> QuotaReport:
    """Live quota (if ``client`` can reach the API) merged with the ledger; else a ledger estimate.

    The ledger and the kept readings are keyed by ``client.account`` (``name@local`` for the
    emulator). Without a client only real Kaggle accounts are estimated, and ``reason`` (e.g.
    "no Kaggle credentials", "API unreachable") says why it is an estimate.
    Phases: read live -> choose the week -> count the week's runs -> usage per accelerator -> advice.
    """
    now = (now or utcnow()).astimezone(UTC)
    messages: list[str] = []
    info: Any = None
    if client is not None:
        try:
            account = account or client.account
            info = client.quota()
        except (KagglekitError, OSError) as exc:
            messages.append(f"Could not read the live quota ({getattr(exc, 'message', exc)}).")
            reason = reason or _reason_of(exc)
            info = None
    estimate = info is None
    if estimate:
        reason = reason or "no API client"
    reading: QuotaReading | None = None
    if estimate:
        reading = last_reading(account, now)
        if account is None:
            account = _pick_account(ledger, reading, messages)
    else:
        _save_reading(account, info, now)
        problems = refresh_active(client, ledger, account)
        messages.extend(f"Could not refresh {p}" for p in problems)

    refresh = _refresh_of(info) if info is not None else None
    if refresh is None and reading is not None and reading.current:
        refresh = reading.refresh_time
    week_start, week_end = week_window(now, refresh)
    records = _week_records(client if not estimate else None, ledger, account, week_start, week_end, messages)
    runs = week_runs(records, week_start, week_end, now)
    usages = {kind: _usage(kind, runs, info, reading) for kind in ACCELERATORS}
    cap = dict(MAX_BATCH_SESSIONS)
    running = sessions_running(ledger, account) if account is not None else {"gpu": 0, "tpu": 0, "cpu": 0}
    forecasts = _forecasts(ledger, records, usages, account)
    budgets = _budgets(records)
    if estimate:
        messages.append(_estimate_note(reason, reading, account))
    messages += _advice(usages["gpu"], running, cap, budgets)
    local = week_end.astimezone()
    return QuotaReport(
        estimate=estimate, source=f"estimate (ledger; {reason})" if estimate else "live (GetAcceleratorQuotaStatistics)",
        account=account, now=now, week_start=week_start, refresh_time=week_end,
        refresh_local=local.strftime("%a %Y-%m-%d %H:%M %Z"),
        refresh_in_s=max(0.0, (week_end - now).total_seconds()), gpu=usages["gpu"], tpu=usages["tpu"],
        runs=runs, forecasts=forecasts, sessions_running=running, session_cap=cap, budgets=budgets,
        messages=messages, reason=reason if estimate else None,
    )


def _week_records(client: KaggleApiClient | None, ledger: Ledger, account: str | None, week_start: datetime,
                  week_end: datetime, messages: list[str]) -> list[RunRecord]:
    """The account's runs (durations filled from logs when ``client`` is live); warns of unknown accelerators."""
    if account is None:
        return []  # nothing but the emulator's (or other servers') runs: none are Kaggle's
    if client is not None:
        _fill_durations(client, ledger, account, week_start)
    records = ledger.runs(account=account)
    unknown = [r for r in records if r.kind == KIND_UNKNOWN and _in_week(r, week_start, week_end)]
    if unknown:
        names = ", ".join(r.ref for r in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        messages.append(f"{len(unknown)} run(s) this week have an unknown accelerator and are not counted as "
                        f"seen ({names}): pull their outputs (kagglekit/run.json says what they asked for).")
    return records


def _usage(kind: str, runs: list[WeekRun], info: Any, reading: QuotaReading | None) -> AcceleratorUsage:
    """One accelerator's week: Kaggle's figures when live, else the kept reading and the ledger's runs."""
    seen = sum(r.cost_s for r in runs if r.kind == kind)
    if info is not None:
        used, reserved, total = _acc_numbers(getattr(info, kind, None))
    elif reading is not None:
        kept_used, _, total = reading.numbers.get(kind, (None, None, None))
        used = max(seen, kept_used or 0.0) if reading.current else seen
        reserved = None
    else:
        used, reserved, total = seen, None, None
    remaining = available = None
    admits = None
    if total is not None and used is not None:
        remaining = max(0.0, total - used)
        available = max(0.0, total - used - (reserved or 0.0))
        admits = used + (reserved or 0.0) < total
    not_seen = (used - seen) if (info is not None and used is not None) else None
    return AcceleratorUsage(kind, used, reserved, total, seen, not_seen, remaining, available, admits)


def _estimate_note(reason: str | None, reading: QuotaReading | None, account: str | None) -> str:
    """Why the figures are an estimate, and what they are made of."""
    if reading is not None:
        when = f"{reading.read_at:%Y-%m-%d %H:%M} UTC"
        if reading.current:
            return (f"ESTIMATE ({reason}) from kagglekit's ledger and the last reading of the quota "
                    f"for {reading.account} ({when}); sessions not started by kagglekit are missing.")
        return (f"ESTIMATE ({reason}) from kagglekit's ledger; the last reading of the quota for "
                f"{reading.account} ({when}) is from an earlier week, so only its allowance is used.")
    if account is None:
        return (f"ESTIMATE ({reason}): kagglekit's ledger holds no run of a Kaggle account "
                "(emulator runs are kept apart), and no quota was ever read.")
    return (f"ESTIMATE ({reason}) from kagglekit's ledger only: the allowance is unknown until "
            "the API answers once; sessions not started by kagglekit are missing.")


def _advice(gpu: AcceleratorUsage, running: dict[str, int], cap: dict[str, int],
            budgets: list[KernelBudget]) -> list[str]:
    """What a user should know before the next push: mismatches, a refused session, output budgets."""
    messages = []
    if gpu.not_seen_s is not None and gpu.not_seen_s < -60:
        messages.append(f"kagglekit's ledger counts {quota_time(-gpu.not_seen_s)} more GPU time than Kaggle "
                        "(times from polling are upper bounds).")
    if gpu.admits_new_session is False:
        if gpu.used_s is not None and gpu.total_s is not None and gpu.used_s >= gpu.total_s:
            messages.append("A new GPU session would be refused now: the weekly quota is used up "
                            "(it refreshes at the date above).")
        else:
            messages.append("A new GPU session would be refused now (\"projected to exceed\", not used up): used + "
                            "the reservations of running sessions have reached the allowance. When one of them "
                            "ends or is stopped, its reservation is freed.")
    if running.get("gpu", 0) >= cap["gpu"]:
        messages.append(f"{running['gpu']} GPU sessions are running: the cap is {cap['gpu']}, "
                        "a new GPU push would be refused.")
    messages += [budget.warning for budget in budgets if budget.warning]
    return messages


def _in_week(run: RunRecord, week_start: datetime, week_end: datetime) -> bool:
    times = (run.started_at, run.ended_at, run.pushed_at, run.status_seen_at)
    return run.active or any(t is not None and week_start <= t < week_end for t in times)


def _fill_durations(client: KaggleApiClient, ledger: Ledger, account: str, week_start: datetime) -> None:
    """This week's finished runs without a duration get one from their saved logs (bounded)."""
    missing = [r for r in ledger.runs(account=account, since=week_start) if r.finished and r.duration_s is None]
    for run in missing[-ENSURE_TIMES_LIMIT:]:
        ensure_times(client, ledger, account, run.kernel_ref)


def _forecasts(ledger: Ledger, records: list[RunRecord], usages: dict[str, AcceleratorUsage],
               account: str | None) -> list[KernelForecast]:
    out = []
    seen: set[tuple[str, str]] = set()
    for rec in reversed(records):
        if rec.kind not in ACCELERATORS or (rec.account, rec.kernel) in seen:
            continue
        seen.add((rec.account, rec.kernel))
        expected, how, version = expected_duration(ledger, rec.account, rec.kernel, "full")
        if expected is None or version is None:
            continue
        available = usages[rec.kind].available_s
        fit = int(available // expected) if (available is not None and expected > 0) else None
        out.append(KernelForecast(rec.kernel, rec.kind, version, expected, how, fit))
    out.sort(key=lambda f: f.kernel)
    return out


def _budgets(records: list[RunRecord]) -> list[KernelBudget]:
    latest: dict[str, RunRecord] = {}
    for rec in records:
        if rec.output_bytes is None and rec.peak_working_bytes is None:
            continue
        old = latest.get(rec.kernel)
        if old is None or rec.version > old.version:
            latest[rec.kernel] = rec
    out = []
    for kernel, rec in sorted(latest.items()):
        biggest = max(rec.output_bytes or 0, rec.peak_working_bytes or 0)
        fraction = biggest / OUTPUT_BUDGET_BYTES
        warning = None
        if fraction >= BUDGET_WARN_FRACTION:
            warning = (f"{kernel} v{rec.version} used {_gb(biggest)} of the {_gb(OUTPUT_BUDGET_BYTES)} "
                       "/kaggle/working budget: keep fewer checkpoints (or write scratch files to /kaggle/tmp).")
        out.append(KernelBudget(kernel, rec.version, rec.output_bytes, rec.peak_working_bytes,
                                OUTPUT_BUDGET_BYTES, fraction, warning))
    return out


def expected_duration(ledger: Ledger, account: str | None, kernel: str,
                      mode: str | None) -> tuple[float | None, str, int | None]:
    """How long a run of ``kernel`` in ``mode`` is expected to take, from the ledger, and how we know.

    The last COMPLETE run of the same kernel and mode; a run without a recorded mode is used only
    when no run has one. Returns (seconds or None, explanation, version).
    """
    runs = [r for r in ledger.runs(kernel=kernel, account=account) if r.complete and r.elapsed_s()]
    same = [r for r in runs if mode is None or r.mode == mode]
    label = f"{mode} " if mode else ""
    if not same:
        unknown = [r for r in runs if r.mode is None]
        if unknown:
            same, label = unknown, "(mode unknown) "
    if not same:
        return None, f"no complete {label}run of {kernel} in the ledger yet", None
    last = max(same, key=lambda r: r.version)
    secs = last.elapsed_s()
    assert secs is not None
    src = last.duration_source or "start/end times"
    return secs, f"the last complete {label}run of {kernel} (v{last.version}: {quota_time(secs)}, from {src})", \
        last.version


UNKNOWN_RUN_FLOOR_S = 3600.0  # a kernel with no complete run in the ledger: assume it needs this much


def preflight(client: KaggleApiClient | None, ledger: Ledger, account: str, kernel: str, mode: str | None,
              kind: str, limit_s: float | None = None) -> PreflightAdvice:
    """Before a push: will Kaggle admit it, and does the quota cover the run's expected length?

    ``ok`` is False when the caller should warn (or, with --strict, refuse): Kaggle would refuse
    the session (used + reserved >= total, or the session cap is reached), or what is left of the
    quota is less than the run is expected to take. With no history, the run is assumed to need
    an hour (or its ``limit_s`` session limit, if shorter): silence would be a guess that it fits.
    """
    kind = kind.lower()
    expected, how, _ = expected_duration(ledger, account, kernel, mode)
    if kind not in ACCELERATORS:
        return PreflightAdvice(True, [], expected, how)
    notes: list[str] = []  # what could not be checked: advice, not a "no"
    if client is not None:
        notes += [f"Could not refresh {p}" for p in refresh_active(client, ledger, account)]
    refusals = _session_cap(ledger, account, kind)
    if client is not None:
        try:
            info = client.quota()
        except CredentialsError:
            raise  # the push would fail the same way: say it once, as the error it is
        except (KagglekitError, OSError) as exc:
            unread = (f"Could not read the live quota ({getattr(exc, 'message', exc)}); "
                      "the quota was not checked.")
            return PreflightAdvice(not refusals, [*notes, *refusals, unread], expected, how)
        refusals += _quota_shortfall(info, ledger, account, kind, expected, how, limit_s)
    return PreflightAdvice(not refusals, notes + refusals, expected, how)


def _session_cap(ledger: Ledger, account: str, kind: str) -> list[str]:
    """Kaggle's concurrent-session cap: a "no" when this account's ``kind`` sessions already fill it."""
    running = [r for r in ledger.active_runs(account) if r.kind == kind]
    cap = MAX_BATCH_SESSIONS.get(kind, 2)
    if len(running) < cap:
        return []
    names = ", ".join(f"{r.kernel} v{r.version} ({(r.status or '').lower()})" for r in running)
    return [f"{len(running)} {kind.upper()} sessions are already running ({names}); Kaggle allows "
            f"{cap} at once and would refuse this push."]


def _quota_shortfall(info: Any, ledger: Ledger, account: str, kind: str, expected: float | None, how: str,
                     limit_s: float | None) -> list[str]:
    """The live quota's "no"s: Kaggle would not admit the session, or what is left will not cover the run."""
    used, reserved, total, refresh = quota_numbers(info, kind)
    if used is None or total is None:
        return []
    reserved = reserved or 0.0
    if not admits(used, reserved, total):
        # Kaggle's admission rule: a new session starts only while used + reserved < allowance.
        if used >= total:
            return [f"Kaggle would refuse a new {kind.upper()} session now: the weekly quota is used "
                    f"up ({quota_time(used)} of {quota_time(total)}); {_refreshes(refresh)}."]
        holders = _holders_text(reservations(ledger, account, kind, reserved))
        return [f"Kaggle would refuse a new {kind.upper()} session now (\"projected to exceed\", not used up): "
                f"{quota_time(used)} used + {quota_time(reserved)} reserved by running sessions{holders} >= "
                f"the {quota_time(total)} allowance. When one of them ends or is stopped, its reservation is "
                "freed."]
    available = total - used - reserved
    left = (f"Only {quota_time(available)} of {kind.upper()} quota is left after running sessions' reservations "
            f"({_refreshes(refresh)})")
    if expected is not None and available < expected:
        return [f"{left}, less than the {quota_time(expected)} this run is expected to take ({how}). It would "
                "start, but use up the week's quota."]
    floor = min(UNKNOWN_RUN_FLOOR_S, limit_s or UNKNOWN_RUN_FLOOR_S)
    if expected is None and available < floor:
        limit = f"; it may run up to its {quota_time(limit_s)} limit" if limit_s else ""
        return [f"{left}, and {how}, so how long this run takes is unknown{limit}. It would start, but may use "
                "up the week's quota."]
    return []


# --------------------------------------------------------------------------- refusals: used up vs projected


PROJECTED_MARK = "projected to exceed"


def reservations(ledger: Ledger, account: str, kind: str, reserved_s: float | None,
                 now: datetime | None = None) -> list[tuple[RunRecord, float]]:
    """The running sessions of ``kind`` (as the ledger last saw them) and how much of Kaggle's reserved
    total each holds: what it may still use up to its session limit, scaled to Kaggle's figure.

    Kaggle reports only the total; kagglekit splits it by each session's remaining allowance
    (12 h, TPU 9 h, minus its time so far), so the figures add up to what Kaggle says.
    """
    now = now or utcnow()
    limit = float(SESSION_LIMIT_SECONDS.get(kind, 12 * 3600))
    runs = [r for r in ledger.active_runs(account) if r.kind == kind]
    shares = []
    for run in runs:
        began = run.started_at or run.pushed_at
        elapsed = max(0.0, (now - began).total_seconds()) if began is not None else 0.0
        shares.append(max(0.0, limit - elapsed))
    total_share = sum(shares)
    if reserved_s is None or total_share <= 0:
        return list(zip(runs, shares, strict=True))
    return [(run, reserved_s * share / total_share) for run, share in zip(runs, shares, strict=True)]


def _holders_text(held: list[tuple[RunRecord, float]]) -> str:
    if not held:
        return " (none started by kagglekit: interactive sessions or other tools hold it)"
    return " (" + ", ".join(f"{run.kernel} v{run.version} holds {quota_time(secs)}" for run, secs in held) + ")"


def _refreshes(refresh: datetime | None) -> str:
    if refresh is None:
        return "it refreshes on Saturday at 00:00 UTC"
    left = (refresh - utcnow()).total_seconds()
    return f"it refreshes {refresh.astimezone(UTC):%a %Y-%m-%d %H:%M} UTC (in {countdown(left)})"


def explain_refusal(client: KaggleApiClient, ledger: Ledger, account: str, kind: str,
                    exc: KaggleRefusedError) -> KaggleRefusedError:
    """Kaggle's quota refusal, said as what it is: used up (and when the quota refreshes), or projected
    (which running sessions hold how much reservation; one ending or stopped frees it).

    Other refusals (the session cap, a bad source) come back unchanged.
    """
    text = exc.message
    lowered = text.lower()
    if "quota" not in lowered:
        return exc
    with contextlib.suppress(KagglekitError):
        refresh_active(client, ledger, account)
    used = reserved = total = None
    refresh: datetime | None = None
    with contextlib.suppress(KagglekitError, OSError):
        used, reserved, total, refresh = quota_numbers(client.quota(), kind)
    label = kind.upper()
    numbers = (f" ({quota_time(used)} used + {quota_time(reserved or 0.0)} reserved of {quota_time(total)})"
               if used is not None and total is not None else "")
    if PROJECTED_MARK in lowered:
        holders = reservations(ledger, account, kind, reserved)
        listed = ("; ".join(f"{run.kernel} v{run.version} ({(run.status or '?').lower()}) holds about "
                            f"{quota_time(secs)}" for run, secs in holders)
                  or "none started by kagglekit: interactive sessions or other tools hold it")
        message = (f"{text}\nThis is the projected refusal, not used up{numbers}: Kaggle admits a new {label} session "
                   f"only while used + reserved stays under the allowance, and each running session reserves what "
                   f"it may still use up to its limit. Running {label} sessions: {listed}.")
        hint = ("When one of them ends or is stopped, its reservation is freed and the push is admitted: wait for it "
                f"({CLI} status --watch), or stop one in Kaggle's web UI, then push again. Kaggle's reserved "
                "figure moves; retrying later can work.")
        return KaggleRefusedError(message, hint, http_status=exc.http_status, api_status=exc.api_status,
                                  api_message=exc.api_message)
    message = f"{text}\nThe weekly {label} quota is used up{numbers}; {_refreshes(refresh)}."
    hint = (f"Wait for the refresh, or push without --{kind} (CPU sessions have no weekly quota). "
            f"`{CLI} quota` shows the week.")
    return KaggleRefusedError(message, hint, http_status=exc.http_status, api_status=exc.api_status,
                              api_message=exc.api_message)


def _gb(n: float | None) -> str:
    """Output sizes in the quota report: two decimals, ``?`` when unknown."""
    return size(n, digits=2, unknown="?")


def format_report(report: QuotaReport) -> str:
    """The human report ``kagglekit quota`` prints."""
    lines = []
    head = f"ESTIMATE ({report.reason or 'API unreachable'})" if report.estimate else "live"
    who = f" for {report.account}" if report.account else ""
    lines.append(f"Accelerator quota{who} — {head}")
    lines.append(f"  week: {report.week_start:%a %Y-%m-%d %H:%M} UTC -> refresh {report.refresh_time:%a %Y-%m-%d %H:%M}"
                 f" UTC ({report.refresh_local} local), in {countdown(report.refresh_in_s)}")
    lines.append("")
    lines.append(f"  {'':4} {'used':>10} {'reserved':>10} {'total':>10} {'left':>10} {'seen':>10} {'not seen':>10}"
                 "  new session")
    for usage in (report.gpu, report.tpu):
        admit = {True: "admitted", False: "REFUSED", None: "?"}[usage.admits_new_session]
        lines.append(f"  {usage.kind.upper():4} {quota_time(usage.used_s):>10} {quota_time(usage.reserved_s):>10} "
                     f"{quota_time(usage.total_s):>10} {quota_time(usage.remaining_s):>10} {quota_time(usage.seen_s):>10} "
                     f"{quota_time(usage.not_seen_s):>10}  {admit}")
    lines.append("  (seen = runs in kagglekit's ledger; not seen = the rest of Kaggle's count: interactive "
                 "sessions, other tools)")
    lines.append("")
    cap = report.session_cap
    lines.append("  sessions running: " + ", ".join(
        f"{k.upper()} {report.sessions_running.get(k, 0)}/{cap.get(k, '?')}" for k in ("gpu", "tpu", "cpu")))
    lines.append("")
    if report.runs:
        lines.append("  this week's accelerator runs:")
        for run in report.runs:
            when = f"{run.start:%a %H:%M}" if run.start else "?"
            state = (run.status or "?").lower()
            lines.append(f"    {when:>9}  {run.kernel} v{run.version} [{run.kind}, {run.mode or '?'}] "
                         f"{quota_time(run.cost_s)} ({run.source or 'no times yet'}), {state}")
    else:
        lines.append("  no accelerator runs in kagglekit's ledger this week")
    if report.forecasts:
        lines.append("")
        lines.append("  forecast (runs like each kernel's last full run):")
        for f in report.forecasts:
            fit = "?" if f.runs_fit is None else str(f.runs_fit)
            lines.append(f"    {f.kernel}: {fit} more fit ({quota_time(f.run_s)} each; {f.how})")
    if report.budgets:
        lines.append("")
        lines.append(f"  /kaggle/working budget ({_gb(OUTPUT_BUDGET_BYTES)} per version):")
        for b in report.budgets:
            lines.append(f"    {b.kernel} v{b.version}: output {_gb(b.output_bytes)}, "
                         f"peak {_gb(b.peak_working_bytes)} ({b.used_fraction:.0%})")
    if report.messages:
        lines.append("")
        lines.extend(f"  ! {m}" for m in report.messages)
    return "\n".join(lines)


def _cumulative(runs: list[WeekRun], kind: str, week_start: datetime, upto: datetime) -> tuple[
        list[datetime], list[float]]:
    """Cumulative quota hours through the week: each run adds its cost linearly while it runs."""
    spans = []
    for r in runs:
        if r.kind != kind or r.start is None or r.cost_s <= 0:
            continue
        lo = max(r.start, week_start)
        spans.append((lo, lo + timedelta(seconds=r.cost_s)))
    points = sorted({week_start, upto, *(t for s in spans for t in s if week_start <= t <= upto)})

    def total_at(t: datetime) -> float:
        return sum(max(0.0, (min(t, b) - a).total_seconds()) for a, b in spans if t > a) / 3600

    return points, [total_at(t) for t in points]


def plot_week(report: QuotaReport, path: Path | str, kind: str = "gpu") -> Path:
    """Draw the week: cumulative hours by day against the allowance, each run, the reset. PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(figsize=(11, 5.5), dpi=110)
    ax: Any = axes  # matplotlib's stubs do not admit datetimes on the x axis; it does
    try:
        top = _draw_usage(ax, report, kind)
        top = top * 1.15 if top > 0 else 1.0
        _draw_runs(ax, report, kind, top)
        _draw_frame(ax, report, kind, top)
        fig.tight_layout()
        with paths.atomic_writer(path, "wb", encoding=None) as fh:
            fig.savefig(fh, format="png")  # type: ignore[arg-type]
    finally:
        plt.close(fig)
    return path


def _draw_usage(ax: Any, report: QuotaReport, kind: str) -> float:
    """The cumulative hours seen, the allowance and Kaggle's own count; returns the highest value drawn."""
    usage = report.usage(kind)
    end_of_data = min(report.now, report.refresh_time)
    xs, ys = _cumulative(report.runs, kind, report.week_start, end_of_data)
    ax.plot(xs, ys, color="#1f77b4", linewidth=2,
            label=f"{kind.upper()} hours seen by kagglekit ({quota_time(usage.seen_s)})")
    ax.fill_between(xs, ys, color="#1f77b4", alpha=0.12)
    top = max([*ys, 0.0])
    if usage.total_s:
        total_h = usage.total_s / 3600
        ax.axhline(total_h, color="#d62728", linestyle="--", linewidth=1.5, label=f"weekly allowance ({total_h:.1f} h)")
        top = max(top, total_h)
    if usage.used_s is not None and not report.estimate:
        used_h = usage.used_s / 3600
        ax.plot([end_of_data], [used_h], marker="o", color="#ff7f0e", markersize=8, linestyle="none",
                label=f"Kaggle's count now ({used_h:.2f} h; not seen {quota_time(usage.not_seen_s)})")
        seen_h = ys[-1] if ys else 0.0
        if used_h > seen_h:  # the part kagglekit did not see (interactive sessions, other tools)
            ax.plot([end_of_data, end_of_data], [seen_h, used_h], color="#ff7f0e", linestyle=":", linewidth=2)
        if usage.reserved_s:
            ax.plot([end_of_data, end_of_data], [used_h, used_h + usage.reserved_s / 3600], color="#ff7f0e",
                    linewidth=4, alpha=0.5, label=f"reserved by running sessions ({quota_time(usage.reserved_s)})")
        top = max(top, used_h + (usage.reserved_s or 0) / 3600)
    return top


def _draw_runs(ax: Any, report: QuotaReport, kind: str, top: float) -> None:
    """Each run of ``kind`` as a band from its start, labelled with its kernel, version and cost."""
    palette = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    for i, run in enumerate(r for r in report.runs if r.kind == kind and r.start is not None):
        assert run.start is not None
        lo = max(run.start, report.week_start)
        hi = lo + timedelta(seconds=max(run.cost_s, 60.0))
        color = palette[i % len(palette)]
        ax.axvspan(lo, hi, color=color, alpha=0.25)
        slug = run.kernel.split("/")[-1]
        ax.annotate(f"{slug} v{run.version}  {quota_time(run.cost_s)}", xy=(lo, top * 0.97), fontsize=8,
                    rotation=90, va="top", ha="right", color=color)


def _draw_frame(ax: Any, report: QuotaReport, kind: str, top: float) -> None:
    """The reset, now, the axes, the title and the legend."""
    mdates: Any = __import__("matplotlib.dates", fromlist=["DayLocator"])  # untyped helpers
    ax.axvline(report.refresh_time, color="black", linewidth=1.5)
    ax.annotate(f"reset {report.refresh_time:%a %H:%M} UTC", xy=(report.refresh_time, top * 0.5),
                rotation=90, va="center", ha="right", fontsize=8)
    ax.axvline(report.week_start, color="grey", linewidth=1, linestyle=":")
    if report.week_start < report.now < report.refresh_time:
        ax.axvline(report.now, color="grey", linewidth=0.8, linestyle="--")
        ax.annotate("now", xy=(report.now, top * 0.02), fontsize=8, color="grey", ha="left")
    ax.set_xlim(report.week_start, report.refresh_time + timedelta(hours=3))
    ax.set_ylim(0, top)
    ax.xaxis.set_major_locator(mdates.DayLocator(tz=UTC))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d", tz=UTC))
    ax.set_ylabel(f"cumulative {kind.upper()} hours")
    ax.set_xlabel("day (UTC)")
    title = f"{kind.upper()} quota, week of {report.week_start:%Y-%m-%d}"
    if report.estimate:
        title += f" — ESTIMATE ({report.reason or 'API unreachable'})"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)  # runs are drawn late in the week, on the right


__all__ = [
    "AcceleratorUsage", "KernelBudget", "KernelForecast", "PreflightAdvice", "QuotaReading", "QuotaReport", "WeekRun",
    "expected_duration", "format_report", "last_reading", "plot_week", "preflight", "quota_report", "week_runs",
]
