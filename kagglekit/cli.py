"""The ``kagglekit`` command line: parse options, call one core function, print.

Rules that keep start-up fast and the commands thin:
- import nothing heavy at module level (kaggle, kagglesdk, requests, pandas,
  matplotlib, torch): each command imports its core module inside its body;
- every expected failure is a ``KagglekitError``; ``main`` is the one place that
  turns it into ``Error:``/``Hint:`` lines and its documented exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from kagglekit import __version__
from kagglekit.errors import EXIT_INTERRUPTED, KagglekitError

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.kernel_ref import KernelRef
    from kagglekit.ledger import Ledger

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclasses.dataclass
class Options:
    """Global options, handed to every command through ``click.pass_obj``."""

    local: bool = False
    endpoint: str | None = None
    json: bool = False
    verbose: int = 0
    debug: bool = False

    def client(self) -> KaggleApiClient:
        """The Kaggle client for these options (emulator, custom endpoint or Kaggle)."""
        from kagglekit.connection import open_client

        return open_client(local=self.local, endpoint=self.endpoint, verbose=self.verbose > 1)

    def emit(self, data: Any, human: Callable[[], None] | str | None = None) -> None:
        """Print ``data`` as JSON under ``--json``; otherwise print ``human`` (text or a printer)."""
        if self.json:
            click.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=False, default=str))
        elif callable(human):
            human()
        elif human is not None:
            click.echo(human)

    def command_prefix(self) -> str:
        """How to call kagglekit again with the same backend, for hints the user may paste."""
        if self.local:
            return "kagglekit --local"
        if self.endpoint:
            return f"kagglekit --endpoint {self.endpoint}"
        return "kagglekit"

    def offline_username(self) -> str | None:
        """The account's user name when it is known without a server: ``--local`` always signs in as the
        emulator's demo account (so ``push --local --dry-run`` need not start the emulator to learn it)."""
        from kagglekit.constants import DEMO_USERNAME

        return DEMO_USERNAME if self.local else None

    def info(self, message: str) -> None:
        """Progress chatter: to stderr, so ``--json`` stdout stays parseable."""
        click.echo(message, err=True)


def to_jsonable(data: Any) -> Any:
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(data).items()}
    if isinstance(data, dict):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_jsonable(v) for v in data]
    if isinstance(data, Path):
        return str(data)
    return data


pass_options = click.make_pass_decorator(Options)


class DoubleDashCommand(click.Command):
    """A command that notes whether ``--`` ended its options (``ctx.meta["double_dash"]``): Click drops it,
    and ``push --resume --`` (nothing after it) must mean "no arguments", not "the parent's"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                       for name in p.opts}
        i = 0
        while i < len(args) and args[i] != "--":
            i += 2 if args[i] in takes_value else 1  # `-m --` is a message, not the end of the options
        ctx.meta["double_dash"] = i < len(args)
        return super().parse_args(ctx, args)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="kagglekit")
@click.option("--local", is_flag=True, envvar="KAGGLEKIT_LOCAL",
              help="Use the embedded Kaggle emulator (started on demand) instead of Kaggle.")
@click.option("--endpoint", metavar="URL", envvar="KAGGLEKIT_ENDPOINT",
              help="Any Kaggle-compatible API base URL (e.g. an emulator you started yourself).")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="More detail (-vv also traces HTTP, secrets redacted).")
@click.option("--debug", is_flag=True, envvar="KAGGLEKIT_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, local: bool, endpoint: str | None, json_output: bool, verbose: int,
        debug: bool) -> None:
    """Train locally, run on Kaggle's GPUs.

    \b
    The loop:  kagglekit init DIR
               kagglekit push --gpu --test --wait
               kagglekit status --watch
               kagglekit pull-outputs
               kagglekit quota
    Add --local to any command to run it against the embedded emulator.
    """
    ctx.obj = Options(local=local, endpoint=endpoint, json=json_output, verbose=verbose, debug=debug)


# Commands are added below, grouped by concern. Each one parses its options,
# calls one core function and prints.

@cli.group("emulator", short_help="Run the local Kaggle emulator (it really runs kernels).")
def emulator_group() -> None:
    """The local Kaggle emulator (a Kaggle-compatible API that really runs kernels).

    \b
    kagglekit emulator serve            foreground, prints URL + env vars for the kaggle CLI
    kagglekit emulator start|stop|status   the background one that --local uses
    kagglekit emulator add-dataset demo/my-data ./data
    kagglekit emulator env              the block that points the official kaggle CLI at it
    kagglekit emulator config KEY=VALUE change a rule (e.g. legacy_layout=true); no argument: show them
    """


@emulator_group.command("serve", short_help="Run the emulator in the foreground until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True, help="0 picks a free port.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where state and outputs live (default: the per-user emulator dir).")
def emulator_serve_command(host: str, port: int, data_dir: Path | None) -> None:
    """Run the emulator in the foreground until Ctrl-C."""
    from kagglekit.local import serve_foreground

    sys.exit(serve_foreground(host, port, data_dir))


@emulator_group.command("start", short_help="Start the background emulator that --local uses.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True, help="0 picks a free port.")
@click.pass_obj
def emulator_start_command(opts: Options, port: int) -> None:
    """Start the background emulator (or show the running one) and wait until it answers."""
    from kagglekit.local import start

    info = start(port)
    opts.emit(info, f"Emulator running at {info.url} (pid {info.pid}, data in {info.data_dir})")


@emulator_group.command("stop", short_help="Stop the background emulator.")
@click.pass_obj
def emulator_stop_command(opts: Options) -> None:
    """Stop the background emulator."""
    from kagglekit.local import stop

    info = stop()
    opts.emit({"stopped": info}, f"Stopped the emulator at {info.url} (pid {info.pid})."
              if info else "The emulator was not running.")


@emulator_group.command("status", short_help="Show whether the background emulator runs, and where.")
@click.pass_obj
def emulator_status_command(opts: Options) -> None:
    """Show whether the background emulator runs, its URL and sandbox mode."""
    from kagglekit.local import describe

    info = describe()
    if info is None:
        opts.emit({"running": False}, "The emulator is not running (start it with `kagglekit emulator start`).")
        return
    opts.emit({"running": True, **info}, "\n".join([
        f"Emulator running at {info['url']} (pid {info['pid']})",
        f"Data dir: {info['data_dir']}",
        f"Sandbox: {info['sandbox']['mode']}"
        f" (internet-off enforced: {'yes' if info['sandbox']['internet_off_enforced'] else 'no'})",
        f"Kernels: {len(info['kernels'])}, running sessions: {len(info['running_sessions'])}",
    ]))


@emulator_group.command("add-dataset", short_help="Serve a local folder as dataset OWNER/SLUG.")
@click.argument("ref", metavar="OWNER/SLUG")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
def emulator_add_dataset_command(opts: Options, ref: str, path: Path) -> None:
    """Register the local folder PATH as dataset OWNER/SLUG (mounted read-only into kernels that name it)."""
    _add_source(opts, "dataset", ref, path)


@emulator_group.command("add-competition", short_help="Serve a local folder as competition SLUG's data.")
@click.argument("slug")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
def emulator_add_competition_command(opts: Options, slug: str, path: Path) -> None:
    """Register the local folder PATH as competition SLUG's data (mounted read-only into kernels that name it)."""
    _add_source(opts, "competition", slug, path)


