"""Small builders shared by the tests that drive the client against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

from kagglekit.constants import DEMO_USERNAME


def make_kernel(folder: Path, slug: str, script: str, machine_shape: str | None = None) -> Path:
    """A kernel folder as `kaggle kernels push -p` takes it: kernel-metadata.json + main.py."""
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {"id": f"{DEMO_USERNAME}/{slug}", "title": slug.replace("-", " ").title(),
                               "code_file": "main.py", "language": "python", "kernel_type": "script",
                               "enable_internet": False}
    if machine_shape is not None:
        meta["machine_shape"] = machine_shape
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    (folder / "main.py").write_text(script)
    return folder
