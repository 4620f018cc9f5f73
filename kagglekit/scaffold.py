"""``kagglekit init``: render ``templates/project/`` into a ready-to-run training project.

Template files ending in ``.jinja`` are rendered (strict Jinja2) with the suffix dropped;
other files are copied. A leading ``dot_`` becomes ``.`` (``dot_gitignore`` -> ``.gitignore``)
so the template folder's own ignore files never act on kagglekit's repository or wheel.

A user's file is never overwritten: into a non-empty folder ``init`` refuses unless
``force``, and even then an existing file that differs is kept and the template's
version is written beside it as ``<file>.new``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from kagglekit import __version__
from kagglekit.constants import MIN_SLUG_LENGTH, MIN_TITLE_LENGTH
from kagglekit.errors import ConfigError, KagglekitError
from kagglekit.paths import write_bytes_atomic
from kagglekit.settings import slugify, title_from_slug
from kagglekit.templating import render, templates_dir

TEMPLATE = "project"
NEW_SUFFIX = ".new"
MAX_SLUG_LENGTH = 50
_REF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class InitResult:
    """What ``init_project`` did, as paths relative to ``dest``."""

    dest: Path
    kernel: str  # "owner/slug", or "slug" when the owner is filled in at push
    title: str
    written: list[str]  # new files
    unchanged: list[str]  # already there with exactly the template's content
    skipped: list[str]  # already there and different: kept as they are
    new_files: list[str]  # the template's version of each skipped file (<file>.new)


def _split_ref(ref: str, option: str) -> tuple[str, str]:
    owner, sep, slug = ref.partition("/")
    if not sep or not _REF_PART.match(owner) or not _REF_PART.match(slug) or "/" in slug:
        raise ConfigError(f"{option} {ref!r} is not of the form owner/slug.",
                          hint=f"Write it as on Kaggle's URL, e.g. {option} alice/my-dataset.")
    return owner, slug


def _names(dest: Path, name: str | None, kernel: str | None) -> tuple[str | None, str, str]:
    """(owner or None, slug, title), checked against Kaggle's rules so the first push succeeds."""
    owner = None
    if kernel and "/" in kernel:
        owner, slug = _split_ref(kernel, "--kernel")
    else:
        slug = kernel or slugify(name or dest.resolve().name)[:MAX_SLUG_LENGTH].strip("-")
    if kernel and slugify(slug) != slug:
        raise ConfigError(f"--kernel slug {slug!r} is not a Kaggle slug (lower-case letters, digits, '-').",
                          hint=f"Use --kernel {owner + '/' if owner else ''}{slugify(slug) or 'my-project'}.")
    title = name.strip() if name else title_from_slug(slug)
    if len(slug) < MIN_SLUG_LENGTH or len(title) < MIN_TITLE_LENGTH:
        raise ConfigError(
            f"The kernel slug {slug!r} / title {title!r} is too short: Kaggle needs at least "
            f"{MIN_SLUG_LENGTH} characters.",
            hint="Pass a longer --name (or --kernel owner/slug).",
        )
    if slugify(title) != slug:
        raise ConfigError(
            f"The title {title!r} resolves to the slug {slugify(title)!r}, not {slug!r}; Kaggle derives a "
            "kernel's URL from its title, so they must agree.",
            hint=f"Pass a --name whose slug is {slug!r}, or leave --name out.",
        )
    return owner, slug, title


def _target_name(relative: Path) -> Path:
    parts = ["." + p.removeprefix("dot_") if p.startswith("dot_") else p for p in relative.parts]
    if parts[-1].endswith(".jinja"):
        parts[-1] = parts[-1][: -len(".jinja")]
    return Path(*parts)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(path: Path, content: bytes, mode: int) -> None:
    """Atomically, with the permissions a plain ``open()`` would give (mkstemp's are 0600)."""
    write_bytes_atomic(path, content)
    os.chmod(path, mode)


def render_project(context: dict[str, object]) -> dict[Path, bytes]:
    """Every file of the project template, rendered: {relative path: content}."""
    root = templates_dir() / TEMPLATE
    files: dict[Path, bytes] = {}
    for source in sorted(root.rglob("*")):
        relative = source.relative_to(root)
        if not source.is_file() or "__pycache__" in relative.parts or source.suffix == ".pyc":
            continue
        if source.name.endswith(".jinja"):
            content = render(f"{TEMPLATE}/{relative.as_posix()}", **context).encode("utf-8")
        else:
            content = source.read_bytes()
        files[_target_name(relative)] = content
    return files


def init_project(dest: Path, *, name: str | None = None, kernel: str | None = None,
                 dataset: str | None = None, force: bool = False) -> InitResult:
    """Write the project template into ``dest``; never overwrite a file that is already there.

    :raises KagglekitError: ``dest`` is a file, or a non-empty folder and ``force`` is off.
    :raises ConfigError: a malformed ``--kernel``/``--dataset``, or a name Kaggle would refuse.
    """
    if dest.exists() and not dest.is_dir():
        raise KagglekitError(f"{dest} exists and is not a folder.", hint="Choose a new folder name.")
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in dest.iterdir()) if dest.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:10]) + (f" and {len(present) - 10} more" if len(present) > 10 else "")
        raise KagglekitError(
            f"{dest} is not empty ({shown}).",
            hint="Choose an empty or new folder, or add --force: existing files are kept and the "
                 f"template's version of each is written beside it as <file>{NEW_SUFFIX}.",
        )
    owner, slug, title = _names(dest, name, kernel)
    if dataset:
        _split_ref(dataset, "--dataset")
    context: dict[str, object] = {
        "title": title, "slug": slug, "kernel_owner": owner,
        "kernel": f"{owner}/{slug}" if owner else slug, "dataset": dataset,
        "kagglekit_version": __version__,
    }
    mode = 0o666 & ~_umask()
    written: list[str] = []
    unchanged: list[str] = []
    skipped: list[str] = []
    new_files: list[str] = []
    for relative, content in render_project(context).items():
        target = dest / relative
        if target.is_dir():
            skipped.append(relative.as_posix())
            continue
        if not target.exists():
            _write(target, content, mode)
            written.append(relative.as_posix())
            continue
        if target.read_bytes() == content:
            unchanged.append(relative.as_posix())
            continue
        skipped.append(relative.as_posix())
        beside = target.with_name(target.name + NEW_SUFFIX)
        if beside.exists() and beside.read_bytes() != content:
            continue  # a <file>.new of the user's own: leave it too
        if not beside.exists():
            _write(beside, content, mode)
        new_files.append(beside.relative_to(dest).as_posix())
    return InitResult(dest=dest, kernel=str(context["kernel"]), title=title, written=written,
                      unchanged=unchanged, skipped=skipped, new_files=new_files)
