"""Wheels for Kaggle's platform, resolved on this machine: ``kagglekit deps vendor`` and ``push --no-internet``.

pip downloads with its platform options (CPython 3.12, ``manylinux2014_x86_64`` up to
``manylinux_2_35_x86_64``, glibc 2.35 measured on Kaggle's image, docs/kaggle-prod-behaviour.md §10),
``--only-binary=:all:`` and ``--no-deps``; kagglekit walks each wheel's ``Requires-Dist`` itself so that
what Kaggle's image already satisfies (torch, numpy, nvidia-*: gigabytes) is never downloaded. A
requirement without a wheel for that platform falls back to its sdist built here into a wheel, which is
kept only if it is pure Python (``py3-none-any``); otherwise the error names it and the options.
The result is cached per requirement set under ``.kagglekit/wheels/<key>/``: unchanged requirements
need no network and, content-addressed, upload nothing.
"""

from __future__ import annotations

import dataclasses
import email.parser
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from kagglekit.deps import KAGGLE_MARKER_ENV, KAGGLE_PYTHON, Image
from kagglekit.errors import DependencyError

PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_31_x86_64",
             "manylinux_2_34_x86_64", "manylinux_2_35_x86_64", "linux_x86_64")
CACHE_DIR = ".kagglekit/wheels"
DONE_FILE = "vendored.json"
LOG_TAIL = 12


@dataclasses.dataclass(frozen=True)
class VendorResult:
    folder: Path  # holds wheels/ (what the dataset gets)
    wheels: list[str]
    skipped_in_image: list[str]  # dependencies Kaggle's image already satisfies
    built: list[str]  # pure-Python wheels built here from sdists
    cached: bool


def cache_key(lines: list[str]) -> str:
    text = "\n".join(sorted(lines)) + f"\n{KAGGLE_PYTHON}\n" + "\n".join(PLATFORMS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          capture_output=True, text=True, errors="replace")


def _platform_args() -> list[str]:
    out = ["--only-binary=:all:", "--python-version", KAGGLE_PYTHON, "--implementation", "cp",
           "--abi", "cp312", "--abi", "abi3", "--abi", "none"]
    for p in PLATFORMS:
        out += ["--platform", p]
    return out


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    lines = ((proc.stdout or "") + (proc.stderr or "")).rstrip().splitlines()
    return "\n".join("    " + line for line in lines[-LOG_TAIL:])


