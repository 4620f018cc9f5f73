"""Resume chains: one training carried across sessions by two kernels that mount each other.

Kaggle does not let a kernel mount its own output (kaggle-prod-behaviour §1), so session k+1 runs
on the *other* kernel of a pair, the project's kernel and its relay sibling ``<slug>-relay``, and
mounts the kernel that ran session k. docs/resume.md says why and how.

This module is the one place that knows chains. Its API, for ``push --resume``, the
``--until-done`` driver, the read commands and a future queue:

- ``relay_kernel`` / ``relay_settings``: the sibling's id and the settings to push it with;
- ``newest_session`` / ``follow``: the chain's newest session, which the project's commands show;
- ``plan_resume`` / ``record_session``: which kernel the next session goes to, what it mounts,
  and its place in the ledger's chain;
- ``decide``: what a finished session means for the chain (continue, finished, failed, stopped);
- ``run_until_done``: push, follow and push again until the training says it is done.

Chain state lives in the ledger (``chains`` table; ``runs.chain_id`` / ``chain_seq``), so a
driver killed with Ctrl-C is continued by running it again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.constants import (
    ACTIVE_STATUSES,
    RUN_MANIFEST_RELPATH,
    STATUS_CANCEL_ACKNOWLEDGED,
    STATUS_COMPLETE,
    STATUS_ERROR,
)
from kagglekit.errors import (
    KagglekitError,
    KaggleRefusedError,
    NotFoundError,
    RunCancelledError,
    RunFailedError,
)

if TYPE_CHECKING:
    from kagglekit.client import KaggleApiClient, KernelRef
    from kagglekit.ledger import ChainRecord, Ledger, RunRecord
    from kagglekit.push import PushOutcome, PushRequest
    from kagglekit.settings import ProjectSettings
    from kagglekit.watch import StatusReport

RELAY_SUFFIX = "-relay"
DEFAULT_MAX_SESSIONS = 20
BUDGET_STOP_FRACTION = 0.9  # a session whose output reached this much of the budget ends the chain

# Chain states (ledger ``chains.state``).
OPEN = "open"  # sessions pushed one by one with push --resume
RUNNING = "running"  # push --until-done drives it (or did, until it was interrupted: rerun continues)
FINISHED = "finished"  # the training reported it finished
FAILED = "failed"  # a session ended in ERROR
STOPPED = "stopped"  # a session was stopped (kagglekit stop, the web UI, killed at the limit)
HALTED = "halted"  # --until-done paused: quota, output budget, --max-sessions, or progress unknown
CONTINUABLE = (OPEN, RUNNING, HALTED)


class ChainError(KagglekitError):
    """A chain cannot go on as asked (e.g. resuming from a session that is still running)."""


# --- the two kernels ---------------------------------------------------------------------------

def relay_kernel(kernel: str) -> str:
    """``alice/my-model`` -> ``alice/my-model-relay``: the sibling the sessions alternate with."""
    owner, _, slug = kernel.rpartition("/")
    return f"{owner}/{slug}{RELAY_SUFFIX}" if owner else f"{slug}{RELAY_SUFFIX}"


def relay_settings(settings: ProjectSettings) -> ProjectSettings:
    """The project's settings for its relay sibling: same sources, accelerator and files; its own
    slug, and a title that slugifies to it (Kaggle names a kernel after its title)."""
    from kagglekit.settings import slugify, title_from_slug

    assert settings.kernel_slug is not None
    slug = settings.kernel_slug + RELAY_SUFFIX
    title = title_from_slug(slug)
    if settings.title and slugify(settings.title + " Relay") == slug:
        title = settings.title + " Relay"
    return dataclasses.replace(settings, kernel_slug=slug, title=title)


def target_kernel(project: str, source: str) -> str:
    """Where the next session goes: the kernel of the pair that did NOT run ``source``."""
    return relay_kernel(project) if source.lower() == project.lower() else project


# --- the newest session ------------------------------------------------------------------------

def _when(record: RunRecord) -> datetime:
    from kagglekit.ledger import utcnow

    return record.pushed_at or record.started_at or record.updated_at or utcnow()


def newest_session(ledger: Ledger, account: str, kernel: str) -> RunRecord | None:
    """The newest version the ledger knows of ``kernel`` or its relay sibling (None: neither)."""
    records = ledger.runs(kernel=kernel, account=account) + ledger.runs(kernel=relay_kernel(kernel), account=account)
    return max(records, key=lambda r: (_when(r), r.version), default=None)


def follow(client: KaggleApiClient, ledger: Ledger | None, ref: KernelRef) -> tuple[KernelRef, str | None]:
    """For a kernel given without a version: its chain's newest session when that ran on the relay
    sibling (with a note saying so); otherwise ``ref`` unchanged (its own newest version is used)."""
    if ledger is None or ref.version is not None:
        return ref, None
    kernel = f"{ref.owner}/{ref.slug}"
    newest = newest_session(ledger, client.account, kernel)
    if newest is None or newest.kernel == kernel:
        return ref, None
    from kagglekit.client import KernelRef as Ref

    owner, _, slug = newest.kernel.partition("/")
    return Ref(owner, slug, newest.version), f"the chain's newest session is {newest.kernel} v{newest.version}"


# --- planning a resumed session ----------------------------------------------------------------

@dataclasses.dataclass
class ResumePlan:
    """Where the next session of a chain goes and what it continues from."""

    project: str  # the project's kernel (owner/slug)
    source_kernel: str
    source_version: int | None
    source_status: str | None
    target: str  # the kernel the session is pushed to
    settings: ProjectSettings  # the settings to bundle it with (the relay's, when the target is it)
    chain_id: int | None  # the source's chain, when it has one
    source_seq: int | None
    warnings: list[str]

    @property
    def resume_ref(self) -> str:
        return self.source_kernel + (f"/{self.source_version}" if self.source_version else "")

    @property
    def in_pair(self) -> bool:
        """Whether the source is one of the chain's two kernels (not another kernel's output)."""
        return self.source_kernel.lower() in (self.project.lower(), relay_kernel(self.project).lower())


def plan_resume(client: KaggleApiClient, ledger: Ledger | None, settings: ProjectSettings,
                resume_from: str | None) -> ResumePlan:
    """Which session to continue from (``resume_from``, else the chain's newest), and where to push.

    Refuses (``ChainError``) a source that is still queued or running: its output exists only
    once it has ended and been saved.
    """
    from kagglekit.client import KernelRef

    project = settings.kernel_id or ""
    account = client.account
    if resume_from:
        ref = KernelRef.parse(resume_from, default_owner=client.username)
    else:
        newest = newest_session(ledger, account, project) if ledger is not None else None
        if newest is not None:
            ref = KernelRef.parse(newest.ref)
        else:
            ref = _newest_on_kaggle(client, project)
    source = f"{ref.owner}/{ref.slug}"
    info = client.get_kernel(ref.without_version())  # a kernel that isn't there fails clearly (exit 5)
    version = ref.version
    if version is None and ledger is not None:
        version = max((r.version for r in ledger.runs(kernel=source, account=account)), default=None)
    if version is None:
        version = info.current_version
    status = _live_status(client, ledger, ref.with_version(version)) if version is not None else None
    where = f"{source} v{version}" if version else source
    if status in ACTIVE_STATUSES:
        raise ChainError(
            f"{where} is still {status.lower()}: its output is saved only when it ends, so there is no "
            "checkpoint to resume from yet.",
            hint="Wait for it (kagglekit status --watch), or let `kagglekit push --resume --until-done` follow it "
                 "and push the next session when it ends.")
    warnings = _source_warnings(where, status)
    record = ledger.get(account, source, version) if ledger is not None and version is not None else None
    target = target_kernel(project, source)
    target_settings = relay_settings(settings) if target != project else settings
    return ResumePlan(project=project, source_kernel=source, source_version=version, source_status=status,
                      target=target, settings=target_settings,
                      chain_id=record.chain_id if record is not None else None,
                      source_seq=record.chain_seq if record is not None else None, warnings=warnings)


def _newest_on_kaggle(client: KaggleApiClient, project: str) -> KernelRef:
    """No ledger record (another machine): the newer of the two kernels as Kaggle sees them."""
    from kagglekit.client import KernelRef

    candidates = []
    for kernel in (project, relay_kernel(project)):
        try:
            info = client.get_kernel(KernelRef.parse(kernel))
        except NotFoundError:
            continue
        candidates.append((info.last_run_time.timestamp() if info.last_run_time else 0.0, kernel))
    if not candidates:
        return KernelRef.parse(project)  # get_kernel then says clearly that there is nothing to resume
    return KernelRef.parse(max(candidates)[1])


def _live_status(client: KaggleApiClient, ledger: Ledger | None, ref: KernelRef) -> str | None:
    """The version's status as Kaggle says it now (recorded in the ledger); None when unknown."""
    try:
        status = client.status(ref).status
    except KagglekitError:
        return None
    if ledger is not None and ref.version is not None:
        ledger.record_status(client.account, f"{ref.owner}/{ref.slug}", ref.version, status)
    return status


def _source_warnings(where: str, status: str | None) -> list[str]:
    if status == STATUS_CANCEL_ACKNOWLEDGED:
        return [f"{where} was stopped (CANCEL_ACKNOWLEDGED), not ended by its own time guard: its checkpoint is the "
                "last one saved before the stop (possibly older than its last epoch, and a save cut short is lost), "
                "and Kaggle may not mount a cancelled version's output at all; the new session then stops with exit "
                "code 3 instead of training from scratch. Let sessions end themselves (should_stop / time_left)."]
    if status == STATUS_ERROR:
        return [f"{where} failed (ERROR): resuming from the checkpoint it saved before it failed. Fix the cause "
                "first, or the next session fails the same way."]
    return []


def record_session(ledger: Ledger, account: str, plan: ResumePlan | None, kernel: str, version: int,
                   project: str) -> int:
    """Put a pushed version into its chain (created when the source had none); returns the chain id."""
    if plan is not None and plan.chain_id is not None:
        ledger.add_to_chain(account, kernel, version, plan.chain_id, (plan.source_seq or 0) + 1)
        return plan.chain_id
    chain = ledger.create_chain(account, project, relay_kernel(project))
    seq = 1
    if plan is not None and plan.in_pair and plan.source_version is not None:
        ledger.add_to_chain(account, plan.source_kernel, plan.source_version, chain.id, 1)
        seq = 2
    ledger.add_to_chain(account, kernel, version, chain.id, seq)
    return chain.id


# --- what an ended session means -----------------------------------------------------------------

CONTINUE = "continue"
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # continue | finished | failed | stopped | unknown
    message: str


def epochs_text(training: dict[str, Any] | None) -> str:
    """``epochs 8-14 of 40`` from a session's reported progress ('' when it reported none)."""
    if not training or training.get("epoch") is None:
        return ""
    last, first, total = training.get("epoch"), training.get("first_epoch"), training.get("total")
    span = f"epochs {first}-{last}" if first is not None and first != last else (
        f"epoch {last}" if first is not None else f"up to epoch {last}, none trained here")
    return span + (f" of {total}" if total else "")


def decide(where: str, status: str, failure: str | None, training: dict[str, Any] | None) -> Decision:
    """What an ended session means for its chain."""
    if status == STATUS_ERROR:
        return Decision(FAILED, f"{where} failed" + (f": {failure}" if failure else "") + ".")
    if status == STATUS_CANCEL_ACKNOWLEDGED:
        return Decision(STOPPED, f"{where} was stopped (CANCEL_ACKNOWLEDGED): by `kagglekit stop` or the web UI, or "
                                 "killed at the session limit because its time guard did not end it first. Its "
                                 "checkpoint is the last one saved before the stop, and Kaggle may not mount a "
                                 "cancelled version's output.")
    if status != STATUS_COMPLETE:
        return Decision(UNKNOWN, f"{where} ended {status}.")
    if not training:
        return Decision(UNKNOWN, f"{where} completed but its training reported no progress, so kagglekit cannot tell "
                                 "whether it finished or stopped for time (call kagglekit_runtime.report_progress "
                                 "in the training loop).")
    epochs = epochs_text(training)
    if training.get("finished"):
        reason = training.get("reason")
        return Decision(FINISHED, f"{where} finished the training ({epochs}" + (f", {reason}" if reason else "") + ").")
    return Decision(CONTINUE, f"{where} ended by its time guard ({epochs}); the next session carries on.")


# --- push --resume --until-done --------------------------------------------------------------------

@dataclasses.dataclass
class ChainOutcome:
    """How ``--until-done`` left the chain (``--json`` prints this)."""

    chain_id: int
    state: str
    message: str
    sessions: list[dict[str, Any]]
    gpu_hours: float

    def raise_for_state(self, cli: str = "kagglekit") -> None:
        """The documented exit: finished 0, failed 8, stopped 9, halted by Kaggle's refusal 6."""
        if self.state == FAILED:
            raise RunFailedError(self.message, hint=f"Full log: {cli} logs; once fixed: {cli} push --resume "
                                                    "--until-done continues the chain.")
        if self.state == STOPPED:
            raise RunCancelledError(self.message, hint=f"To go on anyway: {cli} push --resume --until-done.")


def sessions_of(ledger: Ledger, chain_id: int) -> list[dict[str, Any]]:
    """One row per session of a chain: where it ran, how it ended, its epochs and time."""
    rows = []
    for rec in ledger.chain_runs(chain_id):
        rows.append({"session": rec.chain_seq, "kernel": rec.kernel, "version": rec.version, "status": rec.status,
                     "epochs": epochs_text(rec.training), "training": rec.training,
                     "duration_s": rec.elapsed_s(), "accelerator": rec.kind})
    return rows


def accelerator_hours(ledger: Ledger, chain_id: int) -> float:
    """The chain's GPU/TPU hours: the sessions' durations on an accelerator."""
    return sum((r.elapsed_s() or 0.0) for r in ledger.chain_runs(chain_id) if r.kind in ("gpu", "tpu")) / 3600


def continuable_chain(ledger: Ledger, account: str, project: str) -> ChainRecord | None:
    """The project's newest chain that ``--until-done`` may carry on (open, running or halted)."""
    chains = [c for c in ledger.chains(account=account, kernel=project) if c.kernel == project]
    newest = chains[-1] if chains else None
    return newest if newest is not None and newest.state in CONTINUABLE else None


@dataclasses.dataclass
class UntilDone:
    """What the driver needs besides the push request (callbacks print; the CLI owns the words)."""

    interval_s: float = 30.0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    info: Callable[[str], None] = print
    on_pushed: Callable[[PushOutcome], None] = lambda outcome: None
    on_change: Callable[[StatusReport], None] = lambda report: None


def run_until_done(client: KaggleApiClient, req: PushRequest, ledger: Ledger, opts: UntilDone) -> ChainOutcome:
    """Push sessions until the training reports it finished, a session fails or is stopped, or the
    next one would not fit (quota, output budget, ``max_sessions``). Interrupting it loses nothing:
    the state is in the ledger, and calling it again continues the same chain."""
    from kagglekit.push import load_settings

    settings = load_settings(req)
    if settings.kernel_owner is None:
        settings = settings.with_owner(client.username)
    project = settings.kernel_id or ""
    account = client.account
    chain = _start(client, req, ledger, opts, project)
    while True:
        sessions = ledger.chain_runs(chain.id)
        current = sessions[-1]
        where = f"{current.kernel} v{current.version}"
        report = _follow(client, ledger, current, opts)
        training = _fetch_training(client, ledger, settings.root, current)
        decision = decide(where, report.status, report.failure_message, training)
        opts.info(decision.message)
        if decision.action != CONTINUE:
            state = HALTED if decision.action == UNKNOWN else decision.action
            return _conclude(ledger, chain.id, state, decision.message)
        chain = ledger.get_chain(chain.id) or chain
        if chain.state == STOPPED:  # `kagglekit stop` while this session ran
            return _conclude(ledger, chain.id, STOPPED, f"The chain was stopped ({chain.note or 'kagglekit stop'}).")
        if len(sessions) >= opts.max_sessions:
            return _conclude(ledger, chain.id, HALTED,
                             f"{len(sessions)} sessions run, the --max-sessions limit; the training has not "
                             "finished. Run the command again (with a higher --max-sessions) to go on.")
        budget_note = _budget_exceeded(ledger.get(account, current.kernel, current.version), settings)
        if budget_note:
            return _conclude(ledger, chain.id, HALTED, budget_note)
        try:
            _push_next(client, req, ledger, opts, current, project)
        except KaggleRefusedError as exc:
            _conclude(ledger, chain.id, HALTED, f"The next session was not pushed: {exc.message}")
            raise


def _start(client: KaggleApiClient, req: PushRequest, ledger: Ledger, opts: UntilDone, project: str) -> ChainRecord:
    """The chain to drive: the project's unfinished one, else one started by a first push."""
    account = client.account
    chain = continuable_chain(ledger, account, project) if not req.resume_from else None
    options = {"max_sessions": opts.max_sessions}
    if chain is not None:
        sessions = ledger.chain_runs(chain.id)
        last = sessions[-1] if sessions else None
        opts.info(f"Continuing chain {chain.id} of {project}: {len(sessions)} session(s) so far"
                  + (f", the newest {last.kernel} v{last.version} ({(last.status or 'unknown').lower()})."
                     if last else "."))
        _adopt_unrecorded(client, ledger, chain, last, opts)
        return ledger.update_chain(chain.id, state=RUNNING, until_done=True, options=options)
    newest = newest_session(ledger, account, project) if req.resume and not req.resume_from else None
    if newest is not None and newest.active:
        # A session already going (pushed without --until-done): the chain starts with it.
        chain_id = newest.chain_id or record_session(ledger, account, None, newest.kernel, newest.version, project)
        opts.info(f"Following {newest.kernel} v{newest.version}, then carrying on from it.")
        return ledger.update_chain(chain_id, state=RUNNING, until_done=True, options=options)
    from kagglekit.push import push

    outcome = push(client, req, ledger, info=opts.info)
    opts.on_pushed(outcome)
    assert outcome.version is not None
    record = ledger.get(account, outcome.kernel, outcome.version)
    chain_id = record.chain_id if record is not None else None
    if chain_id is None:  # a fresh first session: the chain starts with it
        chain_id = record_session(ledger, account, None, outcome.kernel, outcome.version, project)
    return ledger.update_chain(chain_id, state=RUNNING, until_done=True, options=options)


def _adopt_unrecorded(client: KaggleApiClient, ledger: Ledger, chain: ChainRecord, last: RunRecord | None,
                      opts: UntilDone) -> None:
    """A push Kaggle accepted but the ledger missed (the driver was killed in between) joins the chain,
    so continuing never pushes the same session twice."""
    from kagglekit.client import KernelRef

    if last is None or last.active:
        return
    target = target_kernel(chain.kernel, last.kernel)
    known = max((r.version for r in ledger.runs(kernel=target, account=chain.account)), default=0)
    try:
        current = client.get_kernel(KernelRef.parse(target)).current_version
    except NotFoundError:
        return
    if current is None or current <= known:
        return
    ledger.record_push(chain.account, target, current, resume_from=last.ref, message="adopted by --until-done",
                       accelerator=last.accelerator, machine_shape=last.machine_shape, mode=last.mode,
                       overrides=last.overrides)
    ledger.add_to_chain(chain.account, target, current, chain.id, (last.chain_seq or 0) + 1)
    opts.info(f"Found {target} v{current} on Kaggle, pushed before the last interruption: following it.")


def _follow(client: KaggleApiClient, ledger: Ledger, current: RunRecord, opts: UntilDone) -> StatusReport:
    from kagglekit.push import wait_for

    return wait_for(client, current.kernel, current.version, ledger, opts.interval_s, opts.on_change)


def _fetch_training(client: KaggleApiClient, ledger: Ledger, root: Path, current: RunRecord) -> dict[str, Any] | None:
    """The session's reported progress: its run.json, pulled into outputs/<slug>/v<N>/ (and the ledger)."""
    from kagglekit.client import KernelRef
    from kagglekit.download import default_target, pull_outputs

    record = ledger.get(current.account, current.kernel, current.version)
    if record is not None and record.training is not None:
        return record.training
    slug = current.kernel.partition("/")[2]
    try:
        summary = pull_outputs(client, KernelRef.parse(current.ref), include=[RUN_MANIFEST_RELPATH],
                               target=default_target(slug, current.version, root), ledger=ledger, progress=False,
                               raise_on_failure=False)
    except KagglekitError:
        return None
    if summary.run_json is None:
        return None
    try:
        data = json.loads(summary.run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    training = data.get("training") if isinstance(data, dict) else None
    return training if isinstance(training, dict) else None


def _budget_exceeded(record: RunRecord | None, settings: ProjectSettings) -> str | None:
    if record is None:
        return None
    used = max(record.peak_working_bytes or 0, record.output_bytes or 0)
    budget = settings.output_budget_bytes
    if budget <= 0 or used < BUDGET_STOP_FRACTION * budget:
        return None
    return (f"{record.kernel} v{record.version} left {used / 1e9:.1f} GB of output, {used / budget:.0%} of the "
            f"{budget / 1e9:.0f} GB budget: the next session starts from those files and would not fit. Keep fewer "
            "checkpoints (the project's checkpoint patterns are what the next session restores).")


def _push_next(client: KaggleApiClient, req: PushRequest, ledger: Ledger, opts: UntilDone, current: RunRecord,
               project: str) -> None:
    from kagglekit.push import push

    next_req = dataclasses.replace(req, resume=True, resume_from=current.ref, strict=True)
    outcome = push(client, next_req, ledger, info=opts.info)
    opts.on_pushed(outcome)


def _conclude(ledger: Ledger, chain_id: int, state: str, message: str) -> ChainOutcome:
    ledger.update_chain(chain_id, state=state, note=message)
    return ChainOutcome(chain_id=chain_id, state=state, message=message, sessions=sessions_of(ledger, chain_id),
                        gpu_hours=accelerator_hours(ledger, chain_id))
