"""``kagglekit push``: bundle the project, check quota, push, record, optionally wait.

The order matters: every local check (settings, secrets, size, the test flag,
the title/slug pair) runs before anything is sent, and nothing is retried
blindly once Kaggle may have accepted a version.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.chain import ResumePlan, plan_resume, record_session
from kagglekit.errors import CLI, KagglekitError, KaggleRefusedError
from kagglekit.kernel_ref import KernelRef
from kagglekit.run_options import RunOptions
from kagglekit.waiting import DEFAULT_START_GRACE_S, get_kernel_through_new_403

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.api.types import PushResult
    from kagglekit.bundle import BundleResult
    from kagglekit.ledger import Ledger
    from kagglekit.settings import ProjectSettings
    from kagglekit.watch import StatusReport


@dataclasses.dataclass
class PushRequest:
    """What the user asked for on the command line (None: the project's setting)."""

    project_dir: Path | None = None
    run: RunOptions = dataclasses.field(default_factory=lambda: RunOptions())
    message: str | None = None
    resume: bool = False
    resume_from: str | None = None  # owner/slug[/version]
    strict: bool = False
    dry_run: bool = False
    bundle_dir: Path | None = None
    owner: str | None = None  # the account's user name when known without a client (--local: the demo account)



@dataclasses.dataclass(frozen=True)
class WaitLimits:
    """How ``--wait`` waits: the start grace after the push, a deadline, and how hints name the CLI."""

    start_grace_s: float = DEFAULT_START_GRACE_S
    max_wait_s: float | None = None
    cli: str = "kagglekit"


@dataclasses.dataclass
class PushOutcome:
    kernel: str
    version: int | None
    url: str
    mode: str | None
    machine_shape: str
    accelerator: str
    bundle_sha256: str
    script_bytes: int
    files: int
    flag_changes: list[str]
    warnings: list[str]
    invalid_sources: dict[str, list[str]]
    dry_run: bool = False
    metadata: dict[str, Any] | None = None
    resume_from: str | None = None
    final_status: str | None = None
    args: list[str] = dataclasses.field(default_factory=list)  # the entry point's arguments
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)  # --set NAME=VALUE
    shipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {path, size}: what goes in
    left_out: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {path, reason}
    code_delivery: str = ""  # the 1 MiB preflight: inline, or through the code dataset
    requirements: str = ""  # what the run needs beyond Kaggle's image and how it gets it
    project_kernel: str | None = None  # the project's kernel (``kernel`` is its relay sibling for some sessions)

    @property
    def ref(self) -> KernelRef:
        """The pushed kernel and version (``kernel`` stays text: it is what ``--json`` prints)."""
        return KernelRef.from_id(self.kernel, self.version)


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The project's commit and whether the work tree is dirty (None outside a git repo)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip() != ""
        return commit or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def load_settings(req: PushRequest) -> ProjectSettings:
    from kagglekit.settings import load_project

    return load_project(req.project_dir, overrides=req.run.settings_overrides())


