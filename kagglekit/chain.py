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
- ``decide``: what a finished session means for the chain (continue, finished, failed, stopped).

``kagglekit/until_done.py`` drives a chain with these (``push --resume --until-done``).

Chain state lives in the ledger (``chains`` table; ``runs.chain_id`` / ``chain_seq``), so a
driver killed with Ctrl-C is continued by running it again.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kagglekit.constants import (
    ACTIVE_STATUSES,
    STATUS_CANCEL_ACKNOWLEDGED,
    STATUS_COMPLETE,
    STATUS_ERROR,
)
from kagglekit.display import epochs_text
from kagglekit.errors import CLI, KagglekitError, NotFoundError
from kagglekit.kernel_ref import KernelRef
from kagglekit.waiting import get_kernel_through_new_403, not_started_reason

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.ledger import ChainRecord, Ledger, RunRecord
    from kagglekit.settings import ProjectSettings

RELAY_SUFFIX = "-relay"

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
    kernel = ref.kernel_id
    newest = newest_session(ledger, client.account, kernel)
    if newest is None or newest.kernel == kernel:
        return ref, None
    return newest.kernel_ref, f"the chain's newest session is {newest.kernel} v{newest.version}"


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
    def parent(self) -> KernelRef:
        """The session continued from, version pinned."""
        return KernelRef.from_id(self.source_kernel, self.source_version)

    @property
    def in_pair(self) -> bool:
        """Whether the source is one of the chain's two kernels (not another kernel's output)."""
        return self.source_kernel.lower() in (self.project.lower(), relay_kernel(self.project).lower())


def plan_resume(client: KaggleApiClient, ledger: Ledger | None, settings: ProjectSettings,
                resume_from: str | None, flag: str = "--resume") -> ResumePlan:
    """Which session to continue from (``resume_from``, else the chain's newest), and where to push.

    Refuses (``ChainError``) a source that is still queued or running: its output exists only
    once it has ended and been saved.
    """
    project = settings.kernel_id or ""
    account = client.account
    if resume_from:
        ref = KernelRef.parse(resume_from, default_owner=client.username)
    else:
        newest = newest_session(ledger, account, project) if ledger is not None else None
        ref = newest.kernel_ref if newest is not None else _newest_on_kaggle(client, project)
    source = ref.kernel_id
    try:
        info = client.get_kernel(ref.without_version())
    except NotFoundError as exc:  # Kaggle answers 403 for a kernel that does not exist: say what it means here
        if not_started_reason(exc) is not None and _pushed_lately(ledger, account, source):  # a new kernel's 403
            raise _not_ended(source, "just pushed, and Kaggle does not show it yet") from exc
        raise NotFoundError(
            f"{flag}: {source} has no version on Kaggle that this account can see (never pushed, a typo, or "
            "another account's private kernel), so there is nothing to resume from.",
            f"Push it once without {flag} ({CLI} push), then resume from that run; "
            f"`{CLI} runs` lists what the ledger knows.",
        ) from exc
    version = ref.version
    if version is None and ledger is not None:
        version = max((r.version for r in ledger.runs(kernel=source, account=account)), default=None)
    if version is None:
        version = info.current_version
    status = _live_status(client, ledger, ref.with_version(version)) if version is not None else None
    where = f"{source} v{version}" if version else source
    if status == NOT_STARTED:
        raise _not_ended(where, "pushed but not started: Kaggle has no run of it yet")
    if status in ACTIVE_STATUSES:
        raise _not_ended(where, f"still {status.lower()}")
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
    candidates = []
    for kernel in (project, relay_kernel(project)):
        try:
            info = client.get_kernel(KernelRef.from_id(kernel))
        except NotFoundError:
            continue
        candidates.append((info.last_run_time.timestamp() if info.last_run_time else 0.0, kernel))
    if not candidates:
        return KernelRef.from_id(project)  # get_kernel then says clearly that there is nothing to resume
    return KernelRef.from_id(max(candidates)[1])


JUST_PUSHED_S = 300.0  # a kernel this ledger pushed this recently may still be too new for Kaggle to show


