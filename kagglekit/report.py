"""``kagglekit report``: what a run cost and how it trained, from its pulled outputs.

Reads ``kagglekit/run.json`` (written in the kernel by the runtime, docs/run-manifest.md)
and, when the project writes them, ``metrics.jsonl``, ``summary.json`` and ``versions.json``
(the ``kagglekit init`` template does). Writes an HTML or Markdown report and, beside it,
a loss-curve PNG. For a test-mode run it also estimates the full run's duration, as a
range, because such estimates are rough (see ``ROUGH_WARNING``).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import platform
import re
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from kagglekit import display
from kagglekit.constants import (
    OUTPUT_BUDGET_BYTES,
    RUN_MANIFEST_RELPATH,
    SESSION_LIMIT_SECONDS,
    accelerator_kind,
)
from kagglekit.errors import ConfigError, KagglekitError, NotFoundError
from kagglekit.kernel_ref import KernelRef
from kagglekit.paths import write_bytes_atomic, write_text_atomic

ESTIMATE_LOW = 0.7
ESTIMATE_HIGH = 1.5
ROUGH_WARNING = (
    "Estimates from a test run are rough: time is not linear in the number of examples, and "
    "per-epoch time varies with the GPU allocation. Early stopping may also end the run sooner."
)
OUTPUT_WARN_FRACTION = 0.8


@dataclasses.dataclass(frozen=True)
class VersionDiff:
    """A package whose version in the run differs from this environment (``local`` None: not installed)."""

    package: str
    run: str
    local: str | None


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The full run's duration, predicted from a test-mode run.

    ``mid_s = fixed_s + data_s * data_ratio + per_epoch_s * data_ratio * full_n_epoch``;
    the range is ``mid_s * ESTIMATE_LOW .. mid_s * ESTIMATE_HIGH``.
    """

    per_epoch_s: float  # median epoch time of the test run (the first epoch is often slower)
    n_epoch: int  # epochs of the test run
    full_n_epoch: int
    n_example: int
    full_n_example: int
    data_ratio: float
    fixed_s: float  # start-up and other time that does not grow with the data
    data_s: float  # data preparation time of the test run
    mid_s: float
    low_s: float
    high_s: float
    session_limit_s: float
    fits_session: str  # "yes" | "maybe" | "no"
    sessions_needed: int  # sessions chained with `push --resume`, at the high end
    quota_kind: str
    quota_left_h: float | None
    fits_quota: str | None  # "yes" | "maybe" | "no" | "not needed" (CPU); None when the quota is unknown
    quota_source: str | None  # where quota_left_h came from


@dataclasses.dataclass(frozen=True)
class ChainSession:
    """One session of a resume chain, as the ledger (and its pulled run.json) knows it."""

    session: int
    kernel: str
    version: int
    status: str | None
    epochs: str  # "8-14 of 40", '' when the session reported no progress
    first_epoch: int | None
    last_epoch: int | None
    duration_s: float | None
    pulled: bool  # its outputs are under outputs/<slug>/v<N>/


@dataclasses.dataclass
class ChainReport:
    """The whole resume chain a reported run belongs to (docs/resume.md)."""

    id: int
    kernels: list[str]
    state: str
    sessions: list[ChainSession]
    kind: str  # what the sessions were billed as: gpu | tpu | cpu
    accelerator_hours: float  # the sessions' time on the accelerator, together
    duration_s: float
    folders: list[Path] = dataclasses.field(default_factory=list)  # the pulled sessions' output folders


@dataclasses.dataclass
class Report:
    """Every figure of the report (``--json`` prints this)."""

    source: Path
    path: Path
    plot: Path | None
    kernel: str | None
    mode: str | None  # "test" | "full" | None (unknown)
    status: str | None
    exit_code: int | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    accelerator_requested: str | None
    accelerator_seen: str | None
    devices: list[str]
    quota_kind: str  # what the session was billed as: "gpu" | "tpu" | "cpu"
    quota_cost_h: float  # accelerator hours used (CPU runs cost 0)
    peak_output_bytes: int | None
    output_budget_bytes: int
    output_fraction: float | None
    pulled_bytes: int
    peak_rss_bytes: int | None
    peak_ram_mb: float | None
    peak_gpu_mb: float | None
    parameters: int | None
    model_size_mb: float | None
    epochs: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    resumed_from_epoch: int | None
    epoch_time_median_s: float | None
    python_run: str | None
    python_local: str
    version_diffs: list[VersionDiff]
    estimate: Estimate | None
    traceback_tail: str | None
    notes: list[str]
    version: int | None = None  # from the pulled folder's name, outputs/<slug>/v<N>
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)  # the run's --set NAME=VALUE
    args: list[str] = dataclasses.field(default_factory=list)  # the entry point's arguments
    # summary.json's "hyperparameters" (effective_batch_size, accum_iter, lr, seed, ... as the run recorded them)
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    peak_gpu_reserved_mb: float | None = None  # the caching allocator's peak; >= peak_gpu_mb
    gpu: str | None = None  # "Tesla T4 x2, CUDA 12.4, cuDNN 90100" from summary.json
    chain: ChainReport | None = None  # the resume chain the run is the newest session of

    @property
    def label(self) -> str:
        """What the report is about: ``owner/slug vN`` when known."""
        name = self.kernel or self.source.name
        return f"{name} v{self.version}" if self.version is not None and self.kernel else name


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}).",
                          hint="Pull the outputs again (kagglekit pull-outputs).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object.", hint="Pull the outputs again.")
    return data