def push(client: KaggleApiClient | None, req: PushRequest, ledger: Ledger | None,
         info: Callable[[str], None] = print) -> PushOutcome:
    """Bundle and push one version; ``client`` may be None only for ``dry_run`` (offline).

    Phases: settings -> the run to resume from -> quota preflight -> requirements -> bundle -> push -> ledger.
    """
    settings = load_settings(req)
    owner = client.username if client is not None else req.owner
    if settings.kernel_owner is None and owner:
        settings = settings.with_owner(owner)
    warnings = list(settings.warnings)
    project = settings  # the project's own kernel: its code and wheels datasets serve the relay sibling too
    plan: ResumePlan | None = None
    if (req.resume or req.resume_from) and client is not None:
        req, settings, plan = _resume_parent(client, settings, req, ledger, warnings)
    parent = plan.parent if plan is not None else None
    resume_ref = None if parent is None else str(parent)
    if client is not None and ledger is not None and settings.accelerator_kind != "cpu" and not req.dry_run:
        _preflight(client, ledger, settings, req, warnings)

    from kagglekit.channel import VENDOR, plan_deps, upload_code, vendor_wheels

    deps_plan = plan_deps(dataclasses.replace(project, accelerator=settings.accelerator), settings.enable_internet)
    # The summary printed after the push says both of these; announce them early only before slow work (uploads).
    if deps_plan.action == VENDOR and (deps_plan.report.verdicts or deps_plan.report.skipped):
        info(f"Requirements: {deps_plan.describe()}")
    if deps_plan.action == VENDOR and not req.dry_run:
        vendor_wheels(client, settings, deps_plan, info, upload=client is not None)

    with tempfile.TemporaryDirectory(prefix="kagglekit-bundle-") as tmp:
        out_dir = req.bundle_dir or Path(tmp)
        outcome, bundle = _bundle(settings, req, out_dir, resume_ref, warnings, deps_plan.requirements_config(),
                                  (deps_plan.wheels_dataset,) if deps_plan.action == VENDOR and
                                  deps_plan.wheels_dataset else (), code_dataset_settings=project)
        outcome.requirements = deps_plan.describe()
        if bundle.code_dataset is not None:
            info(f"Code: {bundle.delivery}")
        for w in warnings:
            info(f"Warning: {w}")
        if req.dry_run or client is None:
            return outcome
        if bundle.code_dataset is not None and bundle.code_dataset_dir is not None:
            upload_code(client, bundle.code_dataset, bundle.code_dataset_dir, info)
        try:
            result = _send(client, settings, bundle, info)
        except KaggleRefusedError as exc:
            if ledger is None or settings.accelerator_kind == "cpu":
                raise
            from kagglekit.quota import explain_refusal

            raise explain_refusal(client, ledger, client.account, settings.accelerator_kind, exc) from None

    _take_answer(client, outcome, result, info, parent)
    outcome.project_kernel = project.kernel_id
    if ledger is not None and result.version is not None:
        commit, dirty = git_state(settings.root)
        same_kernel_parent = parent.version if parent is not None and parent.kernel_id == outcome.kernel else None
        ledger.record_push(client.account, outcome.kernel, result.version, mode=req.run.mode,
                           accelerator=settings.accelerator_kind, machine_shape=settings.machine_shape,
                           bundle_hash=bundle.archive_sha256, git_commit=commit, git_dirty=dirty,
                           message=req.message, parent_version=same_kernel_parent, resume_from=resume_ref,
                           overrides=bundle.overrides, args=bundle.argv)
        if plan is not None:
            record_session(ledger, client.account, plan, outcome.kernel, result.version, plan.project)
    return outcome


def _resume_parent(client: KaggleApiClient, settings: ProjectSettings, req: PushRequest, ledger: Ledger | None,
                   warnings: list[str]) -> tuple[PushRequest, ProjectSettings, ResumePlan]:
    """The session to continue from, and the kernel the next one goes to: the other kernel of the chain's
    pair, since a kernel cannot mount its own output (docs/resume.md). The request takes the parent's mode,
    overrides and machine unless told otherwise."""
    flag = "--resume-from" if req.resume_from else "--resume"
    plan = plan_resume(client, ledger, settings, req.resume_from, flag=flag)
    warnings.extend(plan.warnings)
    parent = plan.parent
    record = ledger.get(client.account, parent.kernel_id, parent.version) \
        if ledger is not None and parent.version is not None else None
    req = _same_mode_as_parent(req, record, str(parent), warnings)
    req = _same_args_as_parent(req, plan.settings, record, str(parent), warnings)
    settings = _same_machine_as_parent(req, plan.settings, record, str(parent), warnings)
    warnings.extend(_checkpoint_missing(client, parent, settings.checkpoints))
    return req, settings, plan


