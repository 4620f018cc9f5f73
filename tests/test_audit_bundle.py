"""Issue 10, items 4, 5 and 13 (bundle side): nothing from outside the project, no secret in any form."""

from __future__ import annotations

import base64
import io
import json
import lzma
import os
import re
import tarfile
from pathlib import Path

import pytest

from tests.audit_helpers import assert_clean_failure, run_cli, write_project

HEX = "0123456789abcdef" * 2


def bundled_names(out_dir: Path) -> dict[str, bytes]:
    """The project files inside the bundled script's embedded archive."""
    script = next(p for p in out_dir.iterdir() if p.suffix == ".py")
    text = script.read_text()
    blob = max(re.findall(r"[\"']([A-Za-z0-9+/=\s]{200,})[\"']", text), key=len)
    raw = lzma.decompress(base64.b64decode("".join(blob.split())))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_file_link_to_outside_the_project_is_not_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "host-secret.txt"
    outside.write_text("root:x:0:0:HOST-ONLY-CONTENT\n")
    root = write_project(tmp_path / "p")
    os.symlink(outside, root / "notes.txt")
    os.symlink("/etc/passwd", root / "passwd.txt")
    (root / "inside.txt").write_text("inside")
    os.symlink("inside.txt", root / "alias.txt")  # a link inside the project is fine
    monkeypatch.chdir(root)
    code, out, err = run_cli(["bundle", "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    names = bundled_names(tmp_path / "out")
    assert "project/notes.txt" not in names and "project/passwd.txt" not in names
    assert names["project/alias.txt"] == b"inside"
    assert not any(b"HOST-ONLY-CONTENT" in data or b"root:x:0:0" in data for data in names.values())
    said = out + err  # the summary lists warnings
    assert "notes.txt" in said and "passwd.txt" in said and "outside the project" in said


def test_file_link_to_a_secret_inside_the_project_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p", {".kaggleignore": "kaggle.json\n"})
    (root / "kaggle.json").write_text(json.dumps({"username": "a", "key": HEX}))
    os.symlink("kaggle.json", root / "settings.txt")
    monkeypatch.chdir(root)
    code, out, err = run_cli(["bundle", "-o", str(tmp_path / "out")], capsys)
    assert_clean_failure(code, err, 11)
    assert "settings.txt" in err and HEX not in out + err


@pytest.mark.parametrize("name,content", [
    ("cfg.py", f'KAGGLE_KEY = "{HEX}"\n'),
    ("cfg2.py", f"import os\nos.environ['KAGGLE_KEY'] = '{HEX}'\n"),
    ("cfg3.py", f'creds = {{"username": "alice", "key": "{HEX}"}}\n'),
    ("cfg4.py", f'creds = {{"key": "{HEX}", "username": "alice"}}\n'),
    ("nb.ipynb", json.dumps({"cells": [{"cell_type": "code", "source": [
        f'open("kaggle.json", "w").write(\'{{"username":"alice","key":"{HEX}"}}\')']}]})),
    ("nb2.ipynb", json.dumps({"cells": [{"cell_type": "code", "source": [
        json.dumps({"username": "alice", "key": HEX})]}]})),
    ("settings.yaml", f"kaggle:\n  username: alice\n  key: {HEX}\n"),
    ("api.py", f"api_token = '{HEX}'\n"),
])
def test_key_looking_secrets_in_any_form_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], name: str,
                                                     content: str) -> None:
    root = write_project(tmp_path / "p")
    (root / name).write_text(content)
    monkeypatch.chdir(root)
    code, out, err = run_cli(["bundle", "-o", str(tmp_path / "out")], capsys)
    assert_clean_failure(code, err, 11)
    assert name in err and HEX not in out + err


def test_hashes_that_are_not_credentials_still_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p")
    (root / "hashes.py").write_text(f'EXPECTED_MD5 = "{HEX}"\ncache_key = "{HEX}"\nsha = {{"file": "{HEX}"}}\n')
    monkeypatch.chdir(root)
    code, _out, err = run_cli(["bundle", "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
