"""A project's requirements against Kaggle's image: what is there, what is at another version, what is missing.

Requirements come from ``requirements.txt`` (``-r`` includes followed) or ``[project].dependencies`` in
pyproject.toml, or the files the ``requirements`` setting names. Kaggle's image is the dated package list
shipped in ``kagglekit/data/kaggle-image-packages.txt`` (the CPU image's ``pip freeze``, Python 3.12; the
GPU image carries CUDA builds of the same torch/jax/tensorflow). Markers are evaluated for Kaggle's
platform (CPython 3.12, Linux x86_64), not for this machine. Uses ``packaging``, the library pip itself
uses for names, versions and specifiers.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kagglekit.errors import ConfigError

IMAGE_FILE = "kaggle-image-packages.txt"
KAGGLE_PYTHON = "3.12"
# Kaggle's environment for PEP 508 markers (python_version, sys_platform, ...).
KAGGLE_MARKER_ENV: dict[str, str] = {
    "implementation_version": f"{KAGGLE_PYTHON}.0", "platform_release": "", "platform_version": "",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
    "python_version": KAGGLE_PYTHON, "python_full_version": f"{KAGGLE_PYTHON}.0", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
}
OK, MISMATCH, MISSING = "ok", "mismatch", "missing"


@dataclasses.dataclass(frozen=True)
class Req:
    text: str  # as written (without comments)
    name: str  # canonical
    requirement: Requirement
    origin: str  # "requirements.txt:3"


@dataclasses.dataclass(frozen=True)
class Verdict:
    req: Req
    state: str  # ok | mismatch | missing
    image_version: str | None

    @property
    def needs_install(self) -> bool:
        return self.state != OK

    def describe(self) -> str:
        if self.state == OK:
            return f"{self.req.text}: in the image ({self.image_version})"
        if self.state == MISMATCH:
            return f"{self.req.text}: the image has {self.image_version}"
        return f"{self.req.text}: not in the image"


@dataclasses.dataclass(frozen=True)
class Image:
    packages: dict[str, str]  # canonical name -> version
    source: str  # the header line that says where and when the list comes from


@dataclasses.dataclass(frozen=True)
class DepsReport:
    source: str  # where the requirements were read ("requirements.txt", "pyproject.toml [project]...", "none")
    verdicts: list[Verdict]
    image: Image
    skipped: list[str]  # lines that were not requirements kagglekit can check (options, URLs, markers)

    @property
    def to_install(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.needs_install]

    def heading(self) -> str:
        """The first line of ``deps check``: what was read, against which image list."""
        if self.verdicts or self.skipped:
            return f"Requirements from {self.source}, against Kaggle's image ({self.image.source}):"
        if self.source.startswith("no "):
            return f"Nothing to check against Kaggle's image: {self.source}."
        return f"Nothing to check against Kaggle's image: {self.source} lists no requirements."

    def summary(self) -> str:
        text = self._summary()
        if self.skipped:
            text += f" ({len(self.skipped)} line(s) not checked: `kagglekit deps check` lists them)"
        return text

    def _summary(self) -> str:
        if not self.verdicts:
            return (f"requirements: none ({self.source})" if self.source.startswith("no ")
                    else f"requirements: none listed in {self.source}")
        need = self.to_install
        if not need:
            return f"requirements ({self.source}): all {len(self.verdicts)} already in Kaggle's image"
        missing = [v.req.text for v in need if v.state == MISSING]
        other = [f"{v.req.text} (image: {v.image_version})" for v in need if v.state == MISMATCH]
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"other version {', '.join(other)}"] if other else [])
        return f"requirements ({self.source}): {len(self.verdicts) - len(need)} in Kaggle's image, " + "; ".join(parts)


def load_image() -> Image:
    """Kaggle's image package list (package data)."""
    text = resources.files("kagglekit").joinpath("data", IMAGE_FILE).read_text(encoding="utf-8")
    packages: dict[str, str] = {}
    header = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            if not header and "commit" in line:  # "..., at commit <40 hex> (2026-06-17).": 12 hex say which
                header = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{28}\b", r"\1", line.lstrip("# ")).rstrip(".")
            continue
        if "==" in line:
            name, _, version = line.partition("==")
            packages[canonicalize_name(name)] = version.strip()
    return Image(packages, header or "kagglekit/data/" + IMAGE_FILE)


