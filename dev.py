#!/usr/bin/env python3
"""Set up and run kagglekit from a fresh clone, with nothing but python3.

    python3 dev.py demo    # the main job: the whole loop against the embedded emulator
    python3 dev.py test    # the test suite (two pytest-xdist workers; KAGGLEKIT_TEST_WORKERS=N or -n N)
    python3 dev.py lint    # ruff + mypy (CI runs this too)

The first run creates ./.venv and installs kagglekit (editable) with its test and
torch extras; later runs reinstall only when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("KAGGLEKIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".kagglekit-installed"


def ensure_venv() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PY.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing kagglekit and its dependencies (first run: about a minute) ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-e", f"{ROOT}[dev,torch]"], check=True)
    STAMP.write_text(digest)


def test_workers(args: list[str]) -> list[str]:
    """Two pytest-xdist workers unless the caller chose (-n N, -p no:xdist): most tests wait on kernels
    and the emulator's delays, so two workers halve the suite's time even on a 2-core machine."""
    if any(a == "-n" or a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in args):
        return []
    return ["-n", os.environ.get("KAGGLEKIT_TEST_WORKERS", "2")]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint"}:
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        return subprocess.call([str(PY), "-m", "kagglekit.demo", *rest])
    if cmd == "test":
        return subprocess.call([str(PY), "-m", "pytest", *test_workers(rest), *rest], cwd=ROOT)
    rc = subprocess.call([str(BIN / "ruff"), "check", "kagglekit", "tests", "bench", "dev.py"], cwd=ROOT)
    return subprocess.call([str(BIN / "mypy")], cwd=ROOT) or rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
