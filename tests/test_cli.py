"""The CLI frame: fast start-up, the error boundary, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from kagglekit import cli as cli_module
from kagglekit.errors import ConfigError, KagglekitError

HEAVY = ("kaggle", "kagglesdk", "requests", "pandas", "matplotlib", "torch")


@pytest.mark.parametrize("argv", [["--help"], ["push", "--help"], ["status", "--help"], ["pull-outputs", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    code = (
        "import sys\nfrom kagglekit.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print('EXIT=' + str(code))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out, out
    assert "EXIT=0" in out, out


def test_error_boundary_prints_message_hint_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_module.cli.command("boom-test", hidden=True)
    def boom() -> None:
        raise ConfigError("field 'timeout' in kagglekit.toml: 'soon' is not a duration", hint="Use e.g. 11h or 90m.")

    try:
        with pytest.raises(SystemExit) as exc:
            cli_module.main(["boom-test"])
    finally:
        cli_module.cli.commands.pop("boom-test", None)
    assert exc.value.code == ConfigError.exit_code == 3
    err = capsys.readouterr().err
    assert "Error: field 'timeout' in kagglekit.toml: 'soon' is not a duration" in err
    assert "Hint: Use e.g. 11h or 90m." in err
    assert "Traceback" not in err


def test_unexpected_error_has_no_traceback_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_module.cli.command("bug-test", hidden=True)
    def bug() -> None:
        raise ZeroDivisionError("division by zero")

    try:
        with pytest.raises(SystemExit) as exc:
            cli_module.main(["bug-test"])
        err = capsys.readouterr().err
        assert exc.value.code == 1
        assert "unexpected ZeroDivisionError" in err and "--debug" in err
        assert "Traceback" not in err
        with pytest.raises(ZeroDivisionError):
            cli_module.main(["--debug", "bug-test"])
    finally:
        cli_module.cli.commands.pop("bug-test", None)


def test_usage_error_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["--no-such-option"])
    assert exc.value.code == 2
    assert "No such option" in capsys.readouterr().err


def test_every_error_class_has_a_distinct_documented_code() -> None:
    from pathlib import Path

    classes = [c for c in vars(__import__("kagglekit.errors", fromlist=["x"])).values()
               if isinstance(c, type) and issubclass(c, KagglekitError) and c is not KagglekitError]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes))
    table = (Path(__file__).resolve().parent.parent / "docs" / "exit-codes.md").read_text()
    for c in classes:
        assert f"| {c.exit_code} | `{c.__name__}`" in table, c.__name__


def test_version() -> None:
    from click.testing import CliRunner

    from kagglekit import __version__

    res = CliRunner().invoke(cli_module.cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    assert isinstance(cli_module.cli, click.Group)


def test_json_errors_are_data_on_stdout_too(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.chdir(tmp_path)  # not a project, no credentials: `status` has no kernel to describe
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["status", "--json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 3
    error = json.loads(out)["error"]
    assert error["type"] == "ConfigError" and error["exit_code"] == 3 and "No KERNEL given" in error["message"]
    assert "Error: No KERNEL given" in err


def _commands(cmd: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            found += _commands(sub, [*path, name])
    return found


def test_every_command_lists_with_a_whole_one_line_description() -> None:
    """Click cuts a long first sentence to "…" in a group's command list; every row must read whole."""
    from click.testing import CliRunner

    for path, group in _commands(cli_module.cli, ["kagglekit"]):
        if not isinstance(group, click.Group):
            continue
        result = CliRunner().invoke(cli_module.cli, [*path[1:], "--help"], terminal_width=80)
        assert result.exit_code == 0, result.output
        listing = result.output.split("Commands:\n", 1)[1].splitlines()
        assert len(listing) == len(group.commands), listing  # one line per command: nothing wrapped
        for name, sub in group.commands.items():
            row = next(line for line in listing if line.split()[0] == name)
            assert sub.short_help and row.rstrip().endswith(sub.short_help), row
            assert "..." not in row and len(row) <= 78, row


def test_every_usage_line_names_the_arguments_its_help_explains() -> None:
    """``report --help`` said TARGET in its text but not in its usage line; every argument is named in both."""
    import re

    for path, cmd in _commands(cli_module.cli, ["kagglekit"]):
        ctx = click.Context(cmd, info_name=" ".join(path))
        text = cmd.get_help(ctx)
        usage, body = text.split("\n", 1)
        for param in cmd.params:
            if isinstance(param, click.Argument):
                metavar = param.make_metavar(ctx)
                word = re.sub(r"[\[\].]|--", "", metavar).split()[0]
                assert metavar in usage, (path, usage)
                assert word in body, f"{' '.join(path)} --help never says what {word} is"
