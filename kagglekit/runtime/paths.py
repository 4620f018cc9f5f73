"""Where things are inside a Kaggle kernel (standard library only).

The kaggle root is ``/kaggle``, or ``$KAGGLE_KERNEL_ROOT`` when set (the emulator sets it
when it cannot mount at /kaggle). Input mounts moved from the flat
``/kaggle/input/<slug>`` to ``/kaggle/input/{datasets,competitions,notebooks,models}/...``
and both still occur, so ``input_path`` probes instead of hard-coding either.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_KERNEL_ROOT = "KAGGLE_KERNEL_ROOT"
ENV_PROJECT_DIR = "KAGGLEKIT_PROJECT_DIR"

_KINDS = {
    "dataset": "dataset", "datasets": "dataset",
    "competition": "competition", "competitions": "competition",
    "notebook": "notebook", "notebooks": "notebook", "kernel": "notebook", "kernels": "notebook",
    "model": "model", "models": "model",
}


def kaggle_root() -> Path:
    return Path(os.environ.get(ENV_KERNEL_ROOT) or "/kaggle")


def working_dir() -> Path:
    """``/kaggle/working``: the run's output (kept, 20 GB budget)."""
    return kaggle_root() / "working"


def input_dir() -> Path:
    return kaggle_root() / "input"


def temp_dir() -> Path:
    """``/kaggle/temp``: scratch space that is not saved with the output."""
    return kaggle_root() / "temp"


def project_dir() -> Path | None:
    """Where the bundled project was extracted (None outside a kagglekit kernel).

    The working directory is /kaggle/working, so read project files relative to this.
    """
    value = os.environ.get(ENV_PROJECT_DIR)
    return Path(value) if value else None


def _candidates(kind: str, ref: str) -> list[Path]:
    base = input_dir()
    parts = [p for p in ref.strip("/").split("/") if p]
    if not parts:
        raise ValueError(f"empty {kind} reference")
    if kind == "competition":
        slug = parts[-1]
        return [base / "competitions" / slug, base / slug]
    if kind in ("dataset", "notebook"):
        if len(parts) == 1:
            owner, slug = None, parts[0]
        else:
            owner, slug = parts[0], parts[1]  # a third part (a version) is not in the mount path
        sub = "datasets" if kind == "dataset" else "notebooks"
        out = []
        if owner:
            out += [base / sub / owner / slug]
        else:
            out += sorted((base / sub).glob(f"*/{slug}"))
        out += [base / slug]
        if owner:
            out += [base / "d" / owner / slug, base / owner / slug]
        return out
    # model: owner/model/framework/variation[/version]
    if len(parts) < 4:
        raise ValueError(f"model reference {ref!r}: expected owner/model/framework/variation[/version]")
    owner, rest = parts[0], parts[1:]
    # Handles spell the framework in mixed case (google/gemma/pyTorch/2b); mounts use lower case.
    spellings = [rest, [rest[0], rest[1].lower(), *rest[2:]]]
    folders: list[Path] = []
    for tail in spellings:
        for folder in (base / "models" / owner / Path(*tail), base / Path(*tail)):
            if folder not in folders:
                folders.append(folder)
    return folders


def _latest_version(folder: Path) -> Path | None:
    """A model variation folder holds numbered version folders; pick the highest."""
    try:
        versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    except OSError:
        return None
    return max(versions, key=lambda p: int(p.name)) if versions else None


def input_path(kind: str, ref: str, filename: str | None = None) -> Path:
    """Resolve a dataset / competition / notebook / model input across Kaggle's mount layouts.

    ``kind``: "dataset", "competition", "notebook" (kernel output) or "model";
    ``ref``: "owner/slug" (dataset, notebook), "slug" (competition) or
    "owner/model/framework/variation[/version]" (model). With ``filename``, the first
    mount that holds that file wins and the file's path is returned.
    Raises FileNotFoundError saying where it looked.
    """
    norm = _KINDS.get(kind.lower())
    if norm is None:
        raise ValueError(f"unknown input kind {kind!r}: use dataset, competition, notebook or model")
    candidates = _candidates(norm, ref)
    if norm == "model" and len([p for p in ref.strip("/").split("/") if p]) == 4:
        candidates = [v for c in candidates for v in (_latest_version(c),) if v is not None] + candidates
    for folder in candidates:
        target = folder / filename if filename else folder
        if target.exists():
            return target
    # Last resort: the layout changed again; look for a folder of that name a few levels down
    # (for a model: its model folder holding the framework/variation[/version] path, never the bare root).
    parts = [p for p in ref.strip("/").split("/") if p]
    slug = parts[1] if norm == "model" else parts[-1]
    found: Path | None = None
    if norm == "model":
        variation = _search(input_dir(), slug, "/".join([parts[2].lower(), *parts[3:]]), depth=4)
        if variation is not None:
            folder = (_latest_version(variation) or variation) if len(parts) == 4 else variation
            target = folder / filename if filename else folder
            found = target if target.exists() else None
    else:
        found = _search(input_dir(), slug, filename, depth=4)
    if found is not None:
        return found
    looked = ", ".join(str(c) for c in candidates[:6])
    what = f"{filename!r} of {kind} {ref!r}" if filename else f"{kind} {ref!r}"
    raise FileNotFoundError(
        f"{what} is not mounted: looked in {looked} and searched {input_dir()} for a folder named {slug!r}. "
        "Is it listed in the kernel's sources (datasets / competitions / kernels / models in the settings)?")


def _search(base: Path, name: str, filename: str | None, depth: int) -> Path | None:
    level = [base]
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if child.name == name:
                    target = child / filename if filename else child
                    if target.exists():
                        return target
                nxt.append(child)
        level = nxt
    return None