def _find(source: Path, name: str) -> Path | None:
    """The shallowest file called ``name`` under ``source`` (projects may write into a subfolder)."""
    found = sorted(source.rglob(name), key=lambda p: (len(p.relative_to(source).parts), str(p)))
    return found[0] if found else None


def _read_metrics(path: Path | None, notes: list[str]) -> list[dict[str, Any]]:
    if path is None:
        return []
    rows: list[dict[str, Any]] = []
    bad = 0
    try:  # bytes that are not UTF-8 become unreadable lines, skipped and counted like torn ones
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        notes.append(f"{path.name} could not be read ({exc.strerror or exc}); no training curve.")
        return []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # a line cut short by a kill
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
        else:
            bad += 1
    if bad:
        notes.append(f"{bad} unreadable line(s) in {path.name} were skipped.")
    return rows


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hyperparameters(summary: dict[str, Any]) -> dict[str, Any]:
    """The run's recorded hyper-parameters; from an older summary.json, the few it had at its top level."""
    recorded = summary.get("hyperparameters")
    if isinstance(recorded, dict):
        return dict(recorded)
    return {key: summary[key] for key in ("batch_size", "early_stop", "n_epoch") if key in summary}


def _gpu_text(summary: dict[str, Any]) -> str | None:
    """The GPU(s) and the CUDA / cuDNN versions the template records (None for a CPU run)."""
    names = summary.get("gpu")
    if not isinstance(names, list) or not names:
        return None
    counts: dict[str, int] = {}
    for name in names:
        counts[str(name)] = counts.get(str(name), 0) + 1
    text = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items())
    for key, label in (("cuda", "CUDA"), ("cudnn", "cuDNN")):
        if summary.get(key) is not None:
            text += f", {label} {summary[key]}"
    if summary.get("deterministic") is not None:
        text += ", deterministic" if summary["deterministic"] else ", non-deterministic (faster)"
    return text


def _quota_kind(requested: Any, seen: Any) -> str:
    if isinstance(requested, str) and requested:
        word = requested.strip().lower()
        if word in ("gpu", "tpu", "cpu"):
            return word
        if word == "none":
            return "cpu"
        return accelerator_kind(requested.strip())
    return "gpu" if seen == "cuda" else "cpu"


def _duration(run: dict[str, Any], summary: dict[str, Any]) -> float | None:
    duration = _num(run.get("duration_s"))
    if duration is not None:
        return duration
    from datetime import datetime

    start, end = run.get("started_at"), run.get("ended_at") or run.get("last_seen_at")
    if isinstance(start, str) and isinstance(end, str):
        try:
            return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        except ValueError:
            pass
    return _num(summary.get("total_time_s"))


def _local_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _version_diffs(packages: dict[str, Any]) -> list[VersionDiff]:
    diffs = []
    for package, version in sorted(packages.items(), key=lambda kv: kv[0].lower()):
        local = _local_version(package)
        if local != str(version):
            diffs.append(VersionDiff(package=package, run=str(version), local=local))
    return diffs


def _verdict(low: float, high: float, limit: float) -> str:
    return "yes" if high <= limit else ("no" if low > limit else "maybe")


def _estimate(summary: dict[str, Any], epochs: list[dict[str, Any]], duration_s: float | None,
              session_limit_s: float, kind: str, quota: dict[str, float] | None,
              quota_source: str | None, notes: list[str]) -> Estimate | None:
    n_example, full_n_example = _int(summary.get("n_example")), _int(summary.get("full_n_example"))
    full_n_epoch = _int(summary.get("full_n_epoch"))
    times = [t for t in (_num(row.get("epoch_time_s")) for row in epochs) if t is not None]
    if not (n_example and full_n_example and full_n_epoch and times):
        notes.append("No full-run estimate: summary.json needs n_example, full_n_example and full_n_epoch, "
                      "and metrics.jsonl epoch_time_s (the kagglekit init template writes them).")
        return None
    per_epoch = statistics.median(times)
    ratio = full_n_example / n_example
    data_s = _num(summary.get("data_time_s")) or 0.0
    # only this session's epochs are in its duration (metrics.jsonl may hold earlier sessions' too)
    epochs_run = _int(summary.get("epochs_run"))
    session_times = times[len(times) - epochs_run:] if epochs_run is not None else times
    total = duration_s if duration_s is not None else _num(summary.get("total_time_s")) or 0.0
    fixed = max(0.0, total - sum(session_times) - data_s)
    mid = fixed + data_s * ratio + per_epoch * ratio * full_n_epoch
    low, high = mid * ESTIMATE_LOW, mid * ESTIMATE_HIGH
    quota_left = None
    fits_quota: str | None = None
    if kind == "cpu":
        fits_quota = "not needed"
    elif quota is not None and _num(quota.get(kind)) is not None:
        quota_left = float(quota[kind])
        fits_quota = _verdict(low, high, quota_left * 3600)
    return Estimate(
        per_epoch_s=per_epoch, n_epoch=len(times), full_n_epoch=full_n_epoch, n_example=n_example,
        full_n_example=full_n_example, data_ratio=ratio, fixed_s=fixed, data_s=data_s, mid_s=mid,
        low_s=low, high_s=high, session_limit_s=session_limit_s,
        fits_session=_verdict(low, high, session_limit_s),
        sessions_needed=max(1, math.ceil(high / session_limit_s)), quota_kind=kind,
        quota_left_h=quota_left, fits_quota=fits_quota,
        quota_source=quota_source if quota_left is not None else None,
    )


