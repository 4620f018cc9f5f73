"""Waiting on Kaggle: the start grace after a push, the ``--max-wait`` deadline, the save phase.

Kaggle is slow to admit that a push made a run (docs/kaggle-facts.md): between the push and the
moment the session exists, status answers 404 "No runs found for this kernel." (a brand-new private
kernel even 403 ``kernels.get``). ``StartWindow`` turns those answers into "waiting for Kaggle to
start the run" for ``--start-grace`` (15 min by default), then into ``RunNotStartedError`` (exit 16).
After the kernel process ends, the version stays RUNNING while Kaggle saves ``/kaggle/working``;
``SaveWatcher`` reads the run's last line from the live log so a wait can say "saving outputs, N GB".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from kagglekit.errors import (
    ConfigError,
    KagglekitError,
    NotFoundError,
    RunNotFinishedError,
    RunNotStartedError,
)

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.api.types import KernelInfo
    from kagglekit.kernel_ref import KernelRef
    from kagglekit.logs import LogRecord

DEFAULT_START_GRACE_S = 15 * 60.0
NEW_KERNEL_403_WAIT_S = 20.0  # how long a check for a just-pushed version waits through a new private kernel's 403
SHORT_403_S = 60.0  # how long a watch waits through a 403 of a kernel kagglekit did not push
NO_RUNS_MESSAGE = "No runs found for this kernel."
# The kagglekit runtime's last line (runtime/manifest.py saving_line).
SAVING_LINE = re.compile(r"kagglekit: run ended \((?P<status>[^,)]+)[^)]*\); (?P<where>\S+) holds "
                         r"(?P<size>.+?) for Kaggle to save")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str = "the duration") -> float:
    """``90s``, ``15m``, ``1h30m``, ``1.5h``, ``2d`` or a bare number of seconds -> seconds."""
    raw = (text or "").strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", raw)
    if not raw or not parts or "".join(n + u for n, u in parts) != raw:
        raise ConfigError(f"{option} '{text}' is not a duration.",
                          "Write it like 90s, 15m, 1h30m or 2h (a bare number is seconds).")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def short(seconds: float) -> str:
    """``15m``, ``2m10s``, ``1h05m``: a duration as the options take it."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m" if m else f"{h}h"
    if m:
        return f"{m}m{s:02d}s" if s else f"{m}m"
    return f"{s}s"


def get_kernel_through_new_403(client: KaggleApiClient, ref: KernelRef,
                               listed: Callable[[], bool] | None = None) -> KernelInfo | None:
    """GetKernel, waiting up to ``NEW_KERNEL_403_WAIT_S`` through the 403 a brand-new private kernel answers
    for a moment (docs/kaggle-facts.md); None for any other "not found" or when the wait runs out.

    ``listed``, asked once at the first 403, says whether the account lists the kernel as its own: Kaggle's
    403 is also its answer for a kernel that does not exist, which is not worth waiting for.
    """
    deadline: float | None = None
    while True:
        try:
            return client.get_kernel(ref)
        except NotFoundError as exc:
            if not_started_reason(exc) is None or exc.http_status != 403:
                return None
            if deadline is None:
                if listed is not None and not listed():
                    return None
                deadline = time.monotonic() + NEW_KERNEL_403_WAIT_S
            elif time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def not_started_reason(exc: KagglekitError) -> str | None:
    """Kaggle's words when ``exc`` means "this run does not exist yet", else None.

    404 "No runs found for this kernel." (no session yet, or never ran) and 403 ``kernels.get``
    (a brand-new private kernel, for a moment). Only these: any other 404/403 is a real answer.
    """
    if not isinstance(exc, NotFoundError):
        return None
    said = exc.api_message or ""
    if exc.http_status == 404 and "no runs found" in said.lower():
        return said
    if exc.http_status == 403 and "kernels.get" in said:
        return said
    return None


