"""Issue 10, items 6 and 14: push failures that mislead (resume of nothing, silent low quota, cut answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from tests.audit_helpers import assert_clean_failure, run_cli, write_project

HOUR = 3600


@pytest.fixture
def as_demo(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KAGGLE_USERNAME", C.DEMO_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", C.DEMO_KEY)
    monkeypatch.setenv("KAGGLEKIT_ENDPOINT", emulator.url)
    return emulator


def test_resume_of_a_never_pushed_kernel_says_so(as_demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(write_project(tmp_path / "p", kernel="never-pushed"))
    code, _out, err = run_cli(["push", "--cpu", "--resume"], capsys)
    assert_clean_failure(code, err, 5)
    assert "403" not in err and "refused access" not in err
    assert "never-pushed" in err and "nothing to resume" in err
    assert "without --resume" in err


def test_strict_push_with_little_quota_and_no_history_is_refused(
        as_demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    as_demo.control("config", {"gpu_quota_seconds": 30 * HOUR})
    as_demo.control("usage", {"username": C.DEMO_USERNAME, "kind": "gpu", "seconds": 30 * HOUR - 16 * 60})
    monkeypatch.chdir(write_project(tmp_path / "p", kernel="no-history"))
    code, _out, err = run_cli(["push", "--gpu", "--strict"], capsys)
    assert_clean_failure(code, err, 6)
    assert "16.0 min" in err and "no complete" in err
    assert as_demo.requests("rpc") and not [r for r in as_demo.requests("rpc") if "SaveKernel" in r["path"]]
    # Without --strict it is a warning, and the push goes ahead.
    code, _out, err = run_cli(["push", "--gpu"], capsys)
    assert code == 0, err
    assert "Warning:" in err and "16.0 min" in err
