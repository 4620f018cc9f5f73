"""Test isolation: every test gets its own kagglekit home, HOME and no Kaggle credentials.

Fixtures that start the emulator live in tests/fixtures_emulator.py (loaded below),
so a test that needs Kaggle talks to a real server over HTTP, never to a mock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_emulator"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLEKIT_HOME", str(home / "kagglekit-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or (name.startswith("KAGGLEKIT_") and name != "KAGGLEKIT_HOME"):
            monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return home
