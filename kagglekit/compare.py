"""``kagglekit compare``: the queue's experiments side by side, from the outputs the queue pulled.

Per experiment: its overrides, state, sessions, accelerator hours, and for every numeric metric in
its ``metrics.jsonl`` (one JSON line per epoch, across all its sessions: a resumed session rewrites
the history it continued, so the newest session's file is taken per epoch) the final value and the
best (lowest for losses and errors, highest otherwise), plus ``summary.json``'s numbers. A pandas
table; the loss curves of all experiments on one matplotlib plot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.queue import QueueStore, accelerator_hours, sessions_of

if TYPE_CHECKING:
    import pandas as pd

    from kagglekit.ledger import RunRecord

X_KEYS = ("epoch", "step", "iteration", "iter")
LOWER_IS_BETTER = ("loss", "err", "error", "mae", "mse", "rmse", "perplexity", "ppl", "wer", "cer")


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(part in name for part in LOWER_IS_BETTER)


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def read_metrics(folders: Sequence[Path]) -> list[dict[str, float]]:
    """The epochs of an experiment's sessions, oldest folder first; a later session's line for the same
    epoch (or step) wins, so a resumed history is counted once."""
    by_x: dict[float, dict[str, float]] = {}
    order: list[float] = []
    counter = 0
    for folder in folders:
        path = folder / "metrics.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            values = _numbers(record)
            x_key = next((k for k in X_KEYS if k in values), None)
            counter += 1
            x = values[x_key] if x_key is not None else float(counter)
            if x not in by_x:
                order.append(x)
            by_x[x] = values
    return [by_x[x] for x in sorted(order)]


def read_summary(folders: Sequence[Path]) -> dict[str, float]:
    """The newest session's summary.json numbers (prefixed ``summary.``)."""
    for folder in reversed(list(folders)):
        try:
            data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return {f"summary.{k}": v for k, v in _numbers(data).items()}
    return {}


def experiment_folders(store: QueueStore, records: Sequence[RunRecord]) -> list[Path]:
    """The pulled output folders of an item's sessions (``records``, oldest first)."""
    out = []
    for record in records:
        target = store.pulled(record.kernel, record.version)
        if target is not None:
            out.append(Path(target))
    return out


def gather(store: QueueStore, names: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, list[dict[str, float]]]]:
    """The comparison table (one row per experiment) and each experiment's metric history."""
    import pandas as pd

    items = store.items()
    unknown = sorted(set(names) - {i.name for i in items})
    if unknown:
        from kagglekit.errors import CLI, NotFoundError

        raise NotFoundError(f"The queue has no experiment {', '.join(unknown)} (it has: "
                            f"{', '.join(i.name for i in items) or 'none'}).", hint=f"`{CLI} queue status` lists them.")
    rows, histories = [], {}
    for item in items:
        if names and item.name not in names:
            continue
        records = sessions_of(store.ledger, item)
        folders = experiment_folders(store, records)
        history = read_metrics(folders)
        histories[item.name] = history
        row: dict[str, Any] = {"experiment": item.name, "status": item.state,
                               "overrides": item.experiment.overrides_text(), "sessions": len(records),
                               "gpu_hours": round(accelerator_hours(records), 4)}
        metrics = sorted({k for h in history for k in h if k not in X_KEYS})
        if history:
            row["epochs"] = len(history)
        for metric in metrics:
            values = [h[metric] for h in history if metric in h]
            row[f"final.{metric}"] = values[-1]
            row[f"best.{metric}"] = min(values) if lower_is_better(metric) else max(values)
        row.update(read_summary(folders))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.set_index("experiment")
    return frame, histories


def loss_keys(histories: dict[str, list[dict[str, float]]]) -> list[str]:
    keys = sorted({k for h in histories.values() for rec in h for k in rec if "loss" in k.lower()})
    return keys or sorted({k for h in histories.values() for rec in h for k in rec if k not in X_KEYS})[:1]


def plot_losses(histories: dict[str, list[dict[str, float]]], path: Path, title: str = "") -> Path | None:
    """Every experiment's loss curves on one plot (train solid, validation dashed); None: nothing to draw."""
    keys = loss_keys(histories)
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = ["-", "--", ":", "-."]
    drew = False
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index % 10}"
        for k_index, key in enumerate(keys):
            points = [(rec.get(next((x for x in X_KEYS if x in rec), ""), i + 1.0), rec[key])
                      for i, rec in enumerate(history) if key in rec]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, styles[k_index % len(styles)], color=color, marker="o", markersize=3,
                    label=f"{name} {key}" if len(keys) > 1 else name)
            drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(", ".join(keys))
    ax.set_title(title or "Loss curves")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