def _preflight(client: KaggleApiClient, ledger: Ledger, settings: ProjectSettings, req: PushRequest,
               warnings: list[str]) -> None:
    """Quota and session-cap advice before an accelerator push; ``--strict`` turns a "no" into a refusal."""
    from kagglekit.quota import preflight

    advice = preflight(client, ledger, client.account, settings.kernel_id or "", req.run.mode,
                       settings.accelerator_kind, limit_s=settings.session_limit_s)
    warnings.extend(advice.messages)
    if not advice.ok and req.strict:
        raise KaggleRefusedError("Refusing to push (--strict): " + " ".join(advice.messages),
                                 hint="Wait for the quota reset or a running session to end, or push without --strict.")


def _send(client: KaggleApiClient, settings: ProjectSettings, bundle: BundleResult,
          info: Callable[[str], None]) -> PushResult:
    """SaveKernel, once. An answer lost after the request left (cut, dropped) is never re-sent: the
    version it may have created is looked for instead, and recorded if found."""
    from kagglekit.api.types import PushOutcomeUnknown

    try:
        return client.push(bundle.out_dir, session_timeout=settings.timeout_s)
    except PushOutcomeUnknown as exc:
        found = find_accepted_push(client, settings, bundle.script_path.read_text(encoding="utf-8"))
        if found is None:
            kernel = settings.kernel_id or "OWNER/SLUG"
            raise PushOutcomeUnknown(
                f"{exc.message} The push may have been accepted: Kaggle may have created a new version "
                f"of {kernel}, and kagglekit could not check.",
                f"Do not push again blindly. Check first: `{CLI} status {kernel}` shows the newest "
                "version (and records it in the run ledger); push again only if it is not yours.",
            ) from exc
        info(f"Warning: the answer to the push was cut off ({exc.message}), but Kaggle shows version "
             f"{found.version} of {found.ref.kernel_id} with exactly this script: it was accepted.")
        return found


def _take_answer(client: KaggleApiClient, outcome: PushOutcome, result: PushResult,
                 info: Callable[[str], None], parent: KernelRef | None = None) -> None:
    """What Kaggle answered to the push: the version, the URL, and the sources it did not attach."""
    outcome.version = result.version
    # Under --local, the emulator's own page for the kernel, not a kaggle.com link that leads nowhere.
    outcome.url = client.web_url(result.ref) if client.web_base else (result.url or outcome.url)
    if client.web_base and outcome.accelerator != "cpu":
        info(f"Note: the emulator runs this {outcome.accelerator.upper()} session on this machine's CPU (no "
             "accelerator): its timings and memory are not Kaggle's.")
    outcome.kernel = result.ref.kernel_id
    outcome.invalid_sources = {k: v for k, v in {
        "datasets": result.invalid_dataset_sources, "competitions": result.invalid_competition_sources,
        "kernels": result.invalid_kernel_sources, "models": result.invalid_model_sources,
        "tags": result.invalid_tags}.items() if v}
    outcome.warnings.extend(result.warnings)
    for what, names in outcome.invalid_sources.items():
        info(f"Warning: Kaggle did not attach these {what} (not found, or not visible to you): "
             f"{', '.join(names)}. The run goes on without them.")
    if parent is not None and any(n.split("/")[:2] == [parent.owner, parent.slug]
                                  for n in outcome.invalid_sources.get("kernels", [])):
        info(f"Warning: Kaggle did not attach {parent}, the output to resume from: the session will stop (exit "
             "code 3) before training rather than start from scratch.")


def _same_machine_as_parent(req: PushRequest, settings: ProjectSettings, parent: Any, resume_ref: str,
                            warnings: list[str]) -> ProjectSettings:
    """A resumed session runs on the parent's accelerator unless one is given now (same settings, same
    machine: a chain must not drop from a GPU to the CPU because a flag was left off)."""
    shape = getattr(parent, "machine_shape", None)
    if req.run.accelerator is not None or not shape or shape == settings.machine_shape:
        return settings
    from kagglekit.constants import SHAPE_LABELS

    warnings.append(f"Resuming on {SHAPE_LABELS.get(shape, shape)}, as {resume_ref} ran "
                    "(give --gpu/--tpu/--cpu to choose).")
    return dataclasses.replace(settings, accelerator=shape)


