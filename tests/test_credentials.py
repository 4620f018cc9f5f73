"""Credential lookup: the official client's order and merge rules, without importing kaggle.

Each test writes real files into the isolated HOME from conftest.py and sets real
environment variables, then checks which secret wins and where kagglekit says it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kagglekit.credentials import Credentials, Secret, config_dir, demo_credentials, find_credentials
from kagglekit.errors import CredentialsError


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def kaggle_json(folder: Path, **values: str) -> Path:
    return write(folder / "kaggle.json", json.dumps(values))


def test_nothing_configured_lists_every_place_and_what_to_do(isolated_home: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    message, hint = info.value.message, info.value.hint or ""
    for place in ("KAGGLE_API_TOKEN", f"{isolated_home}/.kaggle/access_token", "access_token.txt",
                  "kaggle.json", "KAGGLE_USERNAME / KAGGLE_KEY"):
        assert place in message
    # ~/.kaggle does not exist, so (on Linux) kaggle.json is looked for under XDG_CONFIG_HOME.
    assert f"{isolated_home}/.config/kaggle/kaggle.json" in message
    assert "kaggle.com/settings" in hint and "--local" in hint
    assert info.value.exit_code == 4


def test_token_from_env_value_beats_a_legacy_key(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kaggle_json(isolated_home / ".kaggle", username="alice", key="k" * 32)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_from_env_value")
    creds = find_credentials()
    assert creds.auth_kind == "token"
    assert creds.secret.reveal() == "KGAT_from_env_value"
    assert creds.source == "the KAGGLE_API_TOKEN environment variable"
    assert creds.username == "alice"  # kept as a hint for bare slugs


def test_token_env_may_name_a_file(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = write(isolated_home / "secrets" / "kaggle-token", "KGAT_in_a_file\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    creds = find_credentials()
    assert creds.secret.reveal() == "KGAT_in_a_file"
    assert str(token_file) in creds.source


def test_empty_token_file_named_by_env_falls_back_to_the_key(isolated_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """kagglesdk returns no token for an empty file and the official client then uses the key."""
    empty = write(isolated_home / "empty-token", "  \n")
    write(isolated_home / ".kaggle" / "access_token", "KGAT_not_reached")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(empty))
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setenv("KAGGLE_KEY", "b" * 32)
    creds = find_credentials()
    assert (creds.auth_kind, creds.username, creds.secret.reveal()) == ("key", "bob", "b" * 32)


def test_access_token_file_then_txt(isolated_home: Path) -> None:
    txt = write(isolated_home / ".kaggle" / "access_token.txt", "KGAT_txt")
    assert find_credentials().secret.reveal() == "KGAT_txt"
    assert find_credentials().source == str(txt)
    write(isolated_home / ".kaggle" / "access_token", "KGAT_plain")
    assert find_credentials().secret.reveal() == "KGAT_plain"


def test_access_token_ignores_kaggle_config_dir(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token paths are hard-coded to ~/.kaggle; KAGGLE_CONFIG_DIR only moves kaggle.json."""
    other = isolated_home / "cfg"
    write(other / "access_token", "KGAT_wrong_place")
    kaggle_json(other, username="carol", key="c" * 32)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(other))
    creds = find_credentials()
    assert creds.auth_kind == "key"
    assert creds.username == "carol"
    assert creds.source == str(other / "kaggle.json")


def test_kaggle_json_in_home_dot_kaggle(isolated_home: Path) -> None:
    path = kaggle_json(isolated_home / ".kaggle", username="dave", key="d" * 32)
    creds = find_credentials()
    assert (creds.auth_kind, creds.username, creds.source) == ("key", "dave", str(path))
    assert creds.key == Secret("d" * 32) and creds.token is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG fallback is Linux-only in kaggle")
def test_xdg_config_used_only_when_dot_kaggle_is_missing(isolated_home: Path) -> None:
    xdg = kaggle_json(isolated_home / ".config" / "kaggle", username="erin", key="e" * 32)
    assert find_credentials().source == str(xdg)
    (isolated_home / ".kaggle").mkdir()  # now kaggle uses ~/.kaggle, even though it holds no kaggle.json
    assert config_dir() == isolated_home / ".kaggle"
    with pytest.raises(CredentialsError):
        find_credentials()


