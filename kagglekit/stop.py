"""``kagglekit stop``: cancel a running session, or say plainly why not and what else stops it.

Kaggle's ``CancelKernelSession`` takes the *session* id, which no status call returns
(kaggle-prod-behaviour §9); the kernel runtime prints it at start (``kagglekit: kernel session
id N``) and ``stop`` reads it back from the live log. Many accounts get 403
``kernelSessions.cancel`` even so (§6): then the web UI's "Stop Session" works, or deleting the
kernel, which ``--delete`` does only after pulling every saved output and an explicit
confirmation. Stopping also ends the chain the session belongs to, so ``push --until-done``
pushes no further session.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.constants import ACTIVE_STATUSES, STATUS_QUEUED
from kagglekit.errors import CancelDeniedError, DownloadError, KagglekitError, NotFoundError
from kagglekit.kernel_ref import KernelRef

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.ledger import Ledger

SESSION_LINE = re.compile(r"kagglekit: kernel session id (\d+)|kaggle_[^\s-]*-(\d+)-webtier")
SESSION_LOOKUP_S = 20.0
ACTIVE_EVENTS = "https://www.kaggle.com (left sidebar: View Active Events)"


@dataclasses.dataclass
class StopOutcome:
    """What ``stop`` did (``--json`` prints this)."""

    kernel: str
    version: int | None
    status: str | None  # the run's status when stop looked
    session_id: int | None
    action: str  # cancelled | not-running | denied | deleted | kept | dry-run
    message: str
    pulled: list[str] = dataclasses.field(default_factory=list)  # output folders written before a delete
    deleted: bool = False
    plan: list[str] = dataclasses.field(default_factory=list)  # --dry-run: the steps it would take


def session_id_from_log(lines: Any) -> int | None:
    """The session id in log text lines (the runtime's line, or a printed KAGGLE_CONTAINER_NAME)."""
    for line in lines:
        match = SESSION_LINE.search(str(line))
        if match:
            return int(match.group(1) or match.group(2))
    return None


def find_session_id(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None,
                    timeout_s: float = SESSION_LOOKUP_S) -> int | None:
    """The run's session id: from the ledger (run.json pulled), else read from its live log.

    The log stream of a running version does not end until the run does, so it is read in a
    background thread and abandoned after ``timeout_s`` without the line.
    """
    kernel = ref.kernel_id
    if ledger is not None and ref.version is not None:
        record = ledger.get(client.account, kernel, ref.version)
        if record is not None and record.session_id is not None:
            return record.session_id
    found: queue.Queue[int | None] = queue.Queue()

    def read() -> None:
        try:
            for record in client.stream_log(ref):
                sid = session_id_from_log([getattr(record, "data", record)])
                if sid is not None:
                    found.put(sid)
                    return
        except Exception:
            pass
        found.put(None)

    threading.Thread(target=read, name="kagglekit-session-id", daemon=True).start()
    try:
        sid = found.get(timeout=timeout_s)
    except queue.Empty:
        sid = None
    if sid is not None and ledger is not None and ref.version is not None:
        ledger.record_session_id(client.account, kernel, ref.version, sid)
    return sid


def where_to_stop(kernel: str) -> str:
    """Where a person stops a session by hand."""
    return (f"In the browser: open https://www.kaggle.com/code/{kernel} (signed in as its owner), or "
            f"{ACTIVE_EVENTS}, and press \"Stop Session\" on the running session.")


def stop(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None, *, delete: bool = False,
         yes: bool = False, dry_run: bool = False, outputs_root: Path | None = None,
         confirm: Callable[[str], bool] = lambda question: False,
         info: Callable[[str], None] = print, cli: str = "kagglekit") -> StopOutcome:
    """Stop the run ``ref`` (a version; the newest when none): cancel it, else explain, else delete.

    ``confirm`` asks the user (never called with ``yes``); without a yes nothing is deleted.
    """
    from kagglekit.watch import check_status

    report = check_status(client, ref, ledger, with_log_tail=False)
    kernel = report.kernel
    ref = ref.with_version(report.version)
    where = f"{kernel} v{report.version}" if report.version else kernel
    out = StopOutcome(kernel=kernel, version=report.version, status=report.status, session_id=None,
                      action="not-running", message="")
    if report.status not in ACTIVE_STATUSES:
        out.message = f"{where} is not running ({report.status}): nothing to stop."
        if not dry_run:
            _end_chain(client, ledger, kernel, report.version, f"kagglekit stop after {where} ended")
        return out

    # A queued run has no session yet (nothing in its log to read the id from).
    out.session_id = find_session_id(client, ref, ledger) if report.status != STATUS_QUEUED else None
    if dry_run:
        out.action = "dry-run"
        out.plan = _plan(kernel, where, out.session_id, delete)
        out.message = "Dry run: nothing was cancelled or deleted. It would:\n" + "\n".join(
            f"  {i}. {step}" for i, step in enumerate(out.plan, 1))
        return out

    denied: str
    if out.session_id is None and report.status == STATUS_QUEUED:
        denied = (f"{where} is still queued: its session has not started, so there is no session id to cancel "
                  "with yet (try again in a moment).")
    elif out.session_id is None:
        denied = (f"Could not find {where}'s session id in its log (no `kagglekit: kernel session id` line within "
                  f"{SESSION_LOOKUP_S:.0f} s: it was not pushed by kagglekit, or its log is not readable), and "
                  "Kaggle cancels only by session id.")
    else:
        try:
            client.cancel_session(out.session_id)
        except CancelDeniedError as exc:
            denied = (f"Kaggle refused to cancel {where} (session {out.session_id}): {exc.message}. Kaggle lets only "
                      "the account that started a session cancel it through the API, and for many accounts not "
                      "even that.")
        else:
            out.action = "cancelled"
            out.message = (f"Cancel requested for {where} (session {out.session_id}): Kaggle saves its output "
                           "(CANCEL_REQUESTED), then it reads CANCEL_ACKNOWLEDGED. Its files are kept.")
            _end_chain(client, ledger, kernel, report.version, f"kagglekit stop cancelled {where}")
            return out

    out.action = "denied"
    if not delete:
        out.message = (f"{denied}\n{where_to_stop(kernel)}\nOr delete the kernel, which ends the session and its "
                       f"billing: `{cli} stop {kernel} --delete` pulls every saved output first and asks "
                       "before deleting.")
        _end_chain(client, ledger, kernel, report.version, f"kagglekit stop: {where} must be stopped by hand")
        return out
    info(denied)
    return _pull_then_delete(client, ref, ledger, out, where, yes=yes, confirm=confirm, info=info,
                             outputs_root=outputs_root, cli=cli)


def _plan(kernel: str, where: str, session_id: int | None, delete: bool) -> list[str]:
    steps = [f"cancel session {session_id} of {where} (CancelKernelSession)" if session_id is not None
             else f"not cancel: {where}'s session id is not in its log yet"]
    if delete:
        steps += [f"if Kaggle refuses the cancel: pull every saved output of {kernel} into outputs/",
                  f"then ask, and only on a yes delete the kernel {kernel} with all its versions (stops billing; "
                  "the running session's unsaved output is lost)"]
    steps.append(f"mark {kernel}'s resume chain stopped, so push --until-done pushes no further session")
    return steps


def _pull_then_delete(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None, out: StopOutcome, where: str,
                      *, yes: bool, confirm: Callable[[str], bool], info: Callable[[str], None],
                      outputs_root: Path | None, cli: str) -> StopOutcome:
    """Every saved output of the kernel first; the delete only after that succeeded and a yes."""
    from kagglekit.download import default_target, pull_outputs

    kernel = out.kernel
    running = ref.version
    newest = client.get_kernel(ref.without_version()).current_version or running or 0
    for version in range(1, newest + 1):
        if version == running:
            continue  # a running version lists nothing: its output does not exist yet
        try:
            summary = pull_outputs(client, ref.with_version(version), target=default_target(ref.slug, version, outputs_root),
                                   ledger=ledger, progress=False, raise_on_failure=False,
                                   warn=lambda m: info(f"Warning: {m}"))
        except NotFoundError:
            continue  # a version that never ran or kept nothing
        if not summary.ok:
            raise DownloadError(
                f"Pulling the outputs of {kernel} v{version} failed ({len(summary.failed)} file(s)), so {kernel} was "
                "NOT deleted.", hint=f"Run `{cli} stop {kernel} --delete` again: finished files are kept.")
        if summary.listed:
            out.pulled.append(str(summary.target))
    kept = ", ".join(out.pulled) if out.pulled else "no saved outputs (none of its versions kept files)"
    question = (f"Delete the kernel {kernel} and all its versions on Kaggle? This ends {where} and its billing; "
                f"its unsaved output is lost. Pulled first: {kept}.")
    if not (yes or confirm(question)):
        out.action = "kept"
        out.message = f"Not deleted: {kernel} is still running. {where_to_stop(kernel)}"
        return out
    client.delete(ref.without_version())
    out.action, out.deleted = "deleted", True
    out.message = f"Deleted {kernel}: {where} has ended. Outputs kept in: {kept}."
    _end_chain(client, ledger, kernel, running, f"kagglekit stop deleted {kernel}")
    return out


def _end_chain(client: KaggleApiClient, ledger: Ledger | None, kernel: str, version: int | None, note: str) -> None:
    """The chain of this session (or of this kernel) is stopped: --until-done pushes nothing more."""
    from kagglekit.chain import CONTINUABLE, STOPPED

    if ledger is None:
        return
    try:
        record = ledger.get(client.account, kernel, version) if version is not None else None
        chains = [ledger.get_chain(record.chain_id)] if record is not None and record.chain_id else \
            ledger.chains(account=client.account, kernel=kernel)[-1:]
        for chain in chains:
            if chain is not None and chain.state in CONTINUABLE:
                ledger.update_chain(chain.id, state=STOPPED, note=note)
    except KagglekitError:
        pass  # the ledger is bookkeeping: stopping the run matters more