def find_accepted_push(client: KaggleApiClient, settings: ProjectSettings, script: str) -> PushResult | None:
    """After a push whose answer was lost: the version Kaggle created from ``script``, or None.

    GetKernel is a read (retried by the client); the newest version counts as ours only if its
    source is byte-for-byte the script just sent, so a version pushed elsewhere is never taken for it.
    """
    from kagglekit.api.types import PushResult

    owner = settings.kernel_owner or client.username
    ref = KernelRef(owner, settings.kernel_slug or "")
    try:
        found = get_kernel_through_new_403(client, ref)
    except KagglekitError:
        return None  # could not look: the caller says the push may have been accepted
    if found is None or found.current_version is None or (found.source or "").strip() != script.strip():
        return None
    return PushResult(ref=found.ref.with_version(found.current_version), version=found.current_version,
                      url=found.ref.url, kernel_id=found.id)


def _checkpoint_missing(client: KaggleApiClient, parent: KernelRef, patterns: tuple[str, ...]) -> list[str]:
    """A warning when the run to resume from left no file matching the checkpoint patterns."""
    from kagglekit.download import select

    names = [f.name for f in client.list_outputs(parent).files]
    if select(names, checkpoint_patterns=patterns):
        return []
    where = f"{parent.kernel_id} v{parent.version}" if parent.version else parent.kernel_id
    return [f"{where} left no file matching the checkpoint patterns ({', '.join(patterns)}): this run "
            "will start from scratch. Set `checkpoints` in [tool.kagglekit] if the project saves elsewhere."]


def _same_mode_as_parent(req: PushRequest, parent: Any, resume_ref: str, warnings: list[str]) -> PushRequest:
    """A resumed run continues the parent's training: its mode and ``--set`` overrides unless told otherwise.

    A checkpoint from a test-mode run does not fit a full-mode model or data size (or the other
    way round); the project would then start afresh, which is the opposite of resuming. Overrides
    given now win over the parent's.
    """
    parent_mode = getattr(parent, "mode", None)
    parent_sets: dict[str, str] = dict(getattr(parent, "overrides", None) or {})
    run = req.run
    if parent_mode is not None and run.mode is None:
        warnings.append(f"Resuming in {parent_mode} mode, as {resume_ref} ran (give --test/--full to choose).")
        run = dataclasses.replace(run, mode=parent_mode)
    elif parent_mode is not None and run.mode != parent_mode:
        warnings.append(f"{resume_ref} ran in {parent_mode} mode and this run is {run.mode} mode: its checkpoint "
                        "may not fit, and the project may start afresh instead of resuming.")
    inherited = {k: v for k, v in parent_sets.items() if k not in run.sets}
    if inherited and run.mode == parent_mode:
        warnings.append(f"Resuming with {resume_ref}'s overrides: "
                        + " ".join(f"{k}={v}" for k, v in sorted(inherited.items())) + " (--set NAME=VALUE to change).")
        run = dataclasses.replace(run, sets={**inherited, **run.sets})
    return dataclasses.replace(req, run=run)