def _requires(wheel: Path, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """The wheel's dependencies on Kaggle's platform, with those of the ``extras`` asked for (``pkg[extra]``)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if name is None:
            return []
        meta = email.parser.Parser().parsestr(zf.read(name).decode("utf-8", "replace"))
    out = []
    for text in meta.get_all("Requires-Dist") or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**KAGGLE_MARKER_ENV, "extra": extra})
                                     for extra in ("", *sorted(extras))):
            req.marker = None
            out.append(req)
    return out


def _download_one(req: Requirement, dest: Path, build_dir: Path) -> tuple[Path, bool]:
    """One wheel for Kaggle's platform (no dependencies); (its path, built here from an sdist)."""
    before = set(dest.iterdir())
    proc = _pip(["download", "--no-deps", "--dest", str(dest), *_platform_args(), str(req)])
    if proc.returncode == 0:
        new = [p for p in set(dest.iterdir()) - before if p.suffix == ".whl"]
        if new:
            return new[0], False
        return _existing(req, dest), False
    # No wheel for Kaggle's platform: an sdist built here is fine if it is pure Python.
    sdist_dir = build_dir / canonicalize_name(req.name)
    sdist_dir.mkdir(parents=True, exist_ok=True)
    built = _pip(["wheel", "--no-deps", "--wheel-dir", str(sdist_dir), "--no-binary", ":all:", str(req)])
    wheels = list(sdist_dir.glob("*.whl")) if built.returncode == 0 else []
    if wheels:
        _, _, _, tags = parse_wheel_filename(wheels[0].name)
        if all(t.abi == "none" and t.platform == "any" for t in tags):
            target = dest / wheels[0].name
            shutil.move(str(wheels[0]), target)
            return target, True
        raise DependencyError(
            f"{req} has no wheel for Kaggle's platform (CPython {KAGGLE_PYTHON}, manylinux x86_64), and its "
            f"source builds into a platform-specific wheel here ({wheels[0].name}) that would not load there.",
            "Options: pin a version that publishes manylinux wheels for cp312; turn internet on (deps = "
            "\"install\") so Kaggle builds it; or build the wheel on Kaggle's image and add it as a dataset.")
    raise DependencyError(
        f"{req} has no wheel for Kaggle's platform (CPython {KAGGLE_PYTHON}, manylinux x86_64) and no source "
        f"pip could build here.\n  pip said:\n{_tail(proc)}",
        "Options: check the name and version (pip download it yourself); pin a version with cp312 manylinux "
        "wheels; or turn internet on (deps = \"install\") so the kernel installs it from PyPI.")


def _existing(req: Requirement, dest: Path) -> Path:
    for p in dest.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(p.name)
        if name == canonicalize_name(req.name) and req.specifier.contains(version, prereleases=True):
            return p
    raise DependencyError(f"pip reported {req} downloaded but no wheel for it is in {dest}.")


def _in_image(req: Requirement, image: Image) -> bool:
    have = image.packages.get(canonicalize_name(req.name))
    if have is None:
        return False
    try:
        v = Version(have)
    except ValueError:
        return False
    return req.specifier.contains(v, prereleases=True) or req.specifier.contains(
        Version(have.split("+", 1)[0]), prereleases=True)


def vendor(lines: list[str], root: Path, image: Image, *, refresh: bool = False) -> VendorResult:
    """Wheels for ``lines`` (and their dependencies the image lacks) in ``root/.kagglekit/wheels/<key>/wheels``."""
    folder = root / CACHE_DIR / cache_key(lines)
    done = folder / DONE_FILE
    if done.is_file() and not refresh:
        info = json.loads(done.read_text())
        return VendorResult(folder, info["wheels"], info["skipped_in_image"], info["built"], cached=True)
    if folder.exists():
        shutil.rmtree(folder)
    wheels_dir = folder / "wheels"
    wheels_dir.mkdir(parents=True)
    queue: deque[Requirement] = deque(Requirement(line) for line in lines)
    seen: dict[str, Path] = {}
    extras_done: dict[str, set[str]] = {}
    skipped: list[str] = []
    built: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kagglekit-build-") as tmp:
        while queue:
            req = queue.popleft()
            key = canonicalize_name(req.name)
            if key in seen:
                _, version, _, _ = parse_wheel_filename(seen[key].name)
                if not req.specifier.contains(version, prereleases=True):
                    raise DependencyError(
                        f"Two requirements on {req.name} disagree: {req} does not accept the {version} chosen "
                        "for another requirement.", "Pin one version of it in your requirements.")
                more = set(req.extras) - extras_done[key]
                if more:  # the same package, now with extras: their dependencies too
                    extras_done[key] |= more
                    queue.extend(_requires(seen[key], frozenset(more)))
                continue
            if str(req) not in lines and _in_image(req, image):
                skipped.append(str(req))
                continue
            wheel, from_source = _download_one(req, wheels_dir, Path(tmp))
            seen[key] = wheel
            extras_done[key] = set(req.extras)
            if from_source:
                built.append(wheel.name)
            queue.extend(_requires(wheel, frozenset(req.extras)))
    names = sorted(p.name for p in wheels_dir.glob("*.whl"))
    done.write_text(json.dumps({"requirements": lines, "wheels": names, "skipped_in_image": sorted(set(skipped)),
                                "built": built}, indent=1))
    return VendorResult(folder, names, sorted(set(skipped)), built, cached=False)