def test_env_overrides_the_file_field_by_field(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kaggle_json(isolated_home / ".kaggle", username="frank", key="f" * 32)
    monkeypatch.setenv("KAGGLE_KEY", "g" * 32)
    creds = find_credentials()
    assert (creds.username, creds.secret.reveal()) == ("frank", "g" * 32)
    assert creds.source == f"{path} + KAGGLE_KEY environment variable"


def test_env_pair_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "gina")
    monkeypatch.setenv("KAGGLE_KEY", "h" * 32)
    creds = find_credentials()
    assert creds.source == "KAGGLE_USERNAME and KAGGLE_KEY environment variables"


def test_half_configured_key_is_reported_precisely(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kaggle_json(isolated_home / ".kaggle", username="hank")
    monkeypatch.setenv("KAGGLE_USERNAME", "hank")
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    assert f"{path} (KAGGLE_CONFIG_DIR not set): found, but it has no key" in info.value.message
    assert "only KAGGLE_USERNAME is set" in info.value.message


def test_broken_kaggle_json_is_ignored_and_said(isolated_home: Path) -> None:
    write(isolated_home / ".kaggle" / "kaggle.json", "{not json")
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    assert "cannot be parsed as JSON" in info.value.message


def test_loose_permissions_warn_like_kaggle(isolated_home: Path) -> None:
    path = write(isolated_home / ".kaggle" / "kaggle.json", json.dumps({"username": "ivy", "key": "i" * 32}),
                 mode=0o644)
    creds = find_credentials()
    assert creds.warnings == (f"{path} is readable by other users on this system; run: chmod 600 {path}",)


def test_oauth_login_file_is_explained(isolated_home: Path) -> None:
    write(isolated_home / ".kaggle" / "credentials.json", json.dumps({"refresh_token": "r"}))
    with pytest.raises(CredentialsError) as info:
        find_credentials()
    assert "kaggle auth login" in info.value.message


def test_notebook_token_file_comes_first(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = write(isolated_home / "run" / "token", "KGAT_notebook")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_env")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("KAGGLE_DATA_PROXY_URL", "http://proxy")
    monkeypatch.setenv("KAGGLE_API_V1_TOKEN", str(inside))
    assert find_credentials().secret.reveal() == "KGAT_notebook"
    monkeypatch.delenv("KAGGLE_DATA_PROXY_URL")  # not really inside a notebook any more
    assert find_credentials().secret.reveal() == "KGAT_env"


def test_secret_never_shows_in_repr_str_asdict_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "jack")
    monkeypatch.setenv("KAGGLE_KEY", "SUPERSECRETKEY0123456789")
    creds = find_credentials()
    as_dict = dataclasses.asdict(creds)
    renderings = [repr(creds), str(creds), f"{creds}", creds.describe(), repr(as_dict),
                  json.dumps(as_dict, default=str)]
    for text in renderings:
        assert "SUPERSECRETKEY" not in text
    assert "jack" in repr(creds)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(creds.secret)


def test_demo_credentials_are_the_emulator_account() -> None:
    from kagglekit.constants import DEMO_KEY, DEMO_USERNAME

    creds = demo_credentials()
    assert isinstance(creds, Credentials)
    assert (creds.username, creds.secret.reveal(), creds.auth_kind) == (DEMO_USERNAME, DEMO_KEY, "key")


def test_lookup_does_not_import_kaggle(isolated_home: Path) -> None:
    """Importing kaggle authenticates and prints help; the lookup must not pull it in."""
    code = ("import sys, kagglekit.credentials as c\n"
            "try:\n    c.find_credentials()\nexcept Exception:\n    pass\n"
            "bad = sorted(m for m in sys.modules if m == 'kaggle' or m.startswith(('kaggle.', 'kagglesdk')))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "HOME": str(isolated_home)})
    assert out.stdout.strip() == "[]"
