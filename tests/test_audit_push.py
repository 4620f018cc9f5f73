"""Issue 10, items 6 and 14: push failures that mislead (resume of nothing, silent low quota, cut answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from tests.audit_helpers import assert_clean_failure, run_cli, write_project

HOUR = 3600


def test_resume_of_a_never_pushed_kernel_says_so(as_demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(write_project(tmp_path / "p", kernel="never-pushed"))
    code, _out, err = run_cli(["push", "--cpu", "--resume"], capsys)
    assert_clean_failure(code, err, 5)
    said = err.replace(as_demo.url, "<emulator>")  # hints name the endpoint, whose random port may hold "403"
    assert "403" not in said and "refused access" not in said
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


def test_cut_push_answer_is_checked_and_the_version_recorded(
        as_demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """SaveKernel's answer is cut mid-body: Kaggle did create the version; kagglekit finds it, never re-pushes."""
    monkeypatch.chdir(write_project(tmp_path / "p", kernel="cut-answer"))
    as_demo.control("faults", {"target": "SaveKernel", "times": 1, "cut_after_bytes": 20})
    code, out, err = run_cli(["push", "--cpu", "--test"], capsys)
    assert code == 0, err
    assert "cut" in err and "version 1" in out
    saves = [r for r in as_demo.requests("rpc") if r["path"].endswith("/SaveKernel")]
    assert len(saves) == 1  # no duplicate push
    code, out, err = run_cli(["--json", "runs"], capsys)
    runs = json.loads(out)
    assert [(r["kernel"], r["version"], r["mode"]) for r in runs] == [("demo/cut-answer", 1, "test")]


# The user checks with `status` later, once the new kernel's first moments (403, no run yet) are over: the test
# names them gone, as it no longer spends ~16 s of retry backoff that outlasted them.
@pytest.mark.emulator_config({"new_private_403_seconds": 0, "run_start_delay_seconds": 0})
def test_cut_push_answer_that_cannot_be_checked_says_how_to_check(
        as_demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(write_project(tmp_path / "p", kernel="cut-unknown"))
    monkeypatch.setenv("KAGGLEKIT_RETRY_BACKOFF", "0.01")  # the same retries, without ~16 s of backoff
    as_demo.control("faults", {"target": "SaveKernel", "times": 1, "cut_after_bytes": 20})
    as_demo.control("faults", {"target": "GetKernel", "times": -1, "status": 503})
    code, _out, err = run_cli(["push", "--cpu", "--test"], capsys)
    assert_clean_failure(code, err, 7)
    checks = [r for r in as_demo.requests("rpc") if r["path"].endswith("/GetKernel")]
    assert len(checks) == 1 + 5  # the check used its whole retry budget before giving up
    assert "may have been accepted" in err or "may or may not have been accepted" in err
    assert f"`kagglekit --endpoint {as_demo.url} status demo/cut-unknown`" in err  # pasted, it reaches this server
    assert "Try again" not in err and "try again" not in err.split("Hint:")[-1].split(".")[0]
    as_demo.delete("faults")
    # Once seen, the ledger knows the version.
    code, _out, err = run_cli(["status", "demo/cut-unknown"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["--json", "runs"], capsys)
    assert [(r["kernel"], r["version"]) for r in json.loads(out)] == [("demo/cut-unknown", 1)]
