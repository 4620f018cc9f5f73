"""Issue 10, item 10: a corrupt, truncated or foreign ledger file is explained, and needs-no-history commands work."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from kagglekit import paths
from kagglekit.ledger import Ledger
from tests.audit_helpers import assert_clean_failure, run_cli, write_project


def corrupt(path: Path) -> None:
    path.write_bytes(b"this is not SQLite at all \x00\xff" * 200)


def truncated(path: Path) -> None:
    with Ledger(path) as ledger:
        for v in range(1, 400):
            ledger.record_push("demo@local", "demo/k", v, mode="test", accelerator="cpu", machine_shape="None",
                               bundle_hash="h" * 64, git_commit="c" * 40, git_dirty=False,
                               message="m" * 200, parent_version=None, resume_from=None, overrides={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (name TEXT, minutes INTEGER)")
    conn.execute("INSERT INTO recipes VALUES ('soup', 30)")
    conn.commit()
    conn.close()


BREAKERS = {"corrupt": corrupt, "truncated": truncated, "foreign": foreign}


@pytest.fixture(params=sorted(BREAKERS))
def broken_ledger(request: pytest.FixtureRequest) -> Path:
    path = paths.ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    BREAKERS[request.param](path)
    return path


def test_history_commands_explain_a_broken_ledger(broken_ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = broken_ledger.read_bytes()
    code, _out, err = run_cli(["runs"], capsys)
    assert_clean_failure(code, err, 1)
    assert str(broken_ledger) in err and "mv " in err and "ledger" in err
    assert broken_ledger.read_bytes() == before  # nothing was written into someone else's file


def test_commands_without_history_still_work(broken_ledger: Path, emulator: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(write_project(tmp_path / "p"))
    code, out, err = run_cli(["bundle"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["push", "--dry-run", "--cpu"], capsys)
    assert code == 0, err
    assert "Dry run" in out
    monkeypatch.setenv("KAGGLE_USERNAME", C.DEMO_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", C.DEMO_KEY)
    emulator.push("print('hi')", slug="seen-run")
    emulator.wait_for_status(C.DEMO_USERNAME, "seen-run")
    code, out, err = run_cli(["--endpoint", emulator.url, "status", "demo/seen-run"], capsys)
    assert code == 0, err
    assert "COMPLETE" in out.upper()
    assert "ledger" in err and str(broken_ledger) in err  # a warning says why nothing was recorded