def _pushed_lately(ledger: Ledger | None, account: str, kernel: str) -> bool:
    """Whether this ledger pushed ``kernel`` within the last few minutes: Kaggle's 403 for it then means "too new
    to show", not "no such kernel" (a kernel pushed long ago and deleted since answers the same)."""
    if ledger is None:
        return False
    pushed = [r.pushed_at for r in ledger.runs(kernel=kernel, account=account) if r.pushed_at is not None]
    return bool(pushed) and (ledger.now() - max(pushed)).total_seconds() < JUST_PUSHED_S


NOT_STARTED = "NOT_STARTED"  # _live_status: Kaggle says "No runs found" (no session yet): no output either


def _not_ended(where: str, state: str) -> ChainError:
    """A source with no saved output yet (queued, running, or not even started): nothing to resume from."""
    return ChainError(
        f"{where} is {state}: its output is saved only when it ends, so there is no checkpoint to resume from yet.",
        hint=f"Wait for it ({CLI} status --watch), or let `{CLI} push --resume --until-done` follow it "
             "and push the next session when it ends.")


def _live_status(client: KaggleApiClient, ledger: Ledger | None, ref: KernelRef) -> str | None:
    """The version's status as Kaggle says it now (recorded in the ledger); ``NOT_STARTED`` when Kaggle has
    no run of it yet (404 "No runs found", or a new private kernel's 403); None when unknown."""
    try:
        status = client.status(ref).status
    except NotFoundError as exc:
        return NOT_STARTED if not_started_reason(exc) is not None else None
    except KagglekitError:
        return None
    if ledger is not None and ref.version is not None:
        ledger.record_status(client.account, ref.kernel_id, ref.version, status)
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


def current_version(client: KaggleApiClient, kernel: str, *, wait_new_403: bool = False) -> int | None:
    """The kernel's newest version on Kaggle, None when it does not exist (or is not visible).

    ``wait_new_403``: a brand-new private kernel answers 403 kernels.get for a moment, as a missing one does
    (docs/kaggle-facts.md): the account's own listing tells them apart, and a listed kernel's 403 is waited
    through (a push made just before a kill). Without it, a caller that checks again later answers None.
    """
    ref = KernelRef.from_id(kernel)
    if not wait_new_403:
        try:
            return client.get_kernel(ref).current_version
        except NotFoundError:
            return None
    info = get_kernel_through_new_403(
        client, ref, listed=lambda: any(k.ref.kernel_id.lower() == kernel.lower() for k in client.list_mine()))
    return info.current_version if info is not None else None


def adopt_unrecorded(client: KaggleApiClient, ledger: Ledger, account: str, kernel: str,
                     chain: tuple[int, int] | None, *, wait_new_403: bool = False, **record: Any) -> int | None:
    """A version of ``kernel`` that Kaggle has and the ledger lacks (the pusher was killed between the push
    and recording it): recorded with ``record`` (``Ledger.record_push``'s fields) and joined to ``chain``
    (its id, and the session's place in it), so nobody pushes that session twice. Its version, or None."""
    known = max((r.version for r in ledger.runs(kernel=kernel, account=account)), default=0)
    current = current_version(client, kernel, wait_new_403=wait_new_403)
    if current is None or current <= known:
        return None
    ledger.record_push(account, kernel, current, **record)
    if chain is not None:
        ledger.add_to_chain(account, kernel, current, *chain)
    return current


# --- what an ended session means -----------------------------------------------------------------

CONTINUE = "continue"
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # continue | finished | failed | stopped | unknown
    message: str


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
    epochs = "epochs " + epochs_text(training)
    if training.get("finished"):
        reason = training.get("reason")
        return Decision(FINISHED, f"{where} finished the training ({epochs}" + (f", {reason}" if reason else "") + ").")
    return Decision(CONTINUE, f"{where} ended by its time guard ({epochs}); the next session carries on.")


def continuable_chain(ledger: Ledger, account: str, project: str) -> ChainRecord | None:
    """The project's newest chain, when ``--until-done`` may carry it on (open, running or halted)."""
    chains = [c for c in ledger.chains(account=account, kernel=project) if c.kernel == project]
    newest = chains[-1] if chains else None
    return newest if newest is not None and newest.state in CONTINUABLE else None
