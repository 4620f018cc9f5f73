"""Issue 10, items 3 and 14: malformed credentials are a credentials error that never echoes them.

Each test runs the real ``kagglekit`` entry point against a real emulator over HTTP
(or no server at all when the failure must come before any network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kagglekit.credentials import find_credentials
from kagglekit.errors import CredentialsError
from tests.helpers import run_main as run

TOKEN_A = "KGAT_" + "a1" * 16
TOKEN_B = "KGAT_" + "b2" * 16


@pytest.mark.parametrize("content", [
    f"{TOKEN_A}\n{TOKEN_B}\n",          # two tokens, one a line
    f"{TOKEN_A} {TOKEN_B}",             # two tokens on one line
    "KGAT_t\u00f6ken\u2603snowman",     # non-Latin-1 characters
    f"{TOKEN_A}\x00",                   # a control character
])
def test_malformed_token_file_is_a_credentials_error_that_never_shows_it(
        emulator: Any, isolated_home: Path, capsys: pytest.CaptureFixture[str], content: str) -> None:
    path = isolated_home / ".kaggle" / "access_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    code, out, err = run(["--endpoint", emulator.url, "status", "demo/anything"], capsys)
    assert code == 4, err
    assert str(path) in err  # names the file...
    for secret in (TOKEN_A, TOKEN_B, "t\u00f6ken", "KGAT_"):
        assert secret not in out + err  # ...never its content
    assert "Traceback" not in err and "unexpected" not in err


@pytest.mark.parametrize("key", ["\u20ac" * 32, "abc def", "k" * 16 + "\n" + "k" * 16])
def test_malformed_key_in_kaggle_json_is_a_credentials_error(
        emulator: Any, isolated_home: Path, capsys: pytest.CaptureFixture[str], key: str) -> None:
    path = isolated_home / ".kaggle" / "kaggle.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"username": "demo", "key": key}), encoding="utf-8")
    path.chmod(0o600)
    code, out, err = run(["--endpoint", emulator.url, "status", "demo/anything"], capsys)
    assert code == 4, err
    assert str(path) in err
    assert key not in out + err and "\u20ac" not in out + err
    assert "Traceback" not in err and "unexpected" not in err


def test_malformed_key_in_environment_names_the_variable(
        emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "demo")
    monkeypatch.setenv("KAGGLE_KEY", "s\u00e9cr\u00e8t\u4e2d")
    code, out, err = run(["--endpoint", emulator.url, "status", "demo/anything"], capsys)
    assert code == 4, err
    assert "KAGGLE_KEY" in err and "s\u00e9cr" not in out + err


def test_kaggle_json_holding_a_list_is_in_the_looked_at_list(isolated_home: Path) -> None:
    path = isolated_home / ".kaggle" / "kaggle.json"
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    line = next((ln for ln in info.value.message.splitlines() if str(path) in ln), None)
    assert line is not None, info.value.message
    assert "not a JSON object" in line


def test_kaggle_json_being_a_folder_is_not_reported_as_missing(isolated_home: Path) -> None:
    path = isolated_home / ".kaggle" / "kaggle.json"
    path.mkdir(parents=True)
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    line = next(ln for ln in info.value.message.splitlines() if str(path) in ln)
    assert "no such file" not in line and "is a folder" in line


def test_access_token_being_a_folder_is_not_reported_as_missing(isolated_home: Path) -> None:
    path = isolated_home / ".kaggle" / "access_token"
    path.mkdir(parents=True)
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    line = next(ln for ln in info.value.message.splitlines() if ln.strip().startswith(f"- {path}:"))
    assert "no such file" not in line and "is a folder" in line