def _add_source(opts: Options, kind: str, name: str, path: Path) -> None:
    """Tell the emulator that ``path`` holds the data of the dataset or competition ``name``."""
    from kagglekit.local import add_source

    add_source(f"{kind}s", name, path, endpoint=opts.endpoint)
    opts.emit({kind: name, "path": path.resolve()}, f"{kind.capitalize()} {name} -> {path.resolve()}")


@emulator_group.command("env", short_help="Print the shell lines that aim the kaggle CLI at it.")
@click.pass_obj
def emulator_env_command(opts: Options) -> None:
    """Print the shell block that points the official `kaggle` CLI at the background emulator.

    \b
    eval "$(kagglekit emulator env)"; kaggle kernels list --mine
    """
    from kagglekit.local import client_env

    env = client_env(opts.endpoint)
    shim = env.pop("PYTHONPATH")
    lines = [f"export {k}={v}" for k, v in env.items()]
    lines.append(f"export PYTHONPATH={shim}${{PYTHONPATH:+:$PYTHONPATH}}")
    opts.emit({**env, "PYTHONPATH": shim}, "\n".join(lines))


@emulator_group.command("config", short_help="Change the emulator's rules, or show them all.")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.pass_obj
def emulator_config_command(opts: Options, settings: tuple[str, ...]) -> None:
    """Change the emulator's rules (KEY=VALUE...), or show them all (docs/emulator.md lists the keys).

    \b
    Examples:  kagglekit emulator config legacy_layout=true
               kagglekit emulator config run_start_delay_seconds=0 save_seconds_per_gb=0
               kagglekit emulator config session_limit_seconds.gpu=600
               kagglekit emulator config kernel_python=/path/to/venv/bin/python
    kernel_python runs kernels with that interpreter (e.g. a venv made to resemble Kaggle's image,
    with the packages your project imports); kernel_python= goes back to the emulator's own.
    """
    from kagglekit.local import configure, parse_setting

    config = configure(list(settings), endpoint=opts.endpoint)
    changed = [key for text in settings for key in parse_setting(text)]
    shown = {k: config.get(k) for k in changed} if changed else config
    opts.emit(config, "\n".join(f"{k} = {json.dumps(v)}" for k, v in shown.items()))

# === section: emulator (end) ===

from kagglekit.options import run_options  # noqa: E402  (click only: fast)


@cli.command("bundle", short_help="Write the kernel folder without pushing it.")
@click.argument("project_dir", required=False, metavar="[PROJECT_DIR]")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the kernel to (default: PROJECT/.kagglekit/bundle).")
@run_options
@pass_options
def bundle_cmd(opts: Options, /, project_dir: str | None, script_args: tuple[str, ...], out_dir: Path | None,
               **run_values: Any) -> None:
    """Write the kernel folder (one script + kernel-metadata.json) without pushing it.

    \b
    PROJECT_DIR defaults to the project found from the current folder. The folder written is what
    `kagglekit push` sends, and `kaggle kernels push -p DIR` accepts it as-is.
    ARGS after `--` go to the entry point (after the `args` setting).
    Examples:  kagglekit bundle --test
               kagglekit bundle --full --set n_epoch=1 --gpu -o build/kernel
               kagglekit bundle . -- --epochs 1 --fold 0
    """
    from kagglekit.bundle import bundle_project, format_summary
    from kagglekit.paths import output_dir
    from kagglekit.run_options import parse_run_options

    if project_dir is not None and project_dir.startswith("-"):  # `bundle -- --epochs 1`: no folder given
        script_args, project_dir = (project_dir, *script_args), None
    if project_dir is not None and not Path(project_dir).is_dir():
        raise click.BadParameter(f"Directory '{project_dir}' does not exist.", param_hint="'[PROJECT_DIR]'")
    if out_dir is not None:
        output_dir(out_dir, "-o/--output")
    run = dataclasses.replace(parse_run_options(**run_values), args=tuple(script_args))
    result = bundle_project(Path(project_dir) if project_dir else None, out_dir, run)
    opts.emit(result, lambda: click.echo(format_summary(result, verbose=opts.verbose > 0)))


def _project_kernel(opts: Options | None = None) -> str:
    """The project's kernel id, for commands whose KERNEL argument was left out.

    The ``kernel`` setting, else the kernel ``push`` used from this folder on this backend
    (``.kagglekit/kernel.json``), so a project without settings finds its runs too.
    """
    from kagglekit.errors import ConfigError
    from kagglekit.identity import backend_key, remembered
    from kagglekit.settings import load_project

    settings = load_project()
    kernel_id = settings.kernel_id
    if kernel_id and not settings.origin("kernel").startswith("derived"):
        return kernel_id
    backend = backend_key(opts.local, opts.endpoint) if opts is not None else None
    pushed = remembered(settings.root, backend)
    if pushed:
        return pushed
    raise ConfigError("No KERNEL given, and no kernel is known for this folder: it has no kernel setting, and "
                      "no push from here was recorded" + (f" for this backend ({backend})." if backend else "."),
                      "Pass the kernel as OWNER/SLUG[/VERSION], push from this folder first, or set "
                      "kernel = \"owner/slug\" in kagglekit.toml.")


def _pushed(opts: Options, project_dir: Path | None, outcome: Any, describe: Callable[[Any], str]) -> None:
    """After a push: remember this folder's kernel on this backend (status, logs, ... find it), say what went."""
    from kagglekit.identity import backend_key, remember
    from kagglekit.settings import find_project_root

    kernel = getattr(outcome, "project_kernel", None) or outcome.kernel  # the project's, never its relay sibling
    remember(find_project_root(project_dir or Path.cwd())[0], kernel, backend_key(opts.local, opts.endpoint))
    if not opts.json:
        click.echo(describe(outcome))


