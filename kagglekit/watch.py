"""Following a run: version-aware status, ``status --watch`` and ``logs [-f]``.

Right after a push, Kaggle's API can still describe the *previous* run of the
kernel. kagglekit never reports that as the new one: it asks for the version it
pushed (``versionLabel``), and when the API does not know that version yet it
says "queued (Kaggle has not registered vN yet)" instead of a stale status.

Kaggle as it is (docs/kaggle-facts.md): until a pushed run's session exists, status answers 404
"No runs found for this kernel." (a new private kernel 403 ``kernels.get``); that is waited through
for ``--start-grace`` (waiting.py), then "the push started no run" (exit 16). After the process
ends the version stays RUNNING while Kaggle saves the output, and its log is listed only then.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from kagglekit.constants import (
    FINAL_STATUSES,
    STATUS_CANCEL_ACKNOWLEDGED,
    STATUS_COMPLETE,
    STATUS_ERROR,
    STATUS_QUEUED,
    STATUS_RUNNING,
)
from kagglekit.display import duration
from kagglekit.errors import (
    CLI,
    ApiError,
    KagglekitError,
    NotFoundError,
    RunCancelledError,
    RunFailedError,
    RunNotFinishedError,
)
from kagglekit.kernel_ref import KernelRef
from kagglekit.ledger import SOURCE_LOG, SOURCE_POLLING, Ledger, RunRecord
from kagglekit.logs import LogRecord, parse_log, render_lines, session_span, tail
from kagglekit.waiting import DEFAULT_START_GRACE_S, Deadline, SaveWatcher, StartWindow, not_started_reason

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient

DEFAULT_INTERVAL_S = 30.0
LOG_TAIL_LINES = 25
OUTAGE_BUDGET_S = 15 * 60.0  # a watch keeps polling through this much network trouble (docs/network.md)
OUTAGE_MAX_WAIT_S = 60.0  # the longest pause between tries during an outage: recovery is noticed quickly


@dataclasses.dataclass
class StatusReport:
    """One look at a run, with what a user needs to act on it."""

    kernel: str
    version: int | None
    status: str
    failure_message: str | None = None
    elapsed_s: float | None = None
    note: str | None = None
    log_tail: str | None = None
    url: str | None = None

    @property
    def final(self) -> bool:
        return self.status in (STATUS_COMPLETE, STATUS_ERROR, STATUS_CANCEL_ACKNOWLEDGED)

    def line(self) -> str:
        ver = f" v{self.version}" if self.version else ""
        parts = [f"{self.kernel}{ver}: {self.status}"]
        if self.elapsed_s is not None:
            parts.append(f"({duration(self.elapsed_s)})")
        if self.note:
            parts.append(f"— {self.note}")
        return " ".join(parts)


def resolve_version(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None) -> tuple[KernelRef, str | None]:
    """Pick the version to describe: the one asked for, else the newest we pushed or Kaggle knows."""
    if ref.version is not None:
        return ref, None
    pushed = None
    if ledger is not None:
        runs = ledger.runs(kernel=ref.kernel_id, account=client.account)
        pushed = max((r.version for r in runs), default=None)
    try:
        current = client.get_kernel(ref).current_version
    except NotFoundError:
        if pushed is None:
            raise
        return ref.with_version(pushed), None  # e.g. a new private kernel's first moments: status says more
    if pushed is not None and (current is None or pushed > current):
        return ref.with_version(pushed), f"Kaggle has not registered v{pushed} yet (it knows v{current or 0})"
    return ref.with_version(current or pushed), None


def start_window(client: KaggleApiClient, ledger: Ledger | None, ref: KernelRef, grace_s: float, *,
                 watching_since: float | None = None, cli: str = "kagglekit") -> StartWindow:
    """The start grace for ``ref``: counted from its push when kagglekit pushed it (the ledger knows)."""
    pushed_at = None
    if ledger is not None and ref.version is not None:
        record = ledger.get(client.account, ref.kernel_id, ref.version)
        if record is not None and record.pushed_at is not None:
            pushed_at = record.pushed_at.timestamp()
    return StartWindow(grace_s, pushed_at=pushed_at, watching_since=watching_since, cli=cli)


def _where(ref: KernelRef) -> str:
    return f"{ref.kernel_id} v{ref.version}" if ref.version is not None else ref.kernel_id


def check_status(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None = None,
                 with_log_tail: bool = True, *, start_grace_s: float = DEFAULT_START_GRACE_S,
                 watching_since: float | None = None, cli: str = "kagglekit") -> StatusReport:
    """One status look at ``ref`` (newest version when none given), recorded in the ledger.

    Right after a push Kaggle answers "No runs found for this kernel." (or, for a new private kernel,
    403 ``kernels.get``) until the run's session exists: within ``start_grace_s`` of the push that is
    QUEUED with a "waiting for Kaggle to start the run" note; after it, ``RunNotStartedError`` (exit 16).
    """
    ref, note = resolve_version(client, ref, ledger)
    kernel = ref.kernel_id
    if note is not None:
        status, failure = STATUS_QUEUED, None
    else:
        try:
            st = client.status(ref)
            status, failure = st.status, st.failure_message
        except NotFoundError as exc:
            window = start_window(client, ledger, ref, start_grace_s, watching_since=watching_since, cli=cli)
            note = window.judge(exc, _where(ref))
            status, failure = STATUS_QUEUED, None
    report = StatusReport(kernel, ref.version, status, failure, note=note, url=client.web_url(ref))
    if ledger is not None and ref.version is not None:
        ledger.record_status(client.account, kernel, ref.version, status, failure_message=failure)
        if status in FINAL_STATUSES:
            ensure_times(client, ledger, client.account, ref)  # no request once it has a duration
        record = ledger.get(client.account, kernel, ref.version)
        if record is not None:
            report.elapsed_s = record.elapsed_s(datetime.now(UTC))
    if with_log_tail and status in (STATUS_ERROR, STATUS_CANCEL_ACKNOWLEDGED):
        try:
            report.log_tail = tail(client.get_log(ref), LOG_TAIL_LINES) or None
        except NotFoundError:
            report.log_tail = None
    return report


def watch(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None = None, *,
          interval_s: float = DEFAULT_INTERVAL_S, max_interval_s: float | None = None,
          on_change: Callable[[StatusReport], None] | None = None,
          on_problem: Callable[[str], None] | None = None,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic, start_grace_s: float = DEFAULT_START_GRACE_S,
          max_wait_s: float | None = None, cli: str = "kagglekit", follow_save: bool = True) -> StatusReport:
    """Poll until the run ends; back off while nothing changes (429s are the client's to honour).

    The interval starts at ``interval_s`` and grows by half each unchanged poll, up
    to ``max_interval_s`` (4x by default); any change resets it. A poll that fails with an
    ``ApiError`` (after the client's own retries) does not end the watch: it tries again, at most
    a minute apart, until the API has failed for ``OUTAGE_BUDGET_S`` (15 minutes) in a row.
    Until the run exists the start grace applies (``check_status``); ``max_wait_s`` ends the wait
    with ``RunNotFinishedError`` (exit 17), the run going on. While RUNNING, the live log is read
    in the background (``follow_save``) so the save phase shows as "saving outputs, N GB".
    """
    cap = max_interval_s if max_interval_s is not None else interval_s * 4
    deadline = Deadline(max_wait_s, clock)
    since = time.time()
    last: tuple[str, str | None] | None = None
    wait = interval_s
    outage = _Outage(interval_s, clock, on_problem)
    resolved = False
    saver: SaveWatcher | None = None
    try:
        while True:
            try:
                if not resolved:
                    ref, _ = resolve_version(client, ref, ledger)
                    resolved = True
                report = check_status(client, ref, ledger, start_grace_s=start_grace_s, watching_since=since,
                                      cli=cli)
            except ApiError as exc:  # network, 5xx, 429 after the client's retries: the run goes on regardless
                sleep(outage.failed(exc, ref))
                continue
            except NotFoundError as exc:
                if resolved:
                    raise  # check_status has applied the start grace already
                # A kernel pushed elsewhere a moment ago: a new private kernel answers 403 for a while.
                note = StartWindow(start_grace_s, watching_since=since, cli=cli).judge(exc, _where(ref))
                report = StatusReport(ref.kernel_id, ref.version, STATUS_QUEUED, note=note, url=client.web_url(ref))
            outage.ok()
            if report.status == STATUS_RUNNING and follow_save:
                if saver is None:
                    saver = SaveWatcher(functools.partial(client.stream_log, ref, max_failures=1)).start()
                report.note = saver.note() or report.note
            key = (report.status, report.note if report.note is None or report.status != STATUS_QUEUED
                   else report.note.split(" (")[0])  # the waiting note's clock does not count as a change
            if key != last:
                if on_change is not None:
                    on_change(report)
                last = key
                wait = interval_s
            else:
                wait = min(cap, wait * 1.5)
            if report.final:
                return report
            deadline.check(_where(ref), report.status, cli)
            sleep(deadline.sleep_for(wait * (1 + random.uniform(-0.1, 0.1))))
    finally:
        if saver is not None:
            saver.stop()


class _Outage:
    """How long the API has been failing in a row while watching, and when to try again."""

    def __init__(self, interval_s: float, clock: Callable[[], float],
                 on_problem: Callable[[str], None] | None) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.on_problem = on_problem
        self.since: float | None = None
        self.wait = 0.0

    def ok(self) -> None:
        self.since, self.wait = None, 0.0

    def failed(self, exc: ApiError, ref: KernelRef) -> float:
        """Seconds to wait before the next try; raises once the API has failed for ``OUTAGE_BUDGET_S``."""
        now = self.clock()
        self.since = now if self.since is None else self.since
        down = now - self.since
        if down >= OUTAGE_BUDGET_S:
            raise ApiError(
                f"{exc.message} The API has failed for {down / 60:.0f} minutes while watching {ref}; "
                "kagglekit stopped watching. The run itself keeps running on Kaggle.",
                f"Watch it again once the network is back: {CLI} status --watch {ref}",
            ) from exc
        self.wait = min(OUTAGE_MAX_WAIT_S, max(self.interval_s, self.wait * 1.5))
        if self.on_problem is not None:
            self.on_problem(f"{exc.message} Still watching (for up to {OUTAGE_BUDGET_S / 60:.0f} minutes of "
                            f"trouble); next try in {self.wait:.0f} s.")
        return self.wait


def _is_emulator(cli: str) -> bool:
    """Whether the command prefix (``kagglekit --local``, ``kagglekit --endpoint URL``) talks to an emulator."""
    words = cli.split()
    if "--local" in words:
        return True
    if "--endpoint" in words and words.index("--endpoint") + 1 < len(words):
        from kagglekit.identity import backend_key

        return backend_key(False, words[words.index("--endpoint") + 1]) == "local"
    return False


def raise_for_outcome(report: StatusReport, cli: str = "kagglekit") -> None:
    """Turn a final status into the documented exit: COMPLETE passes, ERROR 8, CANCEL_ACKNOWLEDGED 9."""
    where = f"{report.kernel} v{report.version}" if report.version else report.kernel
    detail = f": {report.failure_message}" if report.failure_message else ""
    tail_text = f"\n--- last lines of the log ---\n{report.log_tail}" if report.log_tail else ""
    if report.status == STATUS_ERROR:
        from kagglekit.advice import failure_advice

        advice = failure_advice(f"{report.failure_message or ''}\n{report.log_tail or ''}",
                                emulator=_is_emulator(cli))
        raise RunFailedError(f"The run {where} failed{detail}{tail_text}",
                             hint=(f"{advice}\n" if advice else "") + f"Full log: {cli} logs {where.replace(' v', '/')}")
    if report.status == STATUS_CANCEL_ACKNOWLEDGED:
        raise RunCancelledError(f"The run {where} was stopped{detail}{tail_text}",
                                hint=f"Its files are kept: {cli} pull-outputs. To go on from its checkpoint: "
                                     f"{cli} push --resume")


def log_text(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None = None,
             cli: str = "kagglekit") -> Iterator[str]:
    """The readable lines of a version's saved log (Kaggle keeps none until the run and its save end)."""
    ref, _ = resolve_version(client, ref, ledger)
    follow = f"Follow it live: {cli} logs -f {ref}"
    try:
        text = client.get_log(ref)
    except NotFoundError as exc:
        said = not_started_reason(exc)
        if said is None:
            raise
        raise RunNotFinishedError(f"{_where(ref)} has no run yet: Kaggle answers {said!r}.", follow) from None
    if not text.strip():
        try:
            state = client.status(ref).status
        except NotFoundError:
            state = None
        if state not in FINAL_STATUSES:
            raise RunNotFinishedError(
                f"{_where(ref)} is {state or 'not started yet'}: Kaggle shows a run's log only after the run "
                "and its save end.", follow)
    yield from render_lines(parse_log(text))


def follow_records(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None = None, *,
                   start_grace_s: float = DEFAULT_START_GRACE_S, on_wait: Callable[[str], None] | None = None,
                   retry_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                   cli: str = "kagglekit") -> Iterator[LogRecord]:
    """The run's log records as it prints them (the client reconnects and drops replayed records).

    Right after a push there is no run to follow yet: the start grace applies as for ``status``.
    """
    ref, _ = resolve_version(client, ref, ledger)
    window = start_window(client, ledger, ref, start_grace_s, watching_since=time.time(), cli=cli)
    said_waiting = False
    while True:
        records = client.stream_log(ref)
        try:
            first = next(records)
        except StopIteration:
            return
        except NotFoundError as exc:
            note = window.judge(exc, _where(ref))
            if on_wait is not None and not said_waiting:
                on_wait(f"{_where(ref)}: {note}")
                said_waiting = True
            sleep(retry_s)
            continue
        yield first
        yield from records
        return


def follow_log(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None = None, *,
               start_grace_s: float = DEFAULT_START_GRACE_S, on_wait: Callable[[str], None] | None = None,
               retry_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
               cli: str = "kagglekit") -> Iterator[str]:
    """Readable lines as the run prints them (``follow_records``, rendered)."""
    yield from render_lines(follow_records(client, ref, ledger, start_grace_s=start_grace_s, on_wait=on_wait,
                                           retry_s=retry_s, sleep=sleep, cli=cli))


def ensure_times(client: KaggleApiClient | None, ledger: Ledger, account: str, ref: KernelRef, *,
                 log_text: str | None = None) -> RunRecord | None:
    """Give a finished run without a duration one, from its saved log (source ``log``).

    A run seen QUEUED and then straight COMPLETE (or only looked at after it ended) has no
    start time, so no duration. Its saved log has time offsets: ``last - first`` is the honest
    duration. The start and end are placed with it inside what polling saw (it ended before the
    first final status seen, started after the push). ``log_text`` (already fetched, e.g. by
    pull-outputs) saves the request, and then also replaces a duration that came from polling.
    Returns the record as it now stands (None when the ledger does not know the run, or ``ref`` has no version).
    """
    kernel, version = ref.kernel_id, ref.version
    if version is None:
        return None
    rec = ledger.get(account, kernel, version)
    if rec is None or not rec.finished:
        return rec
    if rec.duration_s is not None and not (log_text is not None and rec.duration_source == SOURCE_POLLING):
        return rec
    if log_text is None:
        if client is None:
            return rec
        try:
            log_text = client.get_log(ref)
        except KagglekitError:
            return rec
    span = session_span(parse_log(log_text))
    if span is None or span[1] <= span[0]:
        return rec  # no log, or one instant of it: nothing honest to say
    duration = span[1] - span[0]
    start, end = _place_span(rec, duration)
    ledger.record_times(account, kernel, version, SOURCE_LOG, started_at=start, ended_at=end, duration_s=duration)
    return ledger.get(account, kernel, version)


def _place_span(rec: RunRecord, duration: float) -> tuple[datetime | None, datetime | None]:
    """Start and end of a run lasting ``duration``, inside the polled bounds (None: unknown)."""
    length = timedelta(seconds=duration)
    if rec.started_source not in (None, SOURCE_POLLING) or rec.ended_source not in (None, SOURCE_POLLING):
        return None, None  # a better source already placed it
    end = rec.ended_at  # the first final status seen: it ended before that
    if rec.started_at is not None:  # RUNNING seen: it started before that, so ended before start + length
        end = min(end, rec.started_at + length) if end is not None else rec.started_at + length
    if end is None:
        return None, None
    start = end - length
    if rec.pushed_at is not None and start < rec.pushed_at:  # it cannot have started before its push
        start, end = rec.pushed_at, rec.pushed_at + length
    return start, end