def _parse_lines(path: Path, root: Path, seen: set[Path], skipped: list[str]) -> list[Req]:
    out: list[Req] = []
    if path in seen:
        return out
    seen.add(path)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"Cannot read requirements file {rel}: {exc.strerror}.") from None
    joined: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(lines, 1):
        if not buf:
            start = n
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        joined.append((start, buf + raw))
        buf = ""
    for n, raw in joined:
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "-r", "--requirement=")):
            target = re.sub(r"^(-r|--requirement)[ =]?", "", line).strip()
            out += _parse_lines((path.parent / target).resolve(), root, seen, skipped)
            continue
        if line.startswith("-"):
            skipped.append(f"{rel}:{n}: {line} (pip option: not checked)")
            continue
        req = _req(line, f"{rel}:{n}", skipped)
        if req is not None:
            out.append(req)
    return out


_URL_LINE = re.compile(r"^(?:git|hg|svn|bzr)\+|^[a-z]+://|^\.{0,2}/|\.whl$|\.tar\.gz$|\.zip$", re.IGNORECASE)


def _req(text: str, origin: str, skipped: list[str]) -> Req | None:
    """The requirement on a line; None (listed in ``skipped``) for URLs and paths, which cannot be checked."""
    if _URL_LINE.search(text):
        skipped.append(f"{origin}: {text} (a URL or path: not checked, not installed by kagglekit)")
        return None
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{origin}: {text!r} is not a requirement pip understands: {exc}.",
                          hint="Fix the line (e.g. 'name>=1.2'), or name another file with the `requirements` "
                               "setting.") from None
    if requirement.url:
        skipped.append(f"{origin}: {text} (installs from a URL: not checked, not installed by kagglekit)")
        return None
    return Req(text, canonicalize_name(requirement.name), requirement, origin)


def read_requirements(root: Path, files: tuple[str, ...] = ()) -> tuple[str, list[Req], list[str]]:
    """(where they came from, requirements for Kaggle's platform, lines skipped)."""
    skipped: list[str] = []
    reqs: list[Req] = []
    if files:
        if files == ("none",):
            return "requirements = none", [], []
        for name in files:
            if name == "pyproject":
                reqs += _from_pyproject(root, skipped)
                continue
            path = (root / name).resolve()
            if not path.is_file():
                raise ConfigError(f"The requirements file {name} (setting `requirements`) does not exist in "
                                  f"{root}.", hint="Fix the setting in [tool.kagglekit] or kagglekit.toml.")
            reqs += _parse_lines(path, root.resolve(), set(), skipped)
        source = ", ".join(files)
    elif (root / "requirements.txt").is_file():
        reqs = _parse_lines((root / "requirements.txt").resolve(), root.resolve(), set(), skipped)
        source = "requirements.txt"
    else:
        reqs = _from_pyproject(root, skipped)
        source = "pyproject.toml [project].dependencies" if reqs else "no requirements.txt or [project].dependencies"
    kept: list[Req] = []
    for r in reqs:
        if r.requirement.marker is not None and not r.requirement.marker.evaluate(KAGGLE_MARKER_ENV):
            skipped.append(f"{r.origin}: {r.text} (its marker excludes Kaggle's Python {KAGGLE_PYTHON} on Linux)")
            continue
        kept.append(r)
    return source, kept, skipped


def _from_pyproject(root: Path, skipped: list[str]) -> list[Req]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}.") from None
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list):
        raise ConfigError("pyproject.toml: [project].dependencies must be a list of strings.")
    out = [_req(str(d), f"pyproject.toml [project].dependencies[{i}]", skipped) for i, d in enumerate(deps)]
    return [r for r in out if r is not None]


def _matches(req: Requirement, version: str) -> bool:
    base = version.split("+", 1)[0]
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    if req.specifier.contains(parsed, prereleases=True):
        return True
    # "torch==2.10.0" is met by the image's "2.10.0+cpu" (a local build of that version)
    return req.specifier.contains(Version(base), prereleases=True) if base != version else False


def check(root: Path, files: tuple[str, ...] = (), image: Image | None = None) -> DepsReport:
    """Compare the project's requirements with Kaggle's image."""
    image = image or load_image()
    source, reqs, skipped = read_requirements(root, files)
    verdicts = []
    for r in reqs:
        have = image.packages.get(r.name)
        if have is None:
            verdicts.append(Verdict(r, MISSING, None))
        else:
            verdicts.append(Verdict(r, OK if _matches(r.requirement, have) else MISMATCH, have))
    return DepsReport(source, verdicts, image, skipped)


def install_lines(report: DepsReport) -> list[str]:
    """The requirement lines the kernel must install (missing or at another version), as pip takes them."""
    return [str(v.req.requirement) for v in report.to_install]