def _plot(epochs: list[dict[str, Any]], best_epoch: int | None, resumed_from: int | None, path: Path,
          boundaries: list[int] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["epoch"] for row in epochs]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        if any(_num(row.get(key)) is not None for row in epochs):
            ax_loss.plot(x, [_num(row.get(key)) for row in epochs], marker="o", markersize=3, label=label)
    if best_epoch:
        ax_loss.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
    if boundaries:  # a resume chain: where each session took over
        for i, first in enumerate(boundaries):
            ax_loss.axvline(first - 0.5, color="tab:red", linestyle=":", alpha=0.7,
                            label="new session" if i == 0 else None)
    elif resumed_from:
        ax_loss.axvline(resumed_from + 0.5, color="tab:red", linestyle=":",
                        label=f"resumed after epoch {resumed_from}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss curve")
    ax_loss.legend()
    if any(_num(row.get("score")) is not None for row in epochs):
        ax_score.plot(x, [_num(row.get("score")) for row in epochs], marker="o", markersize=3,
                      color="tab:green")
    ax_score.set(xlabel="epoch", ylabel="score", title="Validation score")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def _read_outputs(source: Path, notes: list[str], manifest: dict[str, Any] | None = None,
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """run.json, summary.json, versions.json and metrics.jsonl from a pulled folder (empty when absent);
    ``manifest``: kagglekit/run.json when the caller has read it already."""
    run_path = source / RUN_MANIFEST_RELPATH
    run = manifest or _read_json(run_path) or _read_json(_find(source, "run.json") or run_path) or {}
    metrics_path = _find(source, "metrics.jsonl")
    summary_path = _find(source, "summary.json")
    summary = (_read_json(summary_path) if summary_path else None) or {}
    versions_path = _find(source, "versions.json")
    versions = (_read_json(versions_path) if versions_path else None) or {}
    if not run and metrics_path is None and not summary:
        raise NotFoundError(
            f"{source} holds no kagglekit run outputs ({RUN_MANIFEST_RELPATH}, metrics.jsonl, summary.json).",
            hint="Point kagglekit report at a folder written by kagglekit pull-outputs.",
        )
    if not run:
        notes.append(f"No {RUN_MANIFEST_RELPATH}: the run was not made through kagglekit, so its duration, "
                     "accelerator and output size are unknown.")
    return run, summary, versions, _read_metrics(metrics_path, notes)


def _hardware(accel: dict[str, Any], summary: dict[str, Any], notes: list[str],
              emulated: bool = False) -> tuple[Any, Any, str]:
    """The accelerator asked for, the device seen, and the quota kind the run was billed as.

    ``emulated``: run.json says the kagglekit emulator ran it, where GPU/TPU sessions use the CPU.
    """
    requested, seen = accel.get("requested"), accel.get("seen")
    if seen is None and summary.get("device") in ("cpu", "cuda"):
        seen = summary["device"]  # the project's own record of the device it trained on
    kind = _quota_kind(requested, seen)
    if emulated:
        notes.append("This run was made on the kagglekit emulator, which runs GPU and TPU sessions on the local "
                     "CPU: its duration, memory and device are not what Kaggle would give.")
    elif kind in ("gpu", "tpu") and seen == "cpu":
        notes.append(f"A {kind.upper()} was requested (and billed) but the run used only the CPU: "
                     "check that the code moves the model and data to the device.")
    return requested, seen, kind


def build_report(source: Path, *, quota: dict[str, float] | None = None, out: Path | None = None,
                 quota_source: str | None = None, chain: ChainReport | None = None,
                 manifest: dict[str, Any] | None = None) -> Report:
    """Read a pulled output folder and write its report (``.html`` or ``.md`` by ``out``'s suffix).

    :param source: the folder ``pull-outputs`` wrote (``kagglekit/run.json``, ``metrics.jsonl``, ...).
    :param quota: remaining accelerator hours by kind (``{"gpu": 21.5}``), for the full-run estimate.
    :param out: the report file; default ``source/report.html``. The PNG is written beside it.
    :param quota_source: where ``quota`` came from, shown in the report.
    :param chain: the resume chain ``source`` is the newest session of: the loss curve then covers the
        chain (metrics of every pulled session, a later session's row winning) with its session boundaries.
    :param manifest: ``source``'s kagglekit/run.json when the caller has read it already (``report_for``).
    :raises NotFoundError: ``source`` is missing or holds none of the files a report is made from.
    :raises ConfigError: ``out`` has another suffix, or a file is not valid JSON.

    Phases: where to write -> read the outputs -> what the run cost -> the loss curve -> the one
    ``Report(...)`` that names every field from its source -> write it.
    """
    out = _report_path(source, out)
    notes: list[str] = []
    run, summary, versions, epochs = _read_outputs(source, notes, manifest)
    if chain is not None:
        epochs = _chain_epochs(chain, epochs, notes)
    cost = _cost(source, run, summary, notes)
    mode = _mode(run, summary)
    if run.get("status") == "running":
        notes.append("run.json says the run was still running when these outputs were taken.")
    if cost.fraction is not None and cost.fraction >= OUTPUT_WARN_FRACTION:
        notes.append(f"The output used {cost.fraction:.0%} of the {_size(cost.budget)} budget: keep fewer "
                     "checkpoints.")
    estimate = _estimate(summary, epochs, cost.duration, cost.session_limit, cost.kind, quota, quota_source,
                         notes) if mode == "test" else None
    if estimate is not None:
        notes.append(ROUGH_WARNING)
    best_epoch = _int(summary.get("best_epoch"))
    resumed_from = _int(summary.get("resumed_from_epoch"))
    plot = _loss_plot(epochs, best_epoch, resumed_from, out, chain)
    report = _assemble(source, out, plot, run, summary, versions, epochs, cost, mode=mode, estimate=estimate,
                       notes=notes, chain=chain)
    text = render_html(report) if out.suffix.lower() in (".html", ".htm") else render_markdown(report)
    write_text_atomic(out, text)
    return report


def _report_path(source: Path, out: Path | None) -> Path:
    """The report file for ``source`` (checked before anything is read)."""
    if not source.is_dir():
        raise NotFoundError(f"No output folder at {source}.",
                            hint="Pull the outputs first: kagglekit pull-outputs KERNEL.")
    out = out if out is not None else source / "report.html"
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise ConfigError(f"Cannot write a report as {out.name}: the suffix must be .html or .md.",
                          hint="Use -o report.html or -o report.md.")
    return out


@dataclasses.dataclass(frozen=True)
class _Cost:
    """What the run used: its hardware, time, quota and /kaggle/working (the report's top rows)."""

    accel: dict[str, Any]
    requested: Any
    seen: Any
    kind: str
    duration: float | None
    cost_h: float
    budget: int
    peak_output: int | None
    fraction: float | None
    pulled: int
    session_limit: float


def _cost(source: Path, run: dict[str, Any], summary: dict[str, Any], notes: list[str]) -> _Cost:
    """Hardware (its notes go to ``notes``), duration, quota hours and output use, from run.json/summary.json."""
    accel = run.get("accelerator") if isinstance(run.get("accelerator"), dict) else {}
    assert isinstance(accel, dict)
    requested, seen, kind = _hardware(accel, summary, notes, emulated=run.get("emulated") is True)
    duration = _duration(run, summary)
    budget = _int(run.get("output_budget_bytes")) or OUTPUT_BUDGET_BYTES
    peak_output = _int(run.get("peak_working_bytes"))
    fraction = peak_output / budget if peak_output is not None else None
    return _Cost(
        accel=accel, requested=requested, seen=seen, kind=kind, duration=duration,
        cost_h=duration / 3600 if duration is not None and kind in ("gpu", "tpu") else 0.0,
        budget=budget, peak_output=peak_output, fraction=fraction,
        pulled=sum(p.stat().st_size for p in source.rglob("*") if p.is_file()),
        session_limit=_num(run.get("session_limit_s")) or float(SESSION_LIMIT_SECONDS.get(kind, 12 * 3600)))


def _mode(run: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """test/full from run.json, else from the project's summary.json ``running_test``."""
    mode = run.get("mode") if run.get("mode") in ("test", "full") else None
    if mode is None and isinstance(summary.get("running_test"), bool):
        mode = "test" if summary["running_test"] else "full"
    return mode


def _loss_plot(epochs: list[dict[str, Any]], best_epoch: int | None, resumed_from: int | None, out: Path,
               chain: ChainReport | None) -> Path | None:
    """The loss curve's PNG beside the report (None without epochs), with the chain's session boundaries."""
    if not epochs:
        return None
    plot = out.with_name(f"{out.stem}_loss_curve.png")
    boundaries = [x.first_epoch for x in chain.sessions[1:] if x.first_epoch] if chain is not None else None
    _plot(epochs, best_epoch, resumed_from, plot, boundaries)
    return plot


def _assemble(source: Path, out: Path, plot: Path | None, run: dict[str, Any], summary: dict[str, Any],
              versions: dict[str, Any], epochs: list[dict[str, Any]], cost: _Cost, *, mode: str | None,
              estimate: Estimate | None, notes: list[str], chain: ChainReport | None) -> Report:
    """The one ``Report(...)``: every field named with the file and key it comes from."""
    packages = run.get("packages") if isinstance(run.get("packages"), dict) else versions.get("packages")
    python_run = run.get("python") or versions.get("python")
    devices = cost.accel.get("devices") if isinstance(cost.accel.get("devices"), list) else []
    assert isinstance(devices, list)
    times = [t for t in (_num(row.get("epoch_time_s")) for row in epochs) if t is not None]
    return Report(
        source=source, path=out, plot=plot,
        kernel=run.get("kernel") if isinstance(run.get("kernel"), str) else None,
        version=int(source.name[1:]) if re.fullmatch(r"v\d+", source.name) else None,
        mode=mode, status=run.get("status") if isinstance(run.get("status"), str) else None,
        exit_code=_int(run.get("exit_code")),
        started_at=run.get("started_at") if isinstance(run.get("started_at"), str) else None,
        ended_at=run.get("ended_at") if isinstance(run.get("ended_at"), str) else None,
        duration_s=cost.duration,
        accelerator_requested=str(cost.requested) if cost.requested is not None else None,
        accelerator_seen=str(cost.seen) if cost.seen is not None else None,
        devices=[str(d) for d in devices], quota_kind=cost.kind, quota_cost_h=cost.cost_h,
        peak_output_bytes=cost.peak_output, output_budget_bytes=cost.budget, output_fraction=cost.fraction,
        pulled_bytes=cost.pulled, peak_rss_bytes=_int(run.get("peak_rss_bytes")),
        peak_ram_mb=_num(summary.get("peak_ram_mb")), peak_gpu_mb=_num(summary.get("peak_gpu_mb")),
        parameters=_int(summary.get("parameters")), model_size_mb=_num(summary.get("model_size_mb")),
        epochs=epochs, best_epoch=_int(summary.get("best_epoch")), best_score=_num(summary.get("best_score")),
        resumed_from_epoch=_int(summary.get("resumed_from_epoch")),
        epoch_time_median_s=statistics.median(times) if times else None,
        python_run=str(python_run) if python_run else None, python_local=platform.python_version(),
        version_diffs=_version_diffs(packages) if isinstance(packages, dict) else [],
        estimate=estimate,
        traceback_tail=run.get("traceback_tail") if isinstance(run.get("traceback_tail"), str) else None,
        notes=notes,
        overrides={str(k): str(v) for k, v in run["overrides"].items()}
        if isinstance(run.get("overrides"), dict) else {},
        args=[str(a) for a in run["args"]] if isinstance(run.get("args"), list) else [],
        hyperparameters=_hyperparameters(summary), peak_gpu_reserved_mb=_num(summary.get("peak_gpu_reserved_mb")),
        gpu=_gpu_text(summary),
        chain=chain,
    )


def _size(n: float | None) -> str:
    """Sizes in the report: two decimals, ``unknown`` when missing."""
    return display.size(n, digits=2, unknown="unknown")


def _duration_label(seconds: float | None) -> str:
    return display.duration(seconds, unknown="unknown")


def _mib(value: float | None) -> str:
    """The project's ``*_mb`` figures are MiB (``/ 1024**2``): shown in the report's one unit system (kB, MB, GB)."""
    return "unknown" if value is None else _size(value * 1024**2)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _sections(r: Report) -> list[tuple[str, list[tuple[str, str]]]]:
    """The report's tables as (title, [(label, value)]), shared by HTML and Markdown."""
    status = r.status or "unknown"
    if r.exit_code is not None:
        status += f" (exit code {r.exit_code})"
    run_rows = [
        ("Kernel", r.kernel or "unknown"), ("Mode", r.mode or "unknown"), ("Status", status),
        ("Started", r.started_at or "unknown"), ("Ended", r.ended_at or "unknown"),
        ("Duration", _duration_label(r.duration_s)),
    ]
    if r.overrides:
        run_rows.append(("--set", " ".join(f"{k}={v}" for k, v in r.overrides.items())))
    if r.args:
        import shlex

        run_rows.append(("Arguments", shlex.join(r.args)))
    devices = f" ({', '.join(r.devices)})" if r.devices else ""
    cost = (f"{display.hours(r.quota_cost_h)} {r.quota_kind.upper()} hours" if r.quota_kind != "cpu"
            else "0 GPU hours (CPU session)")
    cost_rows = [
        ("Accelerator requested", r.accelerator_requested or "unknown"),
        ("Accelerator used", (r.accelerator_seen or "unknown") + devices),
        ("Quota cost", cost),
    ]
    if r.gpu:
        cost_rows.insert(2, ("GPU", r.gpu))
    fraction = f" ({r.output_fraction:.2%} of {_size(r.output_budget_bytes)})" if r.output_fraction is not None else ""
    space_rows = [
        ("Peak output size", _size(r.peak_output_bytes) + fraction),
        ("Output budget", _size(r.output_budget_bytes)),
        ("Pulled files", _size(r.pulled_bytes)),
        ("Peak RAM (run.json)", _size(r.peak_rss_bytes)),
        ("Peak RAM (project)", _mib(r.peak_ram_mb)),
        ("Peak GPU memory", _mib(r.peak_gpu_mb) + (f" allocated, {_mib(r.peak_gpu_reserved_mb)} reserved"
                                                    if r.peak_gpu_reserved_mb is not None else "")),
        ("Parameters", f"{r.parameters:,}" if r.parameters is not None else "unknown"),
        ("Model size", _mib(r.model_size_mb)),
    ]
    last = r.epochs[-1] if r.epochs else {}
    train_rows = [
        ("Epochs", str(len(r.epochs))),
        ("Best epoch", _fmt(r.best_epoch)), ("Best score", _fmt(r.best_score)),
        ("Last train loss", _fmt(_num(last.get("train_loss")))),
        ("Last validation loss", _fmt(_num(last.get("val_loss")))),
        ("Median epoch time", _duration_label(r.epoch_time_median_s)),
    ]
    if r.resumed_from_epoch is not None:
        train_rows.append(("Resumed from epoch", str(r.resumed_from_epoch)))
    sections = [("Run", run_rows), ("Cost", cost_rows), ("Space", space_rows), ("Training", train_rows)]
    if r.chain is not None:
        sections.insert(1, (f"Resume chain {r.chain.id}", _chain_rows(r.chain)))
    if r.hyperparameters:
        sections.append(("Hyper-parameters", _hyperparameter_rows(r.hyperparameters)))
    if r.estimate is not None:
        sections.append(("Full-run estimate", _estimate_rows(r.estimate)))
    return sections


def _estimate_rows(e: Estimate) -> list[tuple[str, str]]:
    """The full-run estimate's table: duration range, how it was made, whether it fits."""
    quota = ("unknown (run kagglekit quota, or pass --quota-left)" if e.fits_quota is None else
             e.fits_quota if e.quota_left_h is None else
             f"{e.fits_quota} ({e.quota_left_h:.1f} h left, {e.quota_source or 'given'})")
    return [
        ("Duration (range)", f"{_duration_label(e.low_s)} .. {_duration_label(e.high_s)} "
                             f"(mid {_duration_label(e.mid_s)})"),
        ("From", f"median epoch {e.per_epoch_s:.3g}s × {e.full_n_epoch} epochs × data ratio "
                 f"{e.data_ratio:.3g} ({e.full_n_example:,}/{e.n_example:,} examples), + "
                 f"{_duration_label(e.fixed_s)} fixed; range ×{ESTIMATE_LOW}..×{ESTIMATE_HIGH}"),
        ("Fits the session limit", f"{e.fits_session} (limit {_duration_label(e.session_limit_s)}"
                                   + (f"; about {e.sessions_needed} sessions with push --resume)"
                                      if e.sessions_needed > 1 else ")")),
        (f"Fits the remaining {e.quota_kind.upper()} quota", quota),
    ]


def _chain_rows(c: ChainReport) -> list[tuple[str, str]]:
    billed = (f"{display.hours(c.accelerator_hours)} {c.kind.upper()} hours" if c.kind != "cpu"
              else "0 GPU hours (CPU)")
    rows = [("Kernels", " <-> ".join(c.kernels)), ("State", c.state), ("Sessions", str(len(c.sessions))),
            ("Total time", _duration_label(c.duration_s)), ("Total quota cost", billed)]
    rows += [(f"Session {x.session}", f"{x.kernel} v{x.version}, {(x.status or 'unknown').lower()}, "
                                      f"{_duration_label(x.duration_s)}"
              + (f", epochs {x.epochs}" if x.epochs else "") + ("" if x.pulled else " (not pulled)"))
             for x in c.sessions]
    return rows


def _hyper_value(value: Any) -> str:
    if isinstance(value, dict):  # the optimizer: its class and options
        name = value.get("name", "")
        options = ", ".join(f"{k} {_hyper_value(v)}" for k, v in value.items() if k != "name")
        return f"{name} ({options})" if options else str(name)
    if isinstance(value, list):
        return ", ".join(_hyper_value(v) for v in value)
    return "None" if value is None else _fmt(value, 6) if isinstance(value, float) else str(value)


def _hyperparameter_rows(hyper: dict[str, Any]) -> list[tuple[str, str]]:
    """Effective batch size, accumulation, lr and seed first, then every other recorded setting."""
    rows = []
    if "effective_batch_size" in hyper:
        parts = (f" ({hyper['batch_size']} × {hyper['accum_iter']} accumulation steps)"
                 if "batch_size" in hyper and "accum_iter" in hyper else "")
        rows.append(("Effective batch size", f"{hyper['effective_batch_size']}{parts}"))
    labels = {"lr": "Learning rate (lr)", "seed": "Seed", "optimizer": "Optimizer"}
    first = [key for key in ("lr", "seed", "optimizer") if key in hyper]
    rows += [(labels[key], _hyper_value(hyper[key])) for key in first]
    shown = {"effective_batch_size", *first}
    rows += [(key, _hyper_value(value)) for key, value in hyper.items() if key not in shown]
    return rows


def render_markdown(r: Report) -> str:
    title = f"Run report: {r.label}"
    lines = [f"# {title}", ""]
    for name, rows in _sections(r):
        lines += [f"## {name}", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {value.replace('|', '/')} |" for label, value in rows]
        lines.append("")
    if r.plot is not None:
        lines += ["## Loss curve", "", f"![loss curve]({r.plot.name})", ""]
    lines += _versions_md(r)
    if r.traceback_tail:
        lines += ["## Traceback (tail)", "", "```", r.traceback_tail.rstrip(), "```", ""]
    if r.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in r.notes] + [""]
    return "\n".join(lines)


def _versions_md(r: Report) -> list[str]:
    lines = ["## Package versions that differ from this environment", ""]
    if r.python_run and r.python_run != r.python_local:
        lines += [f"Python: run {r.python_run}, here {r.python_local}.", ""]
    if not r.version_diffs:
        return [*lines, "None.", ""]
    lines += ["| package | run | here |", "|---|---|---|"]
    lines += [f"| {d.package} | {d.run} | {d.local or 'not installed'} |" for d in r.version_diffs]
    return [*lines, ""]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; }
.note { background: #fff8e1; padding: 0.5em 1em; border-left: 4px solid #f0ad4e; }
"""


def render_html(r: Report) -> str:
    e = html.escape
    title = f"Run report: {r.label}"
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for name, rows in _sections(r):
        parts.append(f"<h2>{e(name)}</h2><table>")
        parts += [f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in rows]
        parts.append("</table>")
    if r.plot is not None:
        parts.append(f'<h2>Loss curve</h2><img src="{e(r.plot.name)}" alt="loss curve">')
    parts.append("<h2>Package versions that differ from this environment</h2>")
    if r.python_run and r.python_run != r.python_local:
        parts.append(f"<p>Python: run {e(r.python_run)}, here {e(r.python_local)}.</p>")
    if r.version_diffs:
        parts.append("<table><tr><th>package</th><th>run</th><th>here</th></tr>")
        parts += [f"<tr><td>{e(d.package)}</td><td>{e(d.run)}</td><td>{e(d.local or 'not installed')}</td></tr>"
                  for d in r.version_diffs]
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    if r.traceback_tail:
        parts.append(f"<h2>Traceback (tail)</h2><pre>{e(r.traceback_tail)}</pre>")
    if r.notes:
        parts.append("<h2>Notes</h2>")
        parts += [f'<p class="note">{e(note)}</p>' for note in r.notes]
    parts.append("</body></html>\n")
    return "\n".join(parts)


_VERSION_DIR = re.compile(r"^v(\d+)$")


_ANY_OWNER = "<any owner>"  # a bare SLUG[/VERSION]: outputs/ holds one folder per slug, whoever owns it


def resolve_target(target: str | None, root: Path, default_slug: str | None = None) -> Path:
    """OUTPUT_DIR as given, or ``[owner/]slug[/N|/vN]`` -> ``root/outputs/<slug>/v<N>`` (latest N by default).

    With no target: ``default_slug`` (the project's kernel) when it was pulled, else the only
    kernel pulled under ``root/outputs``.

    :raises NotFoundError: nothing was pulled for that kernel (or version).
    """
    if target is not None and Path(target).expanduser().is_dir():
        return Path(target).expanduser()
    outputs = root / "outputs"
    if target is None and default_slug:
        newest = _chain_newest_pulled(outputs, default_slug)
        if newest is not None:
            return newest
    if target is None and default_slug and _versions(outputs / default_slug):
        target = default_slug
    if target is None:
        slugs = sorted(p.name for p in outputs.iterdir() if p.is_dir() and _versions(p)) if outputs.is_dir() else []
        if len(slugs) != 1:
            raise NotFoundError(
                "Which run? " + (f"{outputs} holds outputs of {', '.join(slugs)}." if slugs
                                 else f"No pulled outputs under {outputs}."),
                hint="Pass an output folder or KERNEL[/VERSION], e.g. kagglekit report alice/my-model/3.",
            )
        target = slugs[0]
    try:
        ref = KernelRef.parse(target.strip("/"), default_owner=_ANY_OWNER)
    except ConfigError:
        raise NotFoundError(f"{target!r} is neither an output folder nor KERNEL[/VERSION].",
                            hint="e.g. kagglekit report alice/my-model/3, or kagglekit report outputs/my-model/v3."
                            ) from None
    name = ref.slug if ref.owner == _ANY_OWNER else ref.kernel_id  # pulled outputs are kept by slug
    slug_dir = outputs / ref.slug
    found = _versions(slug_dir)
    if not found:
        raise NotFoundError(f"No pulled outputs for {name} under {slug_dir}.",
                            hint=f"Pull them first: kagglekit pull-outputs {name}.")
    version = ref.version if ref.version is not None else max(found)
    if version not in found:
        raise NotFoundError(f"Version {version} of {name} was not pulled (have: "
                            f"{', '.join(str(v) for v in sorted(found))}).",
                            hint=f"kagglekit pull-outputs {name}/{version}")
    return found[version]


def _chain_newest_pulled(outputs: Path, slug: str) -> Path | None:
    """The project's newest pulled session when its resume chain also ran on the relay kernel."""
    from kagglekit.chain import RELAY_SUFFIX

    relay = _versions(outputs / (slug + RELAY_SUFFIX))
    if not relay:
        return None
    dated = []
    for folder in [*_versions(outputs / slug).values(), *relay.values()]:
        run = _read_json(folder / RUN_MANIFEST_RELPATH) or {}
        started = run.get("started_at")
        dated.append((str(started) if isinstance(started, str) else "", folder.stat().st_mtime, folder))
    return max(dated, key=lambda t: (t[0], t[1]))[2]


def _versions(slug_dir: Path) -> dict[int, Path]:
    if not slug_dir.is_dir():
        return {}
    found = {}
    for child in slug_dir.iterdir():
        match = _VERSION_DIR.match(child.name)
        if match and child.is_dir():
            found[int(match.group(1))] = child
    return found


def report_for(target: str | None, *, output: Path | None, quota_left: float | None,
               account: str | None) -> Report:
    """``kagglekit report``: find the pulled outputs (TARGET, else the project's newest) and report them."""
    from kagglekit.errors import ConfigError
    from kagglekit.settings import load_project

    root, default_slug = Path.cwd(), None
    try:  # pull-outputs writes under the project root; its kernel is the default TARGET
        project = load_project()
        root, default_slug = project.root, project.kernel_slug
        if project.origin("kernel").startswith("derived"):  # no kernel setting: the one push used here
            from kagglekit.identity import remembered

            pushed = remembered(root)
            default_slug = pushed.split("/")[-1] if pushed else default_slug
    except ConfigError:
        pass
    source = resolve_target(target, root, default_slug)
    quota, quota_source = last_quota_reading(account)
    if quota_left is not None:
        quota, quota_source = {"gpu": quota_left, "tpu": quota_left}, "--quota-left"
    manifest = _read_json(source / RUN_MANIFEST_RELPATH)  # read once: the chain's ledger key and the report
    return build_report(source, quota=quota, out=output, quota_source=quota_source,
                        chain=chain_report(source, root, account, manifest), manifest=manifest)


def _ledger_key(source: Path, manifest: dict[str, Any] | None) -> tuple[str, int] | None:
    """(kernel, version) of a pulled folder: run.json's kernel and the folder's ``v<N>``."""
    match = _VERSION_DIR.match(source.name)
    run = manifest or {}
    kernel = run.get("kernel")
    if not match or not isinstance(kernel, str) or "/" not in kernel:
        return None
    return kernel, int(match.group(1))


def chain_report(source: Path, root: Path, account: str | None,
                 manifest: dict[str, Any] | None) -> ChainReport | None:
    """The resume chain (from the ledger) whose session ``source`` holds; None outside a chain of 2+.
    ``manifest``: ``source``'s kagglekit/run.json (None when absent), which names the kernel."""
    from kagglekit.display import epochs_text
    from kagglekit.ledger import Ledger

    key = _ledger_key(source, manifest)
    if key is None:
        return None
    try:
        ledger = Ledger()
        records = [r for r in ledger.runs(kernel=key[0]) if r.version == key[1]
                   and (account is None or r.account == account)]
        record = records[-1] if records else None
        if record is None or record.chain_id is None:
            return None
        chain = ledger.get_chain(record.chain_id)
        runs = [r for r in ledger.chain_runs(record.chain_id) if (r.chain_seq or 0) <= (record.chain_seq or 0)]
    except KagglekitError:
        return None  # the ledger is unreadable: report the run alone
    if chain is None or len(runs) < 2:
        return None
    sessions: list[ChainSession] = []
    folders: list[Path] = []
    for r in runs:
        folder = root / "outputs" / r.kernel.partition("/")[2] / f"v{r.version}"
        pulled = (folder / RUN_MANIFEST_RELPATH).is_file() or (folder / "metrics.jsonl").is_file()
        if pulled:
            folders.append(folder)
        t = r.training or {}
        sessions.append(ChainSession(session=r.chain_seq or len(sessions) + 1, kernel=r.kernel, version=r.version,
                                     status=r.status, epochs=epochs_text(t), first_epoch=_int(t.get("first_epoch")),
                                     last_epoch=_int(t.get("epoch")), duration_s=r.elapsed_s(), pulled=pulled))
    kinds = {r.kind for r in runs}
    kind = "gpu" if "gpu" in kinds else "tpu" if "tpu" in kinds else "cpu"
    billed = sum(r.elapsed_s() or 0.0 for r in runs if r.kind in ("gpu", "tpu"))
    return ChainReport(id=chain.id, kernels=[chain.kernel, chain.sibling], state=chain.state, sessions=sessions,
                       kind=kind, accelerator_hours=billed / 3600,
                       duration_s=sum(r.elapsed_s() or 0.0 for r in runs), folders=folders)


def _chain_epochs(chain: ChainReport, newest: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """Every session's epochs by number (a later session's row wins): the curve across the whole chain."""
    merged: dict[int, dict[str, Any]] = {}
    for folder in chain.folders:
        for row in _read_metrics(_find(folder, "metrics.jsonl"), notes):
            merged[int(row["epoch"])] = row
    for row in newest:
        merged[int(row["epoch"])] = row
    missing = [x for x in chain.sessions if not x.pulled]
    if missing:
        notes.append("Sessions not pulled (their epochs come only from later sessions' metrics): "
                     + ", ".join(f"{x.kernel} v{x.version}" for x in missing) + ".")
    return [merged[k] for k in sorted(merged)]


def last_quota_reading(account: str | None = None) -> tuple[dict[str, float] | None, str | None]:
    """Hours left by accelerator from the last ``kagglekit quota`` reading kept on disk (no network).

    The reading of ``account`` (``KaggleApiClient.account``), or with None the newest of a real
    Kaggle account, never the emulator's; only a reading from this quota week counts.
    """
    from kagglekit.quota import last_reading

    reading = last_reading(account)
    left = reading.left_hours() if reading is not None else {}
    if reading is None or not left:
        return None, None
    return left, f"kagglekit quota for {reading.account} at {reading.read_at:%Y-%m-%d %H:%M} UTC"


def summary_lines(r: Report) -> list[str]:
    """The few lines ``kagglekit report`` prints."""
    cost = f"{display.hours(r.quota_cost_h)} {r.quota_kind.upper()} h" if r.quota_kind != "cpu" else "0 GPU h (CPU)"
    lines = [
        f"Run:      {r.label} ({r.mode or 'mode unknown'}), {r.status or 'status unknown'}, "
        f"{_duration_label(r.duration_s)}, cost {cost}",
        f"Device:   requested {r.accelerator_requested or 'unknown'}, used {r.accelerator_seen or 'unknown'}",
        f"Output:   peak {_size(r.peak_output_bytes)} of {_size(r.output_budget_bytes)}",
    ]
    if r.overrides or r.args:
        import shlex

        sets = " ".join(f"{k}={v}" for k, v in r.overrides.items()) or "none"
        lines.append(f"Given:    --set {sets}; arguments {shlex.join(r.args) if r.args else 'none'}")
    if r.chain is not None:
        c = r.chain
        billed = f"{display.hours(c.accelerator_hours)} {c.kind.upper()} h" if c.kind != "cpu" else "0 GPU h (CPU)"
        lines.append(f"Chain:    {len(c.sessions)} sessions over {' and '.join(c.kernels)} ({c.state}), "
                     f"{_duration_label(c.duration_s)}, cost {billed} in all")
    if r.epochs:
        lines.append(f"Training: {len(r.epochs)} epochs, best epoch {_fmt(r.best_epoch)} "
                     f"(score {_fmt(r.best_score)})")
    h = r.hyperparameters
    if {"effective_batch_size", "lr"} <= set(h):
        accum = f" = {h['batch_size']} x {h['accum_iter']}" if "batch_size" in h and "accum_iter" in h else ""
        seed = f", seed {h['seed']}" if "seed" in h else ""
        lines.append(f"Hyper:    effective batch {h['effective_batch_size']}{accum}, lr {_hyper_value(h['lr'])}{seed}")
    e = r.estimate
    if e is not None:
        quota = "unknown" if e.fits_quota is None else e.fits_quota
        lines.append(f"Full run: {_duration_label(e.low_s)} .. {_duration_label(e.high_s)} (rough); "
                     f"fits the session limit: {e.fits_session}; fits the {e.quota_kind.upper()} quota: {quota}")
    lines += [f"Note:     {note}" for note in r.notes]
    lines.append(f"Report:   {r.path}")
    if r.plot is not None:
        lines.append(f"Plot:     {r.plot}")
    return lines
