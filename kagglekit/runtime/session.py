"""The run's mode and its time budget (standard library only).

The bundle bakes the session limit into the script (the push timeout, or Kaggle's
12 h / 9 h for TPU); the bootstrap exports it with the start time, so child processes
(DataLoader workers, torchrun) compute the same ``time_left()``.
"""

from __future__ import annotations

import os
import re
import time

ENV_MODE = "KAGGLEKIT_MODE"
ENV_RUNNING_TEST = "KAGGLEKIT_RUNNING_TEST"
ENV_SESSION_LIMIT = "KAGGLEKIT_SESSION_LIMIT_SECONDS"
ENV_STARTED_AT = "KAGGLEKIT_STARTED_AT"
ENV_CONTAINER_NAME = "KAGGLE_CONTAINER_NAME"  # kaggle_<token>-<sessionId>-webtier (kaggle-prod-behaviour §9)
DEFAULT_SESSION_LIMIT_S = 12 * 3600
DEFAULT_MARGIN_CAP_S = 15 * 60

_IMPORTED_AT = time.time()


def mode() -> str | None:
    """"test", "full", or None when the bundle was built without --test/--full."""
    value = os.environ.get(ENV_MODE, "").strip().lower()
    return value if value in ("test", "full") else None


def running_test() -> bool:
    return os.environ.get(ENV_RUNNING_TEST, "").strip() == "1" or mode() == "test"


def session_limit_s() -> float:
    try:
        return float(os.environ[ENV_SESSION_LIMIT])
    except (KeyError, ValueError):
        return float(DEFAULT_SESSION_LIMIT_S)


def started_at() -> float:
    """When the run started (epoch seconds)."""
    try:
        return float(os.environ[ENV_STARTED_AT])
    except (KeyError, ValueError):
        return _IMPORTED_AT


def elapsed() -> float:
    return max(0.0, time.time() - started_at())


def time_left() -> float:
    """Seconds until Kaggle stops the session (may be negative once it is over)."""
    return session_limit_s() - elapsed()


def default_margin() -> float:
    """10% of the session limit, at most 15 minutes: time to save a checkpoint and exit."""
    return min(DEFAULT_MARGIN_CAP_S, 0.1 * session_limit_s())


def should_stop(margin_s: float | None = None) -> bool:
    """True once less than ``margin_s`` (default: ``default_margin()``) is left: save and stop.

    Use it in the training loop: ``if should_stop(): save_checkpoint(); break``.
    """
    return time_left() < (default_margin() if margin_s is None else margin_s)


def session_id() -> int | None:
    """This kernel session's id, the one ``CancelKernelSession`` takes (None outside Kaggle).

    No API call returns it; inside the kernel it is the number in ``KAGGLE_CONTAINER_NAME``
    (``kaggle_<token>-<sessionId>-webtier``). The bootstrap prints it, so ``kagglekit stop``
    can read it back from the log.
    """
    match = re.fullmatch(r"kaggle_[^-]*-(\d+)-webtier", os.environ.get(ENV_CONTAINER_NAME, "").strip())
    return int(match.group(1)) if match else None


def process_started_at() -> float | None:
    """When this process started (epoch seconds, Linux), or None where that cannot be read.

    The session's clock runs from before the bootstrap: the script first checks and unpacks the
    bundle, and on a loaded machine that takes seconds. Counting from the process start keeps
    ``time_left()`` honest, so the time guard stops the run before the limit, not after.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22 (starttime), counted after the command name
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None
    now = time.time()
    return started if now - 3600 < started <= now else None  # a clock jump or odd /proc: not trusted
