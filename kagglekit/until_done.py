"""``push --resume --until-done``: push a session, follow it, push the next, until the training is done.

It stops when the training reports it finished (run.json ``training.finished``), a session fails
or is stopped, the next session would not fit (the quota preflight, the output budget,
``--max-sessions``), or a COMPLETE session reported no progress (kagglekit cannot tell and does not
guess). The chain's state is in the ledger, never only in this process: Ctrl-C leaves the running
session alone, and running the same command again continues the same chain (docs/resume.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.chain import (
    CONTINUE,
    FAILED,
    FINISHED,
    HALTED,
    RUNNING,
    STOPPED,
    UNKNOWN,
    adopt_unrecorded,
    continuable_chain,
    decide,
    newest_session,
    record_session,
    target_kernel,
)
from kagglekit.constants import RUN_MANIFEST_RELPATH, STATUS_COMPLETE
from kagglekit.display import epochs_text
from kagglekit.errors import (
    KagglekitError,
    KaggleRefusedError,
    RunCancelledError,
    RunFailedError,
)
from kagglekit.push import PushOutcome, PushRequest, WaitLimits, load_settings, push, wait_for

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.ledger import ChainRecord, Ledger, RunRecord
    from kagglekit.settings import ProjectSettings
    from kagglekit.watch import StatusReport

DEFAULT_MAX_SESSIONS = 20
BUDGET_STOP_FRACTION = 0.9  # a session whose output reached this much of the budget ends the chain


@dataclasses.dataclass
class UntilDone:
    """What the driver needs besides the push request (the callbacks print; the CLI owns the words)."""

    interval_s: float = 30.0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    info: Callable[[str], None] = print
    on_pushed: Callable[[PushOutcome], None] = lambda outcome: None
    on_change: Callable[[StatusReport], None] = lambda report: None
    cli: str = "kagglekit"  # how hints name the command


@dataclasses.dataclass
class ChainOutcome:
    """How ``--until-done`` left the chain (``--json`` prints this)."""

    chain_id: int
    state: str
    message: str
    sessions: list[dict[str, Any]]
    accelerator_hours: float

    def raise_for_state(self, cli: str = "kagglekit") -> None:
        """The documented exit: finished or halted 0, a failed session 8, a stopped one 9."""
        if self.state == FAILED:
            raise RunFailedError(self.message, hint=f"Full log: {cli} logs. Once fixed, {cli} push --resume "
                                                    "--until-done continues the chain.")
        if self.state == STOPPED:
            raise RunCancelledError(self.message, hint=f"To go on anyway: {cli} push --resume --until-done.")


def session_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per session of a chain: where it ran, how it ended, its epochs and time."""
    return [{"session": r.chain_seq, "kernel": r.kernel, "version": r.version, "status": r.status,
             "epochs": epochs_text(r.training), "duration_s": r.elapsed_s(), "accelerator": r.kind}
            for r in records]


def run_until_done(client: KaggleApiClient, req: PushRequest, ledger: Ledger, opts: UntilDone) -> ChainOutcome:
    """Push and follow sessions until the chain ends (see the module's docstring); returns how it ended."""
    settings = load_settings(req)
    if settings.kernel_owner is None:
        settings = settings.with_owner(client.username)
    project = settings.kernel_id or ""
    finished = _already_finished(client, req, ledger, project)
    if finished is not None:
        return finished
    chain = _start(client, req, ledger, opts, project)
    while True:
        sessions = ledger.chain_runs(chain.id)
        current = sessions[-1]
        where = f"{current.kernel} v{current.version}"
        report = wait_for(client, current.kernel_ref, ledger, opts.interval_s, opts.on_change,
                          WaitLimits(cli=opts.cli))  # its hints and notes name the command as invoked
        decision = decide(where, report.status, report.failure_message,
                          _fetch_training(client, ledger, settings.root, current))
        opts.info(decision.message)
        if decision.action != CONTINUE:
            return _conclude(ledger, chain.id, HALTED if decision.action == UNKNOWN else decision.action,
                             decision.message)
        chain = ledger.get_chain(chain.id) or chain
        if chain.state == STOPPED:  # `kagglekit stop` while the session ran
            return _conclude(ledger, chain.id, STOPPED, f"The chain was stopped: {chain.note or 'kagglekit stop'}.")
        if len(sessions) >= opts.max_sessions:
            return _conclude(ledger, chain.id, HALTED,
                             f"{len(sessions)} sessions have run (--max-sessions) and the training has not finished. "
                             "Run the command again (with a higher --max-sessions) to go on.")
        budget_note = _budget_exceeded(ledger.get(current.account, current.kernel, current.version), settings)
        if budget_note:
            return _conclude(ledger, chain.id, HALTED, budget_note)
        next_req = dataclasses.replace(req, resume=True, resume_from=current.ref, strict=True)
        try:
            opts.on_pushed(push(client, next_req, ledger, info=opts.info))
        except KaggleRefusedError as exc:  # quota (the preflight or Kaggle), the session cap: go on later
            _conclude(ledger, chain.id, HALTED, f"The next session was not pushed: {exc.message}")
            raise


