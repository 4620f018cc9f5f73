"""Hints name a kagglekit command as the user invoked it (``kagglekit --local ...``, ``kagglekit --endpoint URL ...``),
also where the raiser cannot know that (the API client, the report and queue cores): errors.CLI, completed by the
CLI's error boundary."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from kagglekit.api.client import KaggleApiClient
from kagglekit.api.transport import RetryPolicy
from kagglekit.credentials import demo_credentials
from kagglekit.errors import CLI, ApiError, NotFoundError
from kagglekit.kernel_ref import KernelRef
from tests.helpers import run_main, write

LOCAL = "kagglekit --local"


def test_a_hint_template_reads_plainly_and_completes_with_the_prefix() -> None:
    error = NotFoundError("gone", f"Pull it again: `{CLI} pull-outputs a/b`, then `{CLI} report`.")
    assert error.hint == "Pull it again: `kagglekit pull-outputs a/b`, then `kagglekit report`."  # no "{cli}" leaks
    assert error.hint_for(LOCAL) == f"Pull it again: `{LOCAL} pull-outputs a/b`, then `{LOCAL} report`."
    assert NotFoundError("gone").hint_for(LOCAL) is None
    error.hint = "Plain."  # a hint set later replaces the template
    assert error.hint_for(LOCAL) == "Plain."


@pytest.mark.parametrize("args", [["--local", "report", "demo/nothing/3"], ["report", "demo/nothing/3", "--local"]])
def test_the_error_boundary_names_the_command_as_invoked(args: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """report needs no server: under --local (before or after the command) its hint says `kagglekit --local`."""
    monkeypatch.chdir(tmp_path)
    code, _out, err = run_main(args, capsys)
    assert code == 5, err
    assert f"Hint: Pull them first: {LOCAL} pull-outputs demo/nothing." in err
    code, out, _err = run_main(["--json", *args], capsys)
    assert code == 5 and json.loads(out)["error"]["hint"] == f"Pull them first: {LOCAL} pull-outputs demo/nothing."


def test_without_a_backend_option_the_hint_says_plain_kagglekit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAGGLEKIT_LOCAL", raising=False)
    monkeypatch.delenv("KAGGLEKIT_ENDPOINT", raising=False)
    code, _out, err = run_main(["report", "demo/nothing/3"], capsys)
    assert code == 5 and "Hint: Pull them first: kagglekit pull-outputs demo/nothing." in err


def test_a_lost_log_stream_hint_names_the_command_as_invoked() -> None:
    """The API client knows no command line: its hint is a template the boundary completes."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fast = RetryPolicy(status_retries=0, connect_retries=0, read_retries=0, backoff_factor=0.01, backoff_max=0.02)
    client = KaggleApiClient(demo_credentials(), endpoint=f"http://127.0.0.1:{port}", timeout=(2, 2), retry=fast)
    with client, pytest.raises(ApiError) as info:
        list(client.stream_log(KernelRef("demo", "gone", 1), max_failures=1, reconnect_delay=0))
    assert "Lost the log stream" in info.value.message
    assert f"check it with `{LOCAL} status`" in (info.value.hint_for(LOCAL) or "")


def test_queue_and_compare_hints_name_the_command_as_invoked(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "q", {"kagglekit.toml": 'kernel = "queue-hints"\nentry = "main.py"\ntest-flag = false\n',
                                  "main.py": "print('ok')\n"})
    prefix = f"kagglekit --endpoint {emulator.url}"
    code, out, err = kk("queue", "cancel", "nope", cwd=root)  # queue.py's hint
    assert code == 5, (out, err)
    assert f"`{prefix} queue status` lists them." in err
    code, out, err = kk("compare", cwd=root)  # cli.py's own hint
    assert code == 1, (out, err)
    assert f"`{prefix} queue run` runs them" in err


def test_until_done_watches_with_the_command_as_invoked(kk: Any, emulator: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The status polling inside --until-done gets the prefix: its notes and hints (and whether it talks to an
    emulator) follow the command as invoked, as a plain --wait does."""
    import kagglekit.watch

    real = kagglekit.watch.watch
    seen: list[str] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["cli"])
        return real(*args, **kwargs)

    monkeypatch.setattr(kagglekit.watch, "watch", recording)
    root = write(tmp_path / "u", {"kagglekit.toml": 'kernel = "until-hints"\nentry = "main.py"\ntest-flag = false\n',
                                  "main.py": "print('ok')\n"})
    code, out, err = kk("push", "--cpu", "--until-done", "--interval", "0.3", "--max-sessions", "1", cwd=root)
    assert code == 0, (out, err)
    assert seen and set(seen) == {f"kagglekit --endpoint {emulator.url}"}