class StartWindow:
    """The grace after a push during which "no run" answers mean "not started yet".

    ``pushed_at`` (epoch seconds, from the ledger) marks a version kagglekit pushed itself: then
    any 404 and the new-kernel 403 are waited through. Without it (a push made elsewhere) only
    "No runs found" is, counted from ``watching_since`` (a watch) or not at all (one look).
    """

    def __init__(self, grace_s: float = DEFAULT_START_GRACE_S, *, pushed_at: float | None = None,
                 watching_since: float | None = None, cli: str = "kagglekit",
                 clock: Callable[[], float] = time.time) -> None:
        self.grace_s = grace_s
        self.pushed_at = pushed_at
        self.watching_since = watching_since
        self.cli = cli
        self.clock = clock

    def judge(self, exc: NotFoundError, where: str) -> str:
        """The "waiting" note for a run that has not started yet; raises when it is not that or too late."""
        reason = not_started_reason(exc)
        ours = self.pushed_at is not None
        if reason is None and not ours:
            raise exc
        if not ours and exc.http_status == 403 and (
                self.watching_since is None or self.clock() - self.watching_since > SHORT_403_S):
            # Not a push kagglekit made: Kaggle's 403 is also its answer for a kernel that is not there or
            # not yours, so a watch waits through it only briefly (a new private kernel's 403 is short).
            raise exc
        said = reason or exc.api_message or exc.message
        base = self.pushed_at if ours else self.watching_since
        if base is None:
            raise RunNotStartedError(
                f"Kaggle has no run of {where} (it answers {said!r}): it never ran, or its run has not started yet.",
                f"Push it ({self.cli} push), or watch a push made elsewhere with `{self.cli} status --watch`, "
                "which waits --start-grace for the run to start.",
                http_status=exc.http_status, api_status=exc.api_status, api_message=exc.api_message)
        age = max(0.0, self.clock() - base)
        if age <= self.grace_s:
            since = "the push" if ours else "watching began"
            return (f"waiting for Kaggle to start the run ({short(age)} since {since}; Kaggle says {said!r} "
                    f"for now; giving up after {short(self.grace_s)})")
        if reason is None or exc.http_status != 404:
            raise exc  # past the grace, anything but "No runs found" is what it says (a deleted kernel, a 403)
        if ours:
            message = f"The push of {where} started no run: {short(age)} after the push Kaggle still answers {said!r}."
        else:
            message = f"{where} has no run: Kaggle still answers {said!r} after {short(age)} of waiting."
        raise RunNotStartedError(
            message,
            "Kaggle makes a version without a run when all the account's batch sessions are taken, and is "
            f"sometimes just slow. Check what runs ({self.cli} quota), then push again; when Kaggle is busy give "
            "a longer --start-grace (e.g. --start-grace 30m).",
            http_status=exc.http_status, api_status=exc.api_status, api_message=exc.api_message)


class Deadline:
    """``--max-wait``: how long a wait may take; None waits until the run ends."""

    def __init__(self, max_wait_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.started = clock()

    def remaining(self) -> float | None:
        if self.max_wait_s is None:
            return None
        return self.max_wait_s - (self.clock() - self.started)

    def check(self, where: str, status: str, cli: str = "kagglekit") -> None:
        """Raise ``RunNotFinishedError`` (exit 17) once the deadline has passed."""
        left = self.remaining()
        if left is not None and left <= 0:
            assert self.max_wait_s is not None
            raise RunNotFinishedError(
                f"{where} is still {status} after --max-wait {short(self.max_wait_s)}; the run goes on.",
                f"Look again later: {cli} status {where.replace(' v', '/')} (or status --watch); "
                "pull-outputs once it has ended.")

    def sleep_for(self, wanted: float) -> float:
        """``wanted`` seconds, cut to what is left before the deadline (never negative)."""
        left = self.remaining()
        return max(0.0, wanted if left is None else min(wanted, left))


class SaveWatcher:
    """Reads a run's live log in a thread; once the kagglekit runtime printed its last line, ``saving``
    holds how much ``/kaggle/working`` Kaggle is now saving (the version stays RUNNING meanwhile).

    Best effort: a stream that fails or a kernel that is not kagglekit's leaves ``saving`` None, and
    the status polls decide everything else.
    """

    def __init__(self, follow: Callable[[], Iterable[LogRecord]]) -> None:
        self.saving: str | None = None
        self.ended_as: str | None = None
        self._follow = follow
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kagglekit-save-watch", daemon=True)

    def start(self) -> SaveWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        tail = ""
        try:
            for record in self._follow():
                if self._stop.is_set():
                    return
                tail = (tail + record.data)[-8192:]
                found = SAVING_LINE.search(tail)
                if found:
                    self.saving, self.ended_as = found.group("size"), found.group("status")
        except Exception:
            return

    def note(self) -> str | None:
        """The status note while Kaggle saves the outputs, or None before the run ended."""
        if self.saving is None:
            return None
        return (f"saving outputs, {self.saving} (the run ended {self.ended_as}; Kaggle uploads /kaggle/working "
                "before the version ends, about 2 min per GB)")