def _same_args_as_parent(req: PushRequest, settings: ProjectSettings, parent: Any, resume_ref: str,
                         warnings: list[str]) -> PushRequest:
    """A resumed run gets the arguments the parent's push gave after ``--``, unless new ones are given now
    (an empty ``--`` gives none).

    The ledger keeps the parent's whole command line (``args``, ``test-args``, then ``-- ARGS``); what came
    after ``--`` is what follows the part the settings give. When the settings' part changed since, the
    split cannot be told, and nothing is carried (the warning says so).
    """
    parent_args: list[str] = list(getattr(parent, "args", None) or [])
    if req.run.args or not parent_args:
        return req
    from kagglekit.bundle import entry_argv

    prefix = entry_argv(settings, getattr(parent, "mode", None))  # what the settings gave the parent
    if parent_args[:len(prefix)] != prefix:
        if req.run.args is not None:  # an empty --: none were wanted anyway
            return req
        warnings.append(f"{resume_ref} ran with the arguments {shlex.join(parent_args)}, which do not start with "
                        f"the project's args/test-args now ({shlex.join(prefix) or 'none'}): none are carried on; "
                        "give them after -- if the run needs them.")
        return req
    extra = tuple(parent_args[len(prefix):])
    if not extra:
        return req
    if req.run.args is not None:
        warnings.append(f"Resuming without {resume_ref}'s arguments after --: {shlex.join(extra)} (an empty -- "
                        "was given).")
        return req
    warnings.append(f"Resuming with {resume_ref}'s arguments after --: {shlex.join(extra)} (give new ones "
                    "after -- to change them).")
    return dataclasses.replace(req, run=dataclasses.replace(req.run, args=extra))


def _bundle(settings: ProjectSettings, req: PushRequest, out_dir: Path, resume_ref: str | None,
            warnings: list[str], requirements: dict[str, Any] | None = None,
            extra_datasets: tuple[str, ...] = (), code_dataset_settings: ProjectSettings | None = None,
            ) -> tuple[PushOutcome, BundleResult]:
    from kagglekit.bundle import build_bundle, code_dataset_ref

    bundle = build_bundle(settings, mode=req.run.mode, overrides=req.run.sets, machine_shape=settings.machine_shape,
                          internet=settings.enable_internet, out_dir=out_dir, resume_from=resume_ref,
                          requirements=requirements, extra_datasets=extra_datasets,
                          code_dataset=code_dataset_ref(code_dataset_settings or settings), args=req.run.args or ())
    kernel = settings.kernel_id or ""
    outcome = PushOutcome(
        kernel=kernel, version=None, url=f"https://www.kaggle.com/code/{kernel}", mode=req.run.mode,
        machine_shape=settings.machine_shape, accelerator=settings.accelerator_kind,
        bundle_sha256=bundle.archive_sha256, script_bytes=bundle.script_bytes, files=len(bundle.files),
        flag_changes=[str(c) for c in bundle.flag_changes], warnings=warnings, invalid_sources={},
        metadata=bundle.metadata, resume_from=resume_ref, dry_run=req.dry_run, code_delivery=bundle.delivery,
        args=list(bundle.argv), overrides=dict(bundle.overrides),
        shipped=[{"path": f.path, "size": f.size} for f in bundle.files],
        left_out=[{"path": x.path, "reason": x.reason} for x in bundle.left_out],
    )
    warnings.extend(w for w in bundle.warnings if w not in warnings)
    return outcome, bundle


def wait_for(client: KaggleApiClient, ref: KernelRef, ledger: Ledger | None,
             interval_s: float, on_change: Callable[[StatusReport], None],
             limits: WaitLimits | None = None,
             on_problem: Callable[[str], None] | None = None) -> StatusReport:
    from kagglekit.watch import watch

    limits = limits or WaitLimits()
    return watch(client, ref, ledger, interval_s=interval_s, on_change=on_change, on_problem=on_problem,
                 start_grace_s=limits.start_grace_s, max_wait_s=limits.max_wait_s, cli=limits.cli)


def push_after_test(client: KaggleApiClient, req: PushRequest, ledger: Ledger | None, *,
                    test_accelerator: str, interval_s: float,
                    on_change: Callable[[StatusReport], None],
                    info: Callable[[str], None] = print,
                    limits: WaitLimits | None = None) -> tuple[PushOutcome, StatusReport, PushOutcome]:
    """The test-then-full gate: a test-mode run first; the full run is pushed only if it completed."""
    from kagglekit.watch import raise_for_outcome

    test_run = dataclasses.replace(req.run, mode="test", accelerator=test_accelerator)
    test_req = dataclasses.replace(req, run=test_run, message=(req.message or "") + " [test before full]")
    cli = (limits or WaitLimits()).cli
    test_outcome = push(client, test_req, ledger, info=info)
    info(f"Test run pushed: {test_outcome.kernel} v{test_outcome.version} ({test_accelerator}); waiting for it ...")
    report = wait_for(client, test_outcome.ref, ledger, interval_s, on_change, limits,
                      on_problem=lambda m: info(f"Warning: {m}"))
    raise_for_outcome(report, cli=cli)  # a failed test stops here, with its log tail
    info("Test run complete; pushing the full run.")
    full_req = dataclasses.replace(req, run=dataclasses.replace(req.run, mode="full"))
    return test_outcome, report, push(client, full_req, ledger, info=info)