def _open_run(opts: Options, kernel: str | None) -> tuple[KaggleApiClient, KernelRef, Ledger | None]:
    """The client, the run's reference (KERNEL, else this project's; without a version, its resume chain's
    newest session) and the ledger (None, after a warning, when the ledger file is unusable: looking at a
    run needs no history)."""
    from kagglekit.ledger import optional_ledger

    kernel = kernel or _project_kernel(opts)  # before any network: a missing kernel is the first thing to say
    client = opts.client()
    ledger = optional_ledger(_warn(opts))
    return client, _session_ref(opts, client, kernel, ledger), ledger


def _kernel_ref(client: KaggleApiClient, kernel: str) -> KernelRef:
    """KERNEL as typed (or the project's); a bare slug gets the account as owner."""
    from kagglekit.kernel_ref import KernelRef  # not at start-up: `kagglekit --help` imports only click

    return KernelRef.parse(kernel, default_owner=client.username)


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``90s``, ``15m``, ``1h30m`` or a bare number of seconds (waiting.parse_duration)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        from kagglekit.errors import ConfigError
        from kagglekit.waiting import parse_duration

        try:
            return parse_duration(str(value), f"--{param.name.replace('_', '-')}" if param and param.name else "")
        except ConfigError as exc:
            self.fail(f"{exc.message} {exc.hint}", param, ctx)


def start_grace_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--start-grace", type=Duration(), default="15m", show_default=True,
        help="After a push, how long Kaggle's \"No runs found\" (and a new private kernel's 403) counts as "
             "\"waiting for Kaggle to start the run\"; then exit 16 (the push started no run).")(f)


def max_wait_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--max-wait", type=Duration(), default=None,
                        help=f"Give up {what} after this long (e.g. 2h): exit 17, the run goes on.")


def _session_ref(opts: Options, client: KaggleApiClient, kernel: str, ledger: Any) -> KernelRef:
    """KERNEL as typed; without a version, its resume chain's newest session (docs/resume.md), which may
    have run on the chain's relay kernel: the chain is one thing to the user."""
    from kagglekit.chain import follow

    ref, note = follow(client, ledger, _kernel_ref(client, kernel))
    if note:
        opts.info(f"Following the resume chain: {note}.")
    return ref


def _warn(opts: Options) -> Callable[[str], None]:
    return lambda message: opts.info(f"Warning: {message}")


def _print_status(opts: Options, report: Any, tail: bool = True) -> None:
    """One status line; the failure and log tail too unless an error will say them (``tail=False``)."""
    if opts.json:
        return
    click.echo(report.line())
    if not tail:
        return
    if report.failure_message:
        click.echo(f"  failure: {report.failure_message}")
    if report.log_tail:
        click.echo("  --- last lines of the log ---")
        click.echo("\n".join("  " + line for line in report.log_tail.splitlines()))


@cli.command("push", cls=DoubleDashCommand, short_help="Bundle the project and push it as a new version.")
@click.option("-p", "--project", "project_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The project folder (default: found from the current folder).")
@run_options
@click.option("-m", "--message", help="A note kept with this version in the run ledger.")
@click.option("--wait", is_flag=True, help="Follow the run until it ends; exit 8 on ERROR, 9 if stopped.")
@click.option("--dry-run", is_flag=True, help="Show everything that would be sent, send nothing.")
@click.option("--after-test", is_flag=True,
              help="First run the test mode and wait for it; push this (full) run only if it completed.")
@click.option("--test-accelerator", default="cpu", show_default=True, metavar="ACC",
              help="With --after-test: where the test run goes (cpu, gpu, tpu or a shape).")
@click.option("--resume", is_flag=True,
              help="Continue training from this kernel's previous output (its newest checkpoint).")
@click.option("--resume-from", metavar="OWNER/SLUG[/V]", help="Continue from another kernel's output.")
@click.option("--strict", is_flag=True, help="Refuse (exit 6) instead of warning when the quota looks short.")
@click.option("--until-done", is_flag=True,
              help="Keep pushing the next session (through the relay kernel) each time one ends by its time "
                   "guard, until the training reports it finished; rerun to continue after Ctrl-C.")
@click.option("--max-sessions", type=click.IntRange(1), default=20, show_default=True,
              help="With --until-done: at most this many sessions in the chain.")
