"""Install what Kaggle's image lacks, before the entry point runs (standard library only).

The bundle's config carries ``requirements``: ``{"install": ["pkg==1.2", ...], "wheels": "owner/slug"?}``,
computed on the user's machine against Kaggle's image list (only missing or mismatched requirements).
Online (no ``wheels``): ``pip install`` from PyPI. Offline: ``pip install --no-index --find-links`` the
mounted wheels dataset (either input layout). Either way the time is printed, and a failure stops the
run before the entry with the requirement pip could not meet and the tail of pip's log.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import paths

DEPS_FAILED_EXIT = 4
LOG_TAIL_LINES = 25
_FAILED_FOR = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the requirement|"
    r"Failed building wheel for|Failed to build) ([^\s(]+)", re.IGNORECASE)


class DepsError(Exception):
    """pip could not install the requirements; the message says which and shows pip's log tail."""


def wheels_dir(ref: str) -> Path:
    """The mounted wheels dataset (``owner/slug``) in whichever layout Kaggle used."""
    try:
        root = paths.input_path("dataset", ref)
    except (FileNotFoundError, ValueError) as exc:
        raise DepsError(f"the wheels dataset {ref} is not mounted: {exc}") from None
    nested = root / "wheels"
    return nested if nested.is_dir() else root


def _failed_requirement(output: str, wanted: list[str]) -> str | None:
    for m in _FAILED_FOR.finditer(output):
        name = m.group(1).strip("'\",")
        if name:
            return name
    errors = "\n".join(line.lower() for line in output.splitlines() if line.startswith("ERROR"))
    for req in wanted:
        base = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()
        if base and base in errors:
            return req
    return None


def install(config: dict[str, Any]) -> float:
    """Install ``config["requirements"]``; the seconds it took (0 when there was nothing to do)."""
    spec = config.get("requirements") or {}
    wanted = [str(r) for r in spec.get("install") or []]
    if not wanted:
        return 0.0
    wheels = spec.get("wheels")
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off"]
    how = "from PyPI (internet on)"
    if wheels:
        found = wheels_dir(str(wheels))
        cmd += ["--no-index", "--find-links", str(found)]
        how = f"offline from the wheels in {found}"
    print(f"kagglekit: installing {len(wanted)} requirement(s) Kaggle's image lacks {how}: {', '.join(wanted)}",
          flush=True)
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, *wanted], capture_output=True, text=True, errors="replace")
    seconds = time.monotonic() - t0
    output = (proc.stdout or "") + (proc.stderr or "")
    log = paths.working_dir() / "kagglekit" / "pip-install.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(cmd + wanted) + "\n\n" + output, encoding="utf-8")
    except OSError:
        pass
    if proc.returncode != 0:
        which = _failed_requirement(output, wanted)
        tail = "\n".join(output.rstrip().splitlines()[-LOG_TAIL_LINES:])
        raise DepsError(
            f"pip could not install {which or ', '.join(wanted)} ({how}; exit code {proc.returncode}, "
            f"{seconds:.1f} s).\n--- last lines of pip's log (all of it: {log}) ---\n{tail}")
    target = os.environ.get("PIP_TARGET")
    if target and target not in sys.path:  # pip installed into a target folder (the emulator does this)
        sys.path.insert(0, target)
    importlib.invalidate_caches()
    print(f"kagglekit: installed {', '.join(wanted)} in {seconds:.1f} s", flush=True)
    return seconds