def describe(outcome: PushOutcome) -> str:
    """The human summary of a push (or of what a dry run would send)."""
    import json

    from kagglekit import display

    lines = []
    for change in outcome.flag_changes:
        lines.append(f"  in the bundled copy: {change}")
    mode = outcome.mode or "as written"
    lines.append(f"  mode {mode}, {display.hardware(outcome.machine_shape)}, {outcome.files} files, "
                 f"script {display.size(outcome.script_bytes)}, bundle {outcome.bundle_sha256[:12]}")
    if outcome.args:
        lines.append(f"  arguments: {shlex.join(outcome.args)}")
    if outcome.resume_from:
        lines.append(f"  resumes from the checkpoint in {outcome.resume_from}'s output")
    if outcome.code_delivery:
        lines.append(f"  code {outcome.code_delivery}")
    if outcome.requirements and not outcome.requirements.startswith("requirements: none"):
        lines.append(f"  {outcome.requirements}")
    if outcome.dry_run:
        lines.insert(0, f"Dry run: nothing was sent. This would push {outcome.kernel}:")
        lines.append(f"  would ship {len(outcome.shipped)} files:")
        lines += [f"    {f['path']}  {display.size(f['size'])}" for f in outcome.shipped]
        if outcome.left_out:
            lines.append("  left out: " + ", ".join(f"{x['path']} ({x['reason']})" for x in outcome.left_out))
        lines.append("  kernel-metadata.json:")
        lines += ["    " + line for line in json.dumps(outcome.metadata, indent=2).splitlines()]
    else:
        lines.insert(0, f"Pushed {outcome.kernel} version {outcome.version}: {outcome.url}")
    return "\n".join(lines)


def run_push(open_client: Callable[[], KaggleApiClient], req: PushRequest, ledger: Ledger | None, *, wait: bool,
             after_test: bool, test_accelerator: str, interval_s: float,
             on_pushed: Callable[[PushOutcome], None], on_change: Callable[[StatusReport], None],
             info: Callable[[str], None], start_grace_s: float = DEFAULT_START_GRACE_S,
             max_wait_s: float | None = None, cli: str = "kagglekit") -> tuple[PushOutcome, StatusReport | None]:
    """``kagglekit push`` as a whole: dry run (offline if need be), the test gate, the push, the wait.

    A dry run opens the client only for what it cannot know offline: the account (unless ``req.owner``
    gives it) and the run to resume from. So ``--local --dry-run`` starts no emulator (docs/emulator.md).
    """
    if req.dry_run:
        client: KaggleApiClient | None = None
        if req.owner is None or req.resume or req.resume_from:
            try:
                client = open_client()
            except KagglekitError:  # a dry run works offline; the owner then stays as configured
                client = None
        return push(client, req, ledger, info=info), None
    limits = WaitLimits(start_grace_s, max_wait_s, cli)
    api = open_client()
    if after_test:
        _, _, outcome = push_after_test(api, req, ledger, test_accelerator=test_accelerator, interval_s=interval_s,
                                        on_change=on_change, info=info, limits=limits)
    else:
        outcome = push(api, req, ledger, info=info)
    on_pushed(outcome)
    if not wait:
        return outcome, None
    report = wait_for(api, outcome.ref, ledger, interval_s, on_change, limits,
                      on_problem=lambda m: info(f"Warning: {m}"))
    outcome.final_status = report.status
    return outcome, report
