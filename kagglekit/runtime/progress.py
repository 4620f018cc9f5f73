"""Training progress as the project reports it: how far it got, and whether training has finished.

A session that stops at its time guard and a session whose training is done both end COMPLETE;
only the project knows which it was. It says so with ``report_progress``, which writes
``/kaggle/working/kagglekit/progress.json`` (atomically); the run manifest copies it into
``run.json`` as ``training``. ``kagglekit push --resume --until-done`` reads that after each
session: ``finished: false`` means "push the next session", ``finished: true`` ends the chain.
Standard library only; it works from child processes too (it only writes a file).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import paths

PROGRESS_RELPATH = "kagglekit/progress.json"

_state: dict[str, Any] = {}


def progress_path() -> Path:
    return paths.working_dir() / PROGRESS_RELPATH


def report_progress(epoch: int | None = None, total: int | None = None, *, finished: bool = False,
                    reason: str | None = None) -> dict[str, Any]:
    """Record how far training got; returns what was written.

    Call it after each epoch with ``epoch`` (epochs done so far, counting earlier sessions) and
    ``total`` (the epochs planned), and once at the end with ``finished=True`` when training is
    done (e.g. ``reason="completed"`` or ``"early_stop"``), or ``finished=False, reason="time"``
    when the time guard stopped it and another session should carry on. The first per-epoch
    call (no ``reason``) of a session marks the session's first epoch.
    """
    if epoch is not None and reason is None and not finished and "first_epoch" not in _state:
        _state["first_epoch"] = int(epoch)
    record = {
        "epoch": None if epoch is None else int(epoch),
        "total": None if total is None else int(total),
        "first_epoch": _state.get("first_epoch"),
        "finished": bool(finished),
        "reason": reason,
        "updated_at": datetime.fromtimestamp(time.time(), tz=timezone.utc)  # noqa: UP017
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    path = progress_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".progress.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # progress is advisory: never take the training down for it
    return record


def read_progress(working: Path) -> dict[str, Any] | None:
    """The last progress the project reported in ``working`` (None when it reported none)."""
    try:
        data = json.loads((working / PROGRESS_RELPATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