def _already_finished(client: KaggleApiClient, req: PushRequest, ledger: Ledger, project: str) -> ChainOutcome | None:
    """--resume when the newest session already finished the training: nothing to push (a session would
    only find the training done and spend its start-up on the quota)."""
    if not req.resume or req.resume_from or continuable_chain(ledger, client.account, project) is not None:
        return None
    newest = newest_session(ledger, client.account, project)
    if newest is None or newest.status != STATUS_COMPLETE or not (newest.training or {}).get("finished"):
        return None
    message = (f"{newest.kernel} v{newest.version} already finished the training (epochs "
               f"{epochs_text(newest.training)}): nothing was pushed. Push without --resume to train afresh.")
    chain_id = newest.chain_id or record_session(ledger, client.account, None, newest.kernel, newest.version, project)
    return _conclude(ledger, chain_id, FINISHED, message)


def _start(client: KaggleApiClient, req: PushRequest, ledger: Ledger, opts: UntilDone, project: str) -> ChainRecord:
    """The chain to drive: the project's unfinished one, else one that starts with a first push."""
    account = client.account
    options = {"max_sessions": opts.max_sessions}
    chain = continuable_chain(ledger, account, project) if not req.resume_from else None
    if chain is not None:
        sessions = ledger.chain_runs(chain.id)
        last = sessions[-1] if sessions else None
        opts.info(f"Continuing chain {chain.id} of {project}: {len(sessions)} session(s) so far"
                  + (f", the newest {last.kernel} v{last.version} ({(last.status or 'unknown').lower()})."
                     if last else "."))
        if last is not None:
            _adopt_unrecorded(client, ledger, chain, last, opts)
            return ledger.update_chain(chain.id, state=RUNNING, until_done=True, options=options)
    newest = newest_session(ledger, account, project) if req.resume and not req.resume_from else None
    if newest is not None and newest.active:
        # A session already going (pushed without --until-done): the chain follows it, then carries on.
        first = newest.chain_id or record_session(ledger, account, None, newest.kernel, newest.version, project)
        opts.info(f"Following {newest.kernel} v{newest.version}, then carrying on from it.")
        return ledger.update_chain(first, state=RUNNING, until_done=True, options=options)
    outcome = push(client, req, ledger, info=opts.info)
    opts.on_pushed(outcome)
    assert outcome.version is not None
    record = ledger.get(account, outcome.kernel, outcome.version)
    chain_id = record.chain_id if record is not None else None
    if chain_id is None:  # a fresh first session: the chain starts with it
        chain_id = record_session(ledger, account, None, outcome.kernel, outcome.version, project)
    return ledger.update_chain(chain_id, state=RUNNING, until_done=True, options=options)


def _adopt_unrecorded(client: KaggleApiClient, ledger: Ledger, chain: ChainRecord, last: RunRecord,
                      opts: UntilDone) -> None:
    """A push Kaggle accepted but the ledger missed (the driver was killed in between) joins the chain,
    so continuing never pushes the same session twice."""
    if last.active:
        return
    target = target_kernel(chain.kernel, last.kernel)
    current = adopt_unrecorded(client, ledger, chain.account, target, (chain.id, (last.chain_seq or 0) + 1),
                               wait_new_403=True, resume_from=last.ref, message="adopted by --until-done",
                               accelerator=last.accelerator, machine_shape=last.machine_shape, mode=last.mode,
                               overrides=last.overrides)
    if current is not None:
        opts.info(f"Found {target} v{current} on Kaggle, pushed before the last interruption: following it.")


def _fetch_training(client: KaggleApiClient, ledger: Ledger, root: Path, current: RunRecord) -> dict[str, Any] | None:
    """The session's reported progress, from its run.json pulled into outputs/<slug>/v<N>/ (and the ledger)."""
    from kagglekit.download import default_target, pull_outputs
    from kagglekit.ledger import training_of

    record = ledger.get(current.account, current.kernel, current.version)
    if record is not None and record.training is not None:
        return record.training
    ref = current.kernel_ref
    try:
        summary = pull_outputs(client, ref, include=[RUN_MANIFEST_RELPATH],
                               target=default_target(ref.slug, current.version, root), ledger=ledger, progress=False,
                               raise_on_failure=False)
    except KagglekitError:
        return None
    if summary.run_json is None:
        return None
    try:
        return training_of(summary.run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, or not UTF-8
        return None


def _budget_exceeded(record: RunRecord | None, settings: ProjectSettings) -> str | None:
    if record is None:
        return None
    used = max(record.peak_working_bytes or 0, record.output_bytes or 0)
    budget = settings.output_budget_bytes
    if budget <= 0 or used < BUDGET_STOP_FRACTION * budget:
        return None
    return (f"{record.kernel} v{record.version} left {used / 1e9:.1f} GB of output, {used / budget:.0%} of the "
            f"{budget / 1e9:.0f} GB budget: the next session starts from those files and would not fit. Keep fewer "
            "checkpoints (the project's `checkpoints` patterns are what the next session restores).")


def _conclude(ledger: Ledger, chain_id: int, state: str, message: str) -> ChainOutcome:
    from kagglekit.queue import accelerator_hours

    ledger.update_chain(chain_id, state=state, note=message)
    records = ledger.chain_runs(chain_id)
    return ChainOutcome(chain_id=chain_id, state=state, message=message, sessions=session_rows(records),
                        accelerator_hours=accelerator_hours(records))
