"""Shared by the issue-10 audit tests: run the real CLI entry point, write a small project."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_main as run_cli
from tests.helpers import write

__all__ = ["assert_clean_failure", "run_cli", "write_project"]


def assert_clean_failure(code: int, err: str, expected: int | tuple[int, ...]) -> None:
    """A documented exit code, an ``Error:`` line, no traceback and no "unexpected" bug report."""
    allowed = (expected,) if isinstance(expected, int) else expected
    assert code in allowed, f"exit {code}, wanted {allowed}: {err}"
    assert "Traceback" not in err, err
    assert "unexpected" not in err.lower(), err


def write_project(root: Path, files: dict[str, str] | None = None, *, kernel: str = "audit-proj",
                  extra_settings: str = "") -> Path:
    """A one-file project: main.py with a Config/running_test toggle, settings in pyproject.toml."""
    root.mkdir(parents=True, exist_ok=True)
    base = {
        "pyproject.toml": f'[tool.kagglekit]\nkernel = "{kernel}"\nentry = "main.py"\n{extra_settings}',
        "main.py": """\
            class Config:
                running_test = True
                n_epoch = 2

            print("ran", Config.running_test, Config.n_epoch)
        """,
    }
    return write(root, {**base, **(files or {})})