@click.option("--interval", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds between status polls with --wait.")
@start_grace_option
@max_wait_option("--wait")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@pass_options
def push_cmd(opts: Options, /, project_dir: Path | None, message: str | None, wait: bool, dry_run: bool,
             after_test: bool, test_accelerator: str, resume: bool, resume_from: str | None, strict: bool,
             until_done: bool, max_sessions: int, interval: float, start_grace: float, max_wait: float | None,
             script_args: tuple[str, ...],
             **run_values: Any) -> None:
    """Bundle the project and push it as a new version of its kernel.

    ARGS after `--` go to the entry point (after the `args` setting); --resume and the sessions of
    --until-done reuse the parent run's ARGS unless new ones are given (a bare `--`: none).

    \b
    Examples:  kagglekit push --gpu --test --wait
               kagglekit push --gpu --full --set n_epoch=1      (full data, small epoch)
               kagglekit push --gpu --full --after-test         (test on CPU first, then the full run)
               kagglekit push --gpu --full --resume --wait      (carry on past the 12-hour limit)
               kagglekit push --gpu --full --resume --until-done (session after session until done)
               kagglekit push --full -- --epochs 1 --fold 0     (arguments for the entry point)
    """
    from kagglekit.ledger import Ledger, optional_ledger
    from kagglekit.push import PushRequest, describe, run_push
    from kagglekit.run_options import parse_run_options
    from kagglekit.settings import resolve_machine_shape
    from kagglekit.watch import raise_for_outcome

    resolve_machine_shape(test_accelerator, "--test-accelerator")  # named as typed, before any work
    given = script_args or click.get_current_context().meta.get("double_dash")  # a bare `--` gives none
    run = dataclasses.replace(parse_run_options(**run_values), args=tuple(script_args) if given else None)
    req = PushRequest(project_dir=project_dir, run=run, message=message, resume=resume,
                      resume_from=resume_from, strict=strict, dry_run=dry_run, owner=opts.offline_username())
    if until_done and not dry_run:
        if after_test:
            from kagglekit.errors import ConfigError

            raise ConfigError("--until-done and --after-test do not go together.",
                              hint="Run the test first (push --test --wait), then push --full --until-done.")
        _push_until_done(opts, req, interval, max_sessions)
        return
    ledger = optional_ledger(_warn(opts)) if dry_run else Ledger()  # a real push must be recorded
    try:
        outcome, report = run_push(
            opts.client, req, ledger, wait=wait, after_test=after_test, test_accelerator=test_accelerator,
            interval_s=interval, info=opts.info,
            on_pushed=lambda o: _pushed(opts, project_dir, o, describe),
            on_change=lambda r: _print_status(opts, r, tail=False),
            start_grace_s=start_grace, max_wait_s=max_wait, cli=opts.command_prefix(),
        )
    except KeyboardInterrupt:
        opts.info(f"Stopped. A version already pushed runs on: {opts.command_prefix()} status shows it.")
        raise
    if dry_run:
        opts.emit(outcome, describe(outcome))
        return
    opts.emit(outcome)
    if report is not None:
        raise_for_outcome(report, cli=opts.command_prefix())
    elif not opts.json:
        click.echo(f"Follow it with: {opts.command_prefix()} status --watch {outcome.kernel}/{outcome.version}")


def _push_until_done(opts: Options, req: Any, interval: float, max_sessions: int) -> None:
    """``push --until-done``: the chain driver, its words, and its exit code."""
    from kagglekit.ledger import Ledger
    from kagglekit.push import describe
    from kagglekit.until_done import UntilDone, run_until_done

    driver = UntilDone(interval_s=interval, max_sessions=max_sessions, info=opts.info, cli=opts.command_prefix(),
                       on_pushed=lambda o: _pushed(opts, req.project_dir, o, describe),
                       on_change=lambda r: _print_status(opts, r, tail=False))
    try:
        outcome = run_until_done(opts.client(), req, Ledger(), driver)
    except KeyboardInterrupt:
        opts.info(f"Stopped following. The session keeps running on Kaggle, and the chain is kept: run the same "
                  f"command again to continue it, or `{opts.command_prefix()} stop` to end it.")
        raise

    def human() -> None:
        from kagglekit.display import duration

        click.echo(f"Chain {outcome.chain_id}: {outcome.state}. {outcome.message}")
        for row in outcome.sessions:
            click.echo(f"  session {row['session']}: {row['kernel']} v{row['version']} "
                       f"{(row['status'] or '?').lower()}, {duration(row['duration_s'], unknown='?')}"
                       + (f", epochs {row['epochs']}" if row["epochs"] else ""))
        click.echo(f"  {outcome.accelerator_hours:.3f} accelerator hours in all")

    opts.emit(outcome, human)
    outcome.raise_for_state(cli=opts.command_prefix())


@cli.command("stop", short_help="Stop a running session (or delete its kernel).")
@click.argument("kernel", required=False)
@click.option("--delete", is_flag=True,
              help="If Kaggle refuses the cancel: pull every saved output, then delete the kernel (asks first).")
@click.option("-y", "--yes", is_flag=True, help="With --delete: do not ask (for scripts).")
@click.option("--dry-run", is_flag=True, help="Show what would be done; cancel and delete nothing.")
@pass_options
def stop_command(opts: Options, /, kernel: str | None, delete: bool, yes: bool, dry_run: bool) -> None:
    """Stop a running session (KERNEL: OWNER/SLUG[/VERSION], default this project's newest).

    \b
    Tries Kaggle's cancel with the session id the run logged. Kaggle refuses it (403) to many
    accounts: then it says where to press "Stop Session", and with --delete pulls every saved
    output and, after you confirm, deletes the kernel (which ends the session and its billing).
    Stopping also ends the run's resume chain, so push --until-done pushes nothing more.
    """
    from kagglekit.errors import CancelDeniedError
    from kagglekit.ledger import Ledger
    from kagglekit.settings import find_project_root
    from kagglekit.stop import stop

    kernel = kernel or _project_kernel(opts)
    client = opts.client()
    ledger = Ledger()
    ref = _session_ref(opts, client, kernel, ledger)
    root = find_project_root(Path.cwd())[0]  # where outputs/ goes: the folder alone, no settings parsed again

    def confirm(question: str) -> bool:
        if not sys.stdin.isatty():
            opts.info(f"{question}\nNot asked: no terminal to answer on. Pass --yes to delete without asking.")
            return False
        return click.confirm(question, default=False, err=True)

    outcome = stop(client, ref, ledger, delete=delete, yes=yes, dry_run=dry_run, outputs_root=root,
                   confirm=confirm, info=opts.info, cli=opts.command_prefix())
    opts.emit(outcome, outcome.message)
    if outcome.action in ("denied", "kept"):
        raise CancelDeniedError(f"{outcome.kernel} v{outcome.version} is still running.",
                                hint=None if delete else f"{opts.command_prefix()} stop {outcome.kernel} --delete")


@cli.command("status", short_help="Show a run's state; --watch follows it to the end.")
@click.argument("kernel", required=False)
@click.option("-w", "--watch", "watch_flag", is_flag=True,
              help="Poll until the run ends: exit 0 on COMPLETE, 8 on ERROR, 9 when stopped.")
@click.option("--interval", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds between polls (grows while nothing changes; 429s are honoured).")
@start_grace_option
@max_wait_option("--watch")
@pass_options
def status_cmd(opts: Options, /, kernel: str | None, watch_flag: bool, interval: float, start_grace: float,
               max_wait: float | None) -> None:
    """Show a run's state (KERNEL: OWNER/SLUG[/VERSION], default this project's newest run)."""
    from kagglekit.watch import check_status, raise_for_outcome, watch

    client, ref, ledger = _open_run(opts, kernel)
    cli_prefix = opts.command_prefix()
    if not watch_flag:
        report = check_status(client, ref, ledger, start_grace_s=start_grace, cli=cli_prefix)
        opts.emit(report, lambda: _print_status(opts, report))
        return
    try:
        report = watch(client, ref, ledger, interval_s=interval, on_change=lambda r: _print_status(opts, r, tail=False),
                       on_problem=_warn(opts), start_grace_s=start_grace, max_wait_s=max_wait, cli=cli_prefix)
    except KeyboardInterrupt:
        opts.info(f"Stopped watching. The run keeps running on Kaggle; `{cli_prefix} status` shows it.")
        raise
    opts.emit(report)
    raise_for_outcome(report, cli=cli_prefix)


@cli.command("logs", short_help="Show a run's log as readable text; -f follows it.")
@click.argument("kernel", required=False)
@click.option("-f", "--follow", is_flag=True, help="Follow the log while the run goes on.")
@click.option("--raw", is_flag=True, help="Kaggle's JSON log as stored (no formatting).")
@start_grace_option
@pass_options
def logs_cmd(opts: Options, /, kernel: str | None, follow: bool, raw: bool, start_grace: float) -> None:
    """A run's log as readable text (progress bars collapsed, stderr lines marked '! ').

    KERNEL is OWNER/SLUG[/VERSION] (default: this project's newest run).
    """
    from kagglekit.watch import follow_log, log_text, resolve_version

    client, ref, ledger = _open_run(opts, kernel)
    if raw or opts.json:
        ref, _ = resolve_version(client, ref, ledger)
        if opts.json and follow:  # one JSON record a line, as they come
            from kagglekit.watch import follow_records

            for record in follow_records(client, ref, ledger, start_grace_s=start_grace, on_wait=opts.info,
                                         cli=opts.command_prefix()):
                click.echo(json.dumps(to_jsonable(record)))
            return
        text = client.get_log(ref)
        if opts.json:
            from kagglekit.logs import parse_log

            opts.emit(parse_log(text))
        else:
            click.echo(text)
        return
    cli_prefix = opts.command_prefix()
    lines = (follow_log(client, ref, ledger, start_grace_s=start_grace, on_wait=opts.info, cli=cli_prefix)
             if follow else log_text(client, ref, ledger, cli=cli_prefix))
    try:
        for line in lines:
            click.echo(line)
    except KeyboardInterrupt:
        opts.info("Stopped following. The run goes on.")
        raise
    if follow:  # the stream ended with the run: say how, and exit as status --watch would
        from kagglekit.watch import check_status, raise_for_outcome

        report = check_status(client, ref, ledger, with_log_tail=False, start_grace_s=start_grace, cli=cli_prefix)
        opts.info(report.line())
        raise_for_outcome(report, cli=cli_prefix)

# === section: bundle-push-status-logs (end) ===

@cli.command("pull-outputs", short_help="Download a version's outputs and log, resumably.")
@click.argument("kernel", required=False)
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Target folder (default: outputs/<slug>/v<N>/).")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable).")
@click.option("--checkpoints", is_flag=True,
              help="Only checkpoints (the project's `checkpoints` patterns; default *.pt *.pth *.ckpt ...).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Files downloaded at once.")
@click.option("--force", is_flag=True, help="Download again even what is already complete.")
@click.option("--version", "version", type=click.IntRange(1), metavar="N",
              help="This version of the kernel (same as KERNEL/N), e.g. the newest finished one during a run.")
@click.option("--max-wait", type=Duration(), default=None,
              help="After a cancel, how long to wait for Kaggle to finish saving the files (CANCEL_ACKNOWLEDGED) "
                   "before giving up with exit 17 [default: 10m].")
@pass_options
def pull_outputs_command(opts: Options, kernel: str | None, output_dir: Path | None, include: tuple[str, ...],
                         exclude: tuple[str, ...], checkpoints: bool, jobs: int, force: bool, version: int | None,
                         max_wait: float | None) -> None:
    """Download a version's output files and log, resumably, into outputs/<slug>/v<N>/.

    KERNEL is OWNER/SLUG[/VERSION] (default: this project's kernel, newest version). A second
    pull downloads only what is missing; an interrupted one resumes where it stopped.
    """
    from kagglekit.download import pull_outputs
    from kagglekit.ledger import optional_ledger
    from kagglekit.paths import output_dir as check_output_dir

    if output_dir is not None:  # before any network: a bad folder is the first thing to say
        check_output_dir(output_dir, "-o/--output")
    kernel = kernel or _project_kernel(opts)
    client = opts.client()
    ledger = optional_ledger(_warn(opts))
    ref = _session_ref(opts, client, kernel, ledger) if version is None else _kernel_ref(client, kernel)
    if version is not None:
        if ref.version is not None and ref.version != version:
            from kagglekit.errors import ConfigError

            raise ConfigError(f"{kernel} names version {ref.version} and --version says {version}.",
                              "Give the version once: KERNEL/N or --version N.")
        ref = ref.with_version(version)
    summary = pull_outputs(
        client, ref, target=output_dir, include=list(include), exclude=list(exclude),
        checkpoints=checkpoints, jobs=jobs, force=force, progress=False if opts.json else None,
        ledger=ledger, raise_on_failure=False, warn=_warn(opts),
        info=opts.info, max_wait_s=max_wait, cli=opts.command_prefix(),
    )

    def human() -> None:
        click.echo(summary.describe())
        if summary.log_text_path is not None:
            click.echo(f"log: {summary.log_text_path} (raw: {summary.log_path})")
        for failed in summary.failed:
            click.echo(f"failed: {failed.name}: {failed.error}", err=True)
        for name in summary.refused:
            click.echo(f"refused (outside the target): {name!r}", err=True)

    opts.emit(summary, human)
    summary.raise_for_failures()


@cli.command("runs", short_help="List the runs kagglekit has recorded (the ledger).")
@click.option("-k", "--kernel", metavar="K", help="Only this kernel (OWNER/SLUG or SLUG).")
@click.option("-a", "--all", "all_kernels", is_flag=True,
              help="Every kernel's runs (default inside a project: the project's kernel).")
@pass_options
def runs_command(opts: Options, kernel: str | None, all_kernels: bool) -> None:
    """List the runs kagglekit has recorded (the run ledger); in a project folder, its kernel's (and its
    resume chain's sessions on the relay sibling)."""
    from kagglekit.chain import relay_kernel
    from kagglekit.display import chain_lines, runs_table
    from kagglekit.errors import ConfigError
    from kagglekit.ledger import Ledger

    if kernel is None and not all_kernels:
        with contextlib.suppress(ConfigError):
            kernel = _project_kernel(opts)
    ledger = Ledger()
    records = ledger.runs(kernel=kernel)
    if kernel:  # a kernel's runs include its resume chain's sessions on the relay sibling
        records = sorted(records + ledger.runs(kernel=relay_kernel(kernel)),
                         key=lambda r: (r.pushed_at or r.updated_at or r.started_at, r.kernel, r.version))
    chain_ids = sorted({r.chain_id for r in records if r.chain_id is not None})
    chains = [c for c in (ledger.get_chain(i) for i in chain_ids) if c is not None]

    def human() -> None:
        click.echo(runs_table(records, kernel=kernel))
        for line in chain_lines(chains, {c.id: ledger.chain_runs(c.id) for c in chains}):
            click.echo(line)

    opts.emit(records, human)


@cli.command("quota", short_help="Show the weekly GPU/TPU quota, its use and forecast.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also draw the week (cumulative GPU hours against the allowance) to FILE.png.")
@pass_options
def quota_command(opts: Options, plot: Path | None) -> None:
    """The weekly GPU/TPU quota: live numbers, this week's runs, forecast, the 20 GB budget."""
    from kagglekit.errors import ApiError, CredentialsError, EmulatorError
    from kagglekit.ledger import Ledger
    from kagglekit.paths import output_file
    from kagglekit.quota import format_report, plot_week, quota_report

    if plot is not None:
        output_file(plot, "--plot")
    client, reason = None, None
    try:
        client = opts.client()
    except CredentialsError as exc:
        reason = "no Kaggle credentials"
        opts.info(f"Warning: {exc.message}\nShowing the ledger's estimate instead.")
    except (ApiError, EmulatorError) as exc:
        reason = "API unreachable"
        opts.info(f"Warning: {exc.message}\nShowing the ledger's estimate instead.")
    report = quota_report(client, Ledger(), reason=reason)
    if plot is not None:
        plot_week(report, plot)
        from kagglekit.written import remember

        remember(plot)  # a plot written inside a project is never bundled
        opts.info(f"Plot written to {plot}")
    opts.emit(report, format_report(report))


# === section: pull-outputs-runs-quota (end) ===

@cli.command("init", short_help="Create a PyTorch project that runs as generated.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Title of the kernel (default: from the folder name); its slug is the kernel's.")
@click.option("--kernel", metavar="OWNER/SLUG", help="The Kaggle kernel (default: SLUG, owner = your account).")
@click.option("--dataset", metavar="OWNER/SLUG", help="A Kaggle dataset to attach (one line in config.py uses it).")
@click.option("--force", is_flag=True, help="Write into a non-empty folder; files already there are kept "
                                            "(the template's version is written beside each as <file>.new).")
@pass_options
def init_command(opts: Options, directory: Path, name: str | None, kernel: str | None, dataset: str | None,
                 force: bool) -> None:
    """Create a PyTorch training project in DIRECTORY that runs as generated.

    Config class with a running_test toggle, synthetic data, training loop with
    early stopping, AMP, gradient accumulation, checkpoints and resume, and a smoke test.
    """
    from kagglekit.scaffold import init_project

    result = init_project(directory, name=name, kernel=kernel, dataset=dataset, force=force)

    def human() -> None:
        click.echo(f"Created {result.title!r} (kernel {result.kernel}) in {directory}:")
        for rel in result.written:
            click.echo(f"  wrote      {rel}")
        for rel in result.unchanged:
            click.echo(f"  unchanged  {rel}")
        for rel in result.skipped:
            beside = f"{rel}.new"
            how = f"template's version in {beside}" if beside in result.new_files else "left alone"
            click.echo(f"  kept yours {rel} ({how})")
        click.echo("\nNext:")
        click.echo(f"  cd {directory}")
        click.echo("  python train.py                      # test mode: a few seconds on a CPU")
        click.echo("  python -m pytest                     # the project's smoke test")
        click.echo("  kagglekit push --gpu --test --wait   # the test mode on Kaggle (add --local: emulator)")
        click.echo("  kagglekit pull-outputs && kagglekit report")
        if dataset:
            click.echo(f"To train on {dataset}: in config.py, set  dataset = \"{dataset}\"")

    opts.emit(result, human)


@cli.command("report", short_help="Report what a pulled run cost and how it trained.")
@click.argument("target", required=False, metavar="[TARGET]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Report file, .html or .md (default: report.html in the output folder).")
@click.option("--quota-left", type=float, metavar="HOURS",
              help="Remaining weekly hours of the run's accelerator (default: the last `kagglekit quota` reading).")
@pass_options
def report_command(opts: Options, target: str | None, output: Path | None, quota_left: float | None) -> None:
    """What a pulled run cost and how it trained: HTML or Markdown, with a loss curve.

    TARGET is an output folder, or KERNEL[/VERSION] for outputs/<slug>/v<N>/ written by
    pull-outputs (the latest version when none is given).
    """
    from kagglekit.connection import account_hint
    from kagglekit.paths import output_file
    from kagglekit.report import report_for

    if output is not None:
        output_file(output, "-o/--output")
    report = report_for(target, output=output, quota_left=quota_left,
                        account=account_hint(opts.local, opts.endpoint))
    from kagglekit.written import remember

    for written in (report.path, report.plot):  # never bundled, wherever -o put them
        if written is not None:
            remember(written)

    def human() -> None:
        from kagglekit.report import summary_lines

        for line in summary_lines(report):
            click.echo(line)

    opts.emit(report, human)


# === section: init-report (end) ===


@cli.group("deps", short_help="Requirements vs Kaggle's image; wheels for offline runs.")
def deps_group() -> None:
    """The project's requirements against Kaggle's image, and wheels for runs without internet.

    \b
    kagglekit deps check     what the image has, has at another version, lacks; what push will do
    kagglekit deps vendor    wheels for Kaggle's Python 3.12 as private dataset <owner>/<slug>-wheels
    """


@deps_group.command("check", short_help="Compare the requirements with Kaggle's image (offline).")
@click.option("-p", "--project", "project_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The project folder (default: found from the current folder).")
@click.option("--internet/--no-internet", "internet", default=None,
              help="Plan for a run with internet on/off (default: the project's setting).")
@pass_options
def deps_check_cmd(opts: Options, /, project_dir: Path | None, internet: bool | None) -> None:
    """Compare the project's requirements with the packages of Kaggle's image (offline)."""
    from kagglekit.channel import plan_deps
    from kagglekit.settings import load_project

    settings = load_project(project_dir, overrides={"internet": internet})
    plan = plan_deps(settings, settings.enable_internet)
    report = plan.report
    data = {"source": report.source, "image": report.image.source,
            "requirements": [{"requirement": v.req.text, "state": v.state, "image_version": v.image_version,
                              "origin": v.req.origin} for v in report.verdicts],
            "skipped": report.skipped, "push_will": plan.action, "install": plan.lines,
            "wheels_dataset": plan.wheels_dataset, "summary": plan.describe()}

    def human() -> None:
        click.echo(report.heading())
        label = {"ok": "ok", "mismatch": "other version", "missing": "missing"}
        for v in report.verdicts:
            have = f"image has {v.image_version}" if v.image_version else "not in the image"
            click.echo(f"  {label[v.state]:<14} {v.req.text:<32} {have}")
        for line in report.skipped:
            click.echo(f"  skipped        {line}")
        internet_word = "on" if settings.enable_internet else "off"
        click.echo(f"push (internet {internet_word}, deps = \"{settings.deps}\"): {plan.describe()}")

    opts.emit(data, human)


@deps_group.command("vendor", short_help="Upload wheels for what the image lacks, as a dataset.")
@click.option("-p", "--project", "project_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The project folder (default: found from the current folder).")
@click.option("--no-upload", is_flag=True, help="Only resolve and download the wheels (no Kaggle account needed).")
@pass_options
def deps_vendor_cmd(opts: Options, /, project_dir: Path | None, no_upload: bool) -> None:
    """Wheels for Kaggle's platform for what the image lacks, uploaded as <owner>/<slug>-wheels.

    Content-addressed: unchanged requirements upload nothing. `push --no-internet` (or deps =
    "vendor") attaches the dataset and installs from it with pip --no-index.
    """
    from kagglekit.channel import VENDOR, plan_deps, vendor_wheels
    from kagglekit.settings import load_project

    settings = load_project(project_dir, overrides={"internet": False})
    client = None if no_upload else opts.client()
    if client is not None and settings.kernel_owner is None:
        settings = settings.with_owner(client.username)
    plan = plan_deps(dataclasses.replace(settings, deps="vendor"), False)
    if plan.action != VENDOR:
        opts.emit({"wheels": [], "summary": plan.describe()}, f"Nothing to vendor: {plan.describe()}")
        return
    synced = vendor_wheels(client, settings, plan, opts.info, upload=not no_upload)
    opts.emit({"dataset": plan.wheels_dataset, "install": plan.lines,
               "uploaded_bytes": synced.stats.bytes_sent if synced else 0,
               "changed": synced.changed if synced else None},
              f"Wheels for {', '.join(plan.lines)}" + (f" are in dataset {plan.wheels_dataset}" if synced else
                                                       " are downloaded (not uploaded)"))


@cli.group("queue", short_help="Run the project's experiments within the quota.")
def queue_group() -> None:
    """Run the project's experiments on Kaggle: as many at once as the account may, within its quota.

    \b
    Experiments come from the project's `experiments` table and from --grid NAME=V1,V2 (their
    cartesian product); each runs as its own kernel. The queue lives in the run ledger: stop
    `queue run` any time and run it again to carry on (docs/queue.md).
    """


def _queue_setup(opts: Options, project_dir: Path | None) -> tuple[KaggleApiClient, Ledger, Any, Any]:
    from kagglekit.ledger import Ledger
    from kagglekit.queue import open_store
    from kagglekit.settings import load_project

    settings = load_project(project_dir)  # before any network: a bad setting is the first thing to say
    client = opts.client()
    if settings.kernel_owner is None:
        settings = settings.with_owner(client.username)
    ledger = Ledger()
    return client, ledger, settings, open_store(ledger, settings, client.account)


_project_option = click.option("-p", "--project", "project_dir", metavar="DIR",
                               type=click.Path(exists=True, file_okay=False, path_type=Path),
                               help="The project folder (default: the one around the current folder).")


@queue_group.command("run", short_help="Push queued experiments while slots and quota allow.")
@_project_option
@click.option("--grid", multiple=True, metavar="NAME=V1,V2",
              help="Add one experiment per combination of these values (repeatable: the cartesian product).")
@click.option("--only", multiple=True, metavar="NAME", help="Run only these experiments (repeatable).")
@click.option("--slots", type=click.IntRange(1), default=None,
              help="At most this many sessions at once per accelerator (default: the account's cap, 2 GPU).")
@click.option("--max-gpu-hours", type=click.FloatRange(0), default=None,
              help="Stop pushing once the queue's sessions used this many accelerator hours; the rest stay queued.")
@click.option("--interval", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds between looks at the running sessions (one status request each).")
@click.option("--no-pull", is_flag=True, help="Do not pull each session's outputs when it ends.")
@run_options
@pass_options
def queue_run_command(opts: Options, /, project_dir: Path | None, grid: tuple[str, ...], only: tuple[str, ...],
                      slots: int | None, max_gpu_hours: float | None, interval: float, no_pull: bool,
                      **run_values: Any) -> None:
    """Push experiments while a slot is free and the quota admits them; follow, continue and pull them.

    \b
    Examples:  kagglekit queue run --gpu --full --grid lr=1e-3,3e-4 --grid fold=0,1,2
               kagglekit queue run --max-gpu-hours 10        (the project's experiments table)
    """
    from kagglekit.errors import ConfigError
    from kagglekit.experiments import from_settings, parse_grid, select
    from kagglekit.queue import QueueOptions, QueueRunner, render
    from kagglekit.run_options import parse_run_options

    client, ledger, settings, store = _queue_setup(opts, project_dir)
    chosen = select(from_settings(settings), parse_grid(grid))
    if only:
        missing = sorted(set(only) - {e.name for e in chosen} - {i.name for i in store.items()})
        if missing:
            raise ConfigError(f"--only names unknown experiment(s): {', '.join(missing)}.",
                              hint="`kagglekit queue status` lists the queue; the experiments table the rest.")
        chosen = tuple(e for e in chosen if e.name in only)
    added = store.add(chosen, settings.kernel_id or "")
    if added:
        opts.info(f"Queued {len(added)} experiment(s): {', '.join(i.name for i in added)}.")
    if not store.items():
        raise ConfigError("The queue is empty: the project has no experiments table and no --grid was given.",
                          hint="E.g. kagglekit queue run --grid lr=1e-3,3e-4, or an [tool.kagglekit.experiments.NAME] "
                               "table with set = { lr = \"1e-3\" } (docs/queue.md).")
    live = sys.stderr.isatty() and not opts.json
    events: list[str] = []

    def event(message: str) -> None:
        events.append(message)
        if not live:
            opts.info(message)

    def tick(view: Any) -> None:
        if live:
            click.echo("\x1b[H\x1b[2J" + render(view) + "\n\n" + "\n".join(events[-8:]), err=True)

    runner = QueueRunner(client, ledger, store, settings,
                         QueueOptions(slots=slots, max_gpu_hours=max_gpu_hours, interval_s=interval,
                                      defaults=parse_run_options(**run_values), pull=not no_pull, event=event,
                                      tick=tick))
    try:
        result = runner.run()
    except KeyboardInterrupt:
        opts.info(f"Stopped. Running sessions keep running on Kaggle and the queue is kept: "
                  f"`{opts.command_prefix()} queue run` carries on.")
        raise
    opts.emit({"queue": result.view.as_dict(), "pushes": result.pushes, "refusals": result.refusals,
               "status_requests": result.polls, "seconds": round(result.seconds, 1),
               "push_seconds": [round(x, 3) for x in result.push_seconds]},
              lambda: click.echo(render(result.view)))


@queue_group.command("status", short_help="Show the queue as the ledger has it (offline).")
@_project_option
@pass_options
def queue_status_command(opts: Options, /, project_dir: Path | None) -> None:
    """The queue as the ledger has it (no request to Kaggle): states, sessions, hours."""
    from kagglekit.ledger import Ledger
    from kagglekit.queue import build_view, render, stores_of
    from kagglekit.settings import load_project

    views = [build_view(store) for store in stores_of(Ledger(), load_project(project_dir))]
    opts.emit([v.as_dict() for v in views],
              lambda: click.echo("\n\n".join(render(v) + (f"\n  (run by pid {v.holder['pid']} on {v.holder['host']})"
                                                          if v.holder else "") for v in views)
                                 or "The queue is empty: `kagglekit queue run --grid NAME=V1,V2` fills it."))


@queue_group.command("cancel", short_help="Dequeue experiments; running ones are stopped.")
@click.argument("names", nargs=-1, required=True)
@_project_option
@pass_options
def queue_cancel_command(opts: Options, /, names: tuple[str, ...], project_dir: Path | None) -> None:
    """Dequeue the experiments NAMES; a running one is stopped (kagglekit stop), its outputs pulled when it ends."""
    from kagglekit.queue import cancel

    client, _, _, store = _queue_setup(opts, project_dir)
    items = [cancel(client, store, name, info=opts.info) for name in names]
    opts.emit([{"name": i.name, "state": i.state, "note": i.note} for i in items],
              "\n".join(f"{i.name}: {i.state}" for i in items))


@queue_group.command("forget", short_help="Drop ended or waiting experiments from the queue.")
@click.argument("names", nargs=-1, required=True)
@_project_option
@pass_options
def queue_forget_command(opts: Options, /, names: tuple[str, ...], project_dir: Path | None) -> None:
    """Remove the ended or waiting experiments NAMES from the queue (their runs and outputs stay)."""
    _, _, _, store = _queue_setup(opts, project_dir)
    removed = store.forget(list(names))
    opts.emit({"removed": removed}, f"Removed {removed} experiment(s) from the queue.")


@cli.command("compare", short_help="Compare the queue's experiments: metrics, hours, curves.")
@click.argument("names", nargs=-1)
@_project_option
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Where to draw the loss curves (default: outputs/compare.png in the project).")
@pass_options
def compare_command(opts: Options, /, names: tuple[str, ...], project_dir: Path | None,
                    plot_path: Path | None) -> None:
    """The queue's experiments side by side: final and best metrics, overrides, GPU hours, status; loss curves.

    \b
    NAMES picks experiments (default: all). Reads the outputs `queue run` pulled (metrics.jsonl,
    summary.json); no request to Kaggle.
    """
    import pandas as pd

    from kagglekit.compare import gather, plot_losses
    from kagglekit.ledger import Ledger
    from kagglekit.queue import stores_of
    from kagglekit.settings import load_project

    settings = load_project(project_dir)
    stores = stores_of(Ledger(), settings)
    if not stores:
        raise KagglekitError("This project's queue has no experiments yet.",
                             hint="`kagglekit queue run` runs them; compare reads what it pulled.")
    frame, histories = gather(stores[-1], names)  # the account that ran the queue last
    target = plot_path or settings.root / "outputs" / "compare.png"
    drawn = plot_losses(histories, target, title=f"{settings.kernel_slug}: loss")
    table = frame.reset_index().to_dict(orient="records") if not frame.empty else []

    def human() -> None:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            click.echo(frame.to_string() if not frame.empty else "No experiments.")
        click.echo(f"Loss curves: {drawn}" if drawn else "No loss values to plot (metrics.jsonl had none).")

    opts.emit({"experiments": table, "plot": str(drawn) if drawn else None}, human)


def _accept_global_options_after_the_command(group: click.Group) -> None:
    """Let ``kagglekit push --local`` mean ``kagglekit --local push`` (and so for every global option).

    Users type flags where they think of them; hints say "add --local". Each command gets
    hidden copies of the group's options that write into the same ``Options``.
    """

    def setter(field: str, *, count: bool = False) -> Callable[[click.Context, click.Parameter, Any], None]:
        def set_value(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
            opts = ctx.find_object(Options)
            if opts is None or value in (None, False, 0):
                return
            setattr(opts, field, getattr(opts, field) + value if count else value)

        return set_value

    extra = [
        click.Option(["--local"], is_flag=True, expose_value=False, hidden=True, callback=setter("local")),
        click.Option(["--endpoint"], expose_value=False, hidden=True, callback=setter("endpoint")),
        click.Option(["--json"], is_flag=True, expose_value=False, callback=setter("json"),
                     help="Machine-readable JSON on stdout."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False, hidden=True,
                     callback=setter("verbose", count=True)),
        click.Option(["--debug"], is_flag=True, expose_value=False, hidden=True, callback=setter("debug")),
    ]
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_global_options_after_the_command(command)
            continue
        taken = {name for param in command.params for name in getattr(param, "opts", [])}
        command.params.extend(o for o in extra if not taken & set(o.opts))


_accept_global_options_after_the_command(cli)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point and the single error boundary."""
    args = argv if argv is not None else sys.argv[1:]
    if any("\x00" in arg for arg in args):  # os calls (click's path checks too) raise ValueError on NUL
        click.secho("Error: an argument contains a NUL character, which no name, path or value can hold.",
                    fg="red", err=True)
        sys.exit(2)
    debug = "--debug" in args or os.environ.get("KAGGLEKIT_DEBUG", "") not in ("", "0")
    try:
        rv = cli.main(args=argv, prog_name="kagglekit", standalone_mode=False)
    except KagglekitError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if "--json" in args:  # scripts get the failure as data too (stdout), besides the exit code
            click.echo(json.dumps({"error": {"type": type(exc).__name__, "message": exc.message,
                                             "hint": exc.hint, "exit_code": exc.exit_code}}, indent=2))
        click.secho(f"Error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"Hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # the file system said no (full, read-only, permissions): not a kagglekit bug
        if debug:
            raise
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        click.secho(f"Error: {exc.strerror or type(exc).__name__}{where}.", fg="red", err=True)
        click.echo("Hint: check that path (free space, permissions, a file where a folder should be); "
                   "--debug shows where it happened.", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug, not an expected failure: say so without a wall of traceback
        if debug:
            raise
        click.secho(f"Error: unexpected {type(exc).__name__}: {exc}", fg="red", err=True)
        click.echo("Hint: run again with --debug for the traceback, and report it as a kagglekit bug.", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
