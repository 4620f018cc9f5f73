"""Issue 10, item 11: settings values that used to crash or silently change meaning are clear ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kagglekit.settings import load_project
from tests.audit_helpers import assert_clean_failure, run_cli, write_project

BAD_SETTINGS = [
    "timeout = inf",
    "timeout = -inf",
    "timeout = nan",
    "timeout = " + "9" * 400,
    "timeout = " + "9" * 5000,  # over Python's int-to-str limit: tomllib itself raises ValueError
    'timeout = "' + "9" * 400 + '"',
    'timeout = "' + "9" * 400 + 'h"',
    "timeout = 0.1",
    'timeout = "0.4s"',
    'output-budget = "' + "9" * 400 + 'B"',
    "output-budget = " + "9" * 400,
    'output-budget = "0.4"',
    "output-budget = 1e400",
    'output-budget = "nan"',
    'kernel = "../xxxxx"',
    'kernel = "./xxxxx"',
    'kernel = "a b/xxxxx"',
    'kernel = "al\u00efce/xxxxx"',
]


@pytest.mark.parametrize("line", BAD_SETTINGS)
def test_bad_setting_is_a_config_error_through_the_cli(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p", kernel="fine-kernel")
    text = (root / "pyproject.toml").read_text()
    key = line.split("=")[0].strip()
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(key + " ")) + "\n" + line + "\n"
    (root / "pyproject.toml").write_text(text)
    monkeypatch.chdir(root)
    code, _out, err = run_cli(["bundle"], capsys)
    assert_clean_failure(code, err, 3)
    assert key in err or "is not valid TOML" in err  # tomllib refuses a 5000-digit integer itself


@pytest.mark.parametrize("value", ["inf", "nan", "9" * 400, "0.1", "0s", "1e999"])
def test_bad_timeout_option(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(write_project(tmp_path / "p"))
    code, _out, err = run_cli(["push", "--dry-run", "--cpu", "--timeout", value], capsys)
    assert_clean_failure(code, err, 3)
    assert "--timeout" in err


def test_small_values_that_still_mean_something_are_kept(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", extra_settings='timeout = 1.4\noutput-budget = "1.6"\n')
    settings = load_project(root)
    assert settings.timeout_s == 1 and settings.output_budget_bytes == 1


def test_pyproject_that_is_not_utf8_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p")
    (root / "pyproject.toml").write_bytes(b'[tool.kagglekit]\nkernel = "caf\xe9-kernel"\n')
    monkeypatch.chdir(root)
    code, _out, err = run_cli(["bundle"], capsys)
    assert_clean_failure(code, err, 3)
    assert "pyproject.toml" in err
