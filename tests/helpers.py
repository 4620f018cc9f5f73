"""Small builders shared by the tests that drive the client against the emulator."""

from __future__ import annotations

import http.server
import json
import textwrap
from pathlib import Path

import pytest

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


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``root`` (dedented, folders made); returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``kagglekit ARGS`` through ``cli.main`` (the one error boundary): (exit code, stdout, stderr)."""
    from kagglekit.cli import main

    capsys.readouterr()
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:  # main always exits
        code = -1
    out, err = capsys.readouterr()
    return code, out, err


def reply_json(handler: http.server.BaseHTTPRequestHandler, status: int, data: bytes) -> None:
    """Answer a request of a hand-written test server with a JSON body (what Kaggle's quirks look like)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
