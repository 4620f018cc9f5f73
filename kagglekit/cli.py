"""The ``kagglekit`` command line: parse options, call one core function, print.

Rules that keep start-up fast and the commands thin:
- import nothing heavy at module level (kaggle, kagglesdk, requests, pandas,
  matplotlib, torch): each command imports its core module inside its body;
- every expected failure is a ``KagglekitError``; ``main`` is the one place that
  turns it into ``Error:``/``Hint:`` lines and its documented exit code.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from kagglekit import __version__
from kagglekit.errors import EXIT_INTERRUPTED, KagglekitError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclasses.dataclass
class Options:
    """Global options, handed to every command through ``click.pass_obj``."""

    local: bool = False
    endpoint: str | None = None
    json: bool = False
    verbose: int = 0
    debug: bool = False

    def client(self) -> Any:
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


# ---------------------------------------------------------------------------
# Commands are added below, grouped by concern. Each one parses its options,
# calls one core function and prints.
# ---------------------------------------------------------------------------

# === section: emulator (end) ===

# === section: bundle-push-status-logs (end) ===

# === section: pull-outputs-runs-quota (end) ===

# === section: init-report (end) ===


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point and the single error boundary."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="kagglekit", standalone_mode=False)
    except KagglekitError as exc:
        if debug:
            import traceback

            traceback.print_exc()
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
    except Exception as exc:  # a bug, not an expected failure: say so without a wall of traceback
        if debug:
            raise
        click.secho(f"Error: unexpected {type(exc).__name__}: {exc}", fg="red", err=True)
        click.echo("Hint: run again with --debug for the traceback, and report it as a kagglekit bug.", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
