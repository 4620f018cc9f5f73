"""How kagglekit writes numbers for people: sizes, durations, countdowns, accelerator labels, the runs table.

One module so that a size or a duration reads the same in every command. Sizes use decimal units
(kB, MB, GB), as Kaggle counts its "20 GB" of /kaggle/working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kagglekit.constants import SHAPE_LABELS, accelerator_kind

if TYPE_CHECKING:
    from kagglekit.ledger import ChainRecord, RunRecord


def size(n: float | None, *, digits: int = 1, unknown: str = "") -> str:
    """``n`` bytes in decimal units: ``512 B``, ``1.5 kB``, ``20.0 GB`` (``digits`` after the point)."""
    if n is None:
        return unknown
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1000
    return f"{n:.{digits}f} TB"  # pragma: no cover


def duration(seconds: float | None, *, unknown: str = "") -> str:
    """A length of time: ``1h 05m 07s``, ``3m 07s``, ``42.3s``, ``2.29s`` (three significant digits under a minute,
    tenths under a second: a run first seen RUNNING a millisecond in reads ``0.0s``, not ``0.00107s``)."""
    if seconds is None:
        return unknown
    seconds = max(0.0, seconds)
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.3g}s" if seconds >= 1 else f"{seconds:.1f}s"


def clock(seconds: float | None) -> str:
    """A length of time as ``H:MM:SS``, for table columns that line up (empty when unknown)."""
    if seconds is None:
        return ""
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def countdown(seconds: float) -> str:
    """Time left until a moment, to the minute: ``2d 3h 4m`` or ``3h 4m``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def quota_time(seconds: float | None, *, unknown: str = "?") -> str:
    """Accelerator time as the quota counts it: ``12.5 min`` under an hour, else ``1.50 h``."""
    if seconds is None:
        return unknown
    if abs(seconds) < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def hours(h: float) -> str:
    """Hours with two decimals, or two significant digits for runs of minutes."""
    return f"{h:.2f}" if h >= 0.1 or h == 0 else f"{h:.2g}"


def shape_label(machine_shape: str | None) -> str:
    """A machine shape as people say it: ``GPU T4 x2``, ``TPU v5e-8``, ``CPU``; unknown shapes as they are."""
    kind = accelerator_kind(machine_shape)
    if kind == "cpu":
        return "CPU"
    assert machine_shape is not None
    label = SHAPE_LABELS.get(machine_shape)
    return f"{kind.upper()} {label}" if label else machine_shape


def hardware(machine_shape: str | None) -> str:
    """What a kernel runs on, as one phrase: ``GPU T4 x2 (NvidiaTeslaT4)``, ``CPU (no accelerator)``."""
    if accelerator_kind(machine_shape) == "cpu":
        return "CPU (no accelerator)"
    label = shape_label(machine_shape)
    return f"{label} ({machine_shape})" if label != machine_shape else str(machine_shape)


def source_share(n_bytes: int) -> str:
    """A kernel script's size and its share of Kaggle's source limit: ``44.4 kB (4.2% of Kaggle's source limit)``.

    One unit (decimal, as every size kagglekit prints); the limit itself is 1 MiB = 1,048,576 bytes.
    """
    from kagglekit.constants import SOURCE_LIMIT_BYTES

    return f"{size(n_bytes)} ({100 * n_bytes / SOURCE_LIMIT_BYTES:.1f}% of Kaggle's source limit)"


def accelerator_label(record: RunRecord) -> str:
    """A run's hardware for the runs table: ``cpu``, ``gpu T4 x2``, ``tpu v5e-8``, ``gpu <shape>``, or ``unknown``."""
    from kagglekit.ledger import KIND_UNKNOWN

    kind = record.kind
    shape = record.machine_shape
    if kind in ("cpu", KIND_UNKNOWN) or not shape or shape == "None":
        return kind
    return f"{kind} {SHAPE_LABELS.get(shape, shape)}"


def runs_table(records: list[RunRecord], kernel: str | None = None) -> str:
    """The ledger as a readable table (pandas), newest last; ``kernel`` is the filter the records came from."""
    import pandas as pd

    from kagglekit.ledger import SOURCE_LOG, SOURCE_POLLING, SOURCE_RUN_JSON

    if not records:
        if kernel:
            return f"No runs of {kernel} in the ledger."
        return "No runs in the ledger yet (kagglekit push records them)."
    accounts = {r.account for r in records}
    sources = {SOURCE_RUN_JSON: "exact", SOURCE_LOG: "log", SOURCE_POLLING: "polled"}
    rows = []
    for r in records:
        commit = (r.git_commit or "")[:8] + ("+dirty" if r.git_dirty else "")
        row = {
            "kernel": r.kernel, "v": r.version, "mode": r.mode or "", "accel": accelerator_label(r),
            "status": (r.status or "").lower(),
            "pushed": r.pushed_at.astimezone().strftime("%Y-%m-%d %H:%M") if r.pushed_at else "",
            "duration": clock(r.elapsed_s()), "(source)": sources.get(r.duration_source or "", ""),
            "output": size(r.output_bytes), "files": "" if r.output_files is None else str(r.output_files),
            "peak work": size(r.peak_working_bytes), "commit": commit,
            "from": f"v{r.parent_version}" if r.parent_version else (r.resume_from or ""),
            "chain:session": f"{r.chain_id}:{r.chain_seq}" if r.chain_id is not None else "",
            "epochs": epochs_text(r.training),
            "message": (r.message or "")[:40],
        }
        if len(accounts) > 1:
            row = {"account": r.account, **row}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame = frame.loc[:, [c for c in frame.columns if (frame[c] != "").any()]]
    return str(frame.to_string(index=False))


def epochs_text(training: Mapping[str, Any] | None) -> str:
    """``1-7 of 22`` from a session's reported progress (run.json ``training``); '' when it reported none."""
    if not training or training.get("epoch") is None:
        return ""
    last, first, total = training.get("epoch"), training.get("first_epoch"), training.get("total")
    if first is None:  # no epoch trained in this session (e.g. resumed a finished training)
        return f"none (at {last})"
    span = f"{first}-{last}" if first != last else f"{last}"
    return span + (f" of {total}" if total else "")


def chain_lines(chains: list[ChainRecord], sessions: Mapping[int, list[RunRecord]]) -> list[str]:
    """One line per resume chain: its kernels, state, sessions, epochs and accelerator time."""
    lines = []
    for chain in chains:
        runs = sessions.get(chain.id) or []
        if not runs:
            continue
        trained = [r.training for r in runs if r.training and r.training.get("first_epoch") is not None]
        epochs = (f", epochs {trained[0]['first_epoch']}-{trained[-1]['epoch']}" if trained else "")
        acc = [r for r in runs if r.kind in ("gpu", "tpu")]
        time_used = clock(sum(r.elapsed_s() or 0.0 for r in runs))
        billed = f" ({hours(sum(r.elapsed_s() or 0.0 for r in acc) / 3600)} h {acc[0].kind.upper()})" if acc else ""
        lines.append(f"chain {chain.id} ({chain.kernel} <-> {chain.sibling}): {chain.state}, {len(runs)} session(s)"
                     f"{epochs}, {time_used}{billed}" + (f"; {chain.note}" if chain.note else ""))
    return lines
