"""Kaggle's JSON log → readable text."""

from __future__ import annotations

import json

from kagglekit.logs import LogRecord, format_log, parse_log, render_lines, session_span, tail


def kaggle_log(records: list[tuple[str, float, str]]) -> str:
    """Build a log exactly as Kaggle stores it: compact JSON, one record a line, leading commas."""
    lines = [json.dumps({"stream_name": s, "time": t, "data": d}, separators=(",", ":")) for s, t, d in records]
    return "[" + "\n,".join(lines) + "\n]"


def test_parses_kaggle_format_and_marks_stderr() -> None:
    text = kaggle_log([("stdout", 1.5, "hello\n"), ("stderr", 2.0, "warn: x\n"), ("stdout", 3.25, "done\n")])
    recs = parse_log(text)
    assert [r.stream for r in recs] == ["stdout", "stderr", "stdout"]
    assert recs[2].time == 3.25
    assert format_log(text) == "hello\n! warn: x\ndone\n"
    assert format_log(text, mark_stderr=False) == "hello\nwarn: x\ndone\n"


def test_progress_bars_collapse_to_final_state() -> None:
    text = kaggle_log([
        ("stderr", 1.0, "epoch 1:  10%|#   |\r"),
        ("stderr", 1.1, "epoch 1:  50%|##  |\r"),
        ("stderr", 1.2, "epoch 1: 100%|####|\n"),
        ("stdout", 1.3, "loss 0.5\r\n"),
    ])
    assert format_log(text).splitlines() == ["! epoch 1: 100%|####|", "loss 0.5"]


def test_chunks_split_mid_line_are_joined_per_stream() -> None:
    text = kaggle_log([("stdout", 1, "hel"), ("stderr", 1, "E1\n"), ("stdout", 2, "lo\nwor"), ("stdout", 3, "ld")])
    assert format_log(text).splitlines() == ["! E1", "hello", "world"]


def test_truncated_live_log_still_parses() -> None:
    full = kaggle_log([("stdout", 1, "a\n"), ("stdout", 2, "b\n")])
    truncated = full.rsplit("\n", 1)[0]  # no closing bracket yet
    assert format_log(truncated) == "a\nb\n"


def test_tail_and_span() -> None:
    text = kaggle_log([("stdout", float(i), f"line {i}\n") for i in range(1, 31)])
    assert tail(text, 3).splitlines() == ["line 28", "line 29", "line 30"]
    assert session_span(parse_log(text)) == (1.0, 30.0)
    assert session_span([]) is None


def test_render_lines_keeps_unterminated_last_line() -> None:
    lines = list(render_lines([LogRecord("stdout", 0, "no newline at end")]))
    assert lines == ["no newline at end"]
