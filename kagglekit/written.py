"""What kagglekit wrote inside a project, so that no bundle ever ships it.

Two records, because files move and folders get renamed:

* folders kagglekit fills as a whole carry a marker file: ``.kagglekit-bundle`` in a bundle
  output folder (``bundle -o DIR``), ``.kagglekit-manifest.json`` in a pulled output folder;
* single files (``quota --plot`` images, reports and their plots, bundle folders, pulled outputs)
  are listed in the project's ``.kagglekit/written.json``.

The bundle walk leaves out both, and says so in its "left out" list. Without that, ``bundle -o b1``
inside the project is shipped by the next bundle, which grows each time, and two bundles of the
same project differ.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

BUNDLE_MARKER = ".kagglekit-bundle"
OUTPUT_MARKER = ".kagglekit-manifest.json"  # download.PULL_STATE_FILE, written by every pull
MARKERS = (BUNDLE_MARKER, OUTPUT_MARKER)
REGISTRY = ".kagglekit/written.json"
REASON = "written by kagglekit"


def marks_folder(path: str | os.PathLike[str]) -> bool:
    """Whether a folder holds a marker of kagglekit's own output."""
    return any(os.path.isfile(os.path.join(path, m)) for m in MARKERS)


def mark_bundle_folder(folder: Path) -> None:
    """Leave the marker that keeps a bundle output folder out of later bundles."""
    marker = folder / BUNDLE_MARKER
    if not marker.exists():
        with contextlib.suppress(OSError):
            marker.write_text("Written by `kagglekit bundle`: kagglekit never bundles this folder.\n",
                              encoding="utf-8")


def _registry(root: Path) -> Path:
    return root / REGISTRY


def _read(root: Path) -> list[str]:
    try:
        data = json.loads(_registry(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("paths") if isinstance(data, dict) else None
    return [p for p in items if isinstance(p, str)] if isinstance(items, list) else []


def remember(path: Path, root: Path | None = None) -> None:
    """Record that kagglekit wrote ``path`` (a file or folder), if it lies inside a project.

    ``root`` defaults to the project found from the path's folder; outside any project, or on a
    read-only tree, nothing is recorded (the record is a convenience, never a reason to fail).
    """
    target = Path(path).resolve()
    if root is None:
        from kagglekit.settings import find_project_root

        root, config = find_project_root(target.parent if not target.is_dir() else target)
        if config is None:
            root = Path.cwd().resolve()
    root = root.resolve()
    try:
        rel = target.relative_to(root).as_posix()
    except ValueError:
        return
    if rel in ("", ".") or rel.startswith(".kagglekit/"):
        return
    items = _read(root)
    if rel in items:
        return
    from kagglekit.paths import write_text_atomic

    with contextlib.suppress(OSError):
        _registry(root).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(_registry(root), json.dumps({"paths": sorted({*items, rel})}, indent=1) + "\n")


def written_by_kagglekit(root: Path) -> list[Path]:
    """Paths recorded under ``root`` that still exist (for the bundle walk to skip)."""
    out = []
    for rel in _read(root):
        candidate = root / rel
        if candidate.exists():
            out.append(candidate)
    return out
