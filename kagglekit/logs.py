"""Kaggle's kernel log as readable text.

Kaggle stores a run's output as a JSON array of ``{stream_name, time, data}``
records, one per line (docs/kaggle-wire.md §7.2). Raw, it is unreadable: progress
bars redraw with carriage returns and stdout/stderr are interleaved chunks. This
module parses the array (also a truncated one, as seen while a run is live) and
renders lines, with each progress bar collapsed to its final state and stderr
marked, so ``kagglekit logs`` and ``pull-outputs`` (``log.txt``) agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

STDERR_MARK = "! "


@dataclass(frozen=True)
class LogRecord:
    """One chunk of output: which stream, seconds since the session started, the text."""

    stream: str
    time: float
    data: str


def parse_log(text: str) -> list[LogRecord]:
    """Parse Kaggle's log text; tolerate a missing closing bracket and stray lines."""
    text = text.strip()
    if not text:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        items = list(_parse_lines(text))
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return []
    return [rec for rec in (_record(item) for item in items) if rec is not None]


def _parse_lines(text: str) -> Iterator[object]:
    for line in text.splitlines():
        line = line.strip().lstrip("[,").rstrip("],").strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            yield {"stream_name": "stdout", "time": 0.0, "data": line + "\n"}


def _record(item: object) -> LogRecord | None:
    if not isinstance(item, dict):
        return None
    data = item.get("data")
    if not isinstance(data, str):
        return None
    stream = item.get("stream_name") or "stdout"
    try:
        time = float(item.get("time") or 0.0)
    except (TypeError, ValueError):
        time = 0.0
    return LogRecord(str(stream), time, data)


def collapse_carriage_returns(line: str) -> str:
    """Keep what a terminal would show: the text after the last bare carriage return."""
    line = line.replace("\r\n", "\n").rstrip("\r")
    return line.rsplit("\r", 1)[-1]


def render_lines(records: Iterable[LogRecord], mark_stderr: bool = True) -> Iterator[str]:
    """Yield complete display lines, in order, per stream buffering of split chunks."""
    partial: dict[str, str] = {}
    for rec in records:
        buf = partial.get(rec.stream, "") + rec.data.replace("\r\n", "\n")
        *complete, rest = buf.split("\n")
        partial[rec.stream] = rest
        for line in complete:
            yield _display(rec.stream, line, mark_stderr)
    for stream, rest in partial.items():
        if collapse_carriage_returns(rest):
            yield _display(stream, rest, mark_stderr)


def _display(stream: str, line: str, mark_stderr: bool) -> str:
    line = collapse_carriage_returns(line)
    if mark_stderr and stream == "stderr":
        return STDERR_MARK + line
    return line


def format_log(text: str, mark_stderr: bool = True) -> str:
    """Kaggle's raw log text → readable text ending in a newline (or empty)."""
    lines = list(render_lines(parse_log(text), mark_stderr=mark_stderr))
    return "\n".join(lines) + ("\n" if lines else "")


def tail(text: str, n: int = 20) -> str:
    """The last ``n`` readable lines: what a failed run's summary shows."""
    lines = list(render_lines(parse_log(text)))
    return "\n".join(lines[-n:])


def session_span(records: Iterable[LogRecord]) -> tuple[float, float] | None:
    """First and last record time offsets: a duration estimate when run.json is missing."""
    times = [r.time for r in records]
    if not times:
        return None
    return min(times), max(times)
