"""``python -m kagglekit.emulator serve --host 127.0.0.1 --port N|0 --data-dir DIR [--ready-file F]``.

Serves in the foreground and prints its URL and ready-to-paste environment variables.
``--ready-file`` gets ``{"url", "pid", "data_dir"}`` (written atomically) once the
server answers, so a parent process (``kagglekit emulator start``) can wait for it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any


def shell_env(url: str) -> str:
    from kagglekit.emulator.server import demo_env

    shim = Path(__file__).resolve().parent / "shim"
    env = demo_env(url)
    lines = [f"export {k}={v}" for k, v in env.items()]
    lines.append(f"export PYTHONPATH={shim}${{PYTHONPATH:+:$PYTHONPATH}}")
    return "\n".join(lines)


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagglekit.emulator")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the emulator in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--data-dir", required=True, type=Path)
    serve.add_argument("--ready-file", type=Path)
    serve.add_argument("--config", help="JSON object of rule settings (see docs/emulator.md)")
    serve.add_argument("--quiet", action="store_true", help="print only the URL")
    args = parser.parse_args(argv)

    from kagglekit.emulator.server import EmulatorServer

    config = json.loads(args.config) if args.config else None
    server = EmulatorServer(args.data_dir, host=args.host, port=args.port, config=config)
    server.bind()
    url = server.url

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.quiet:
        print(url, flush=True)
    else:
        print(f"kagglekit emulator serving at {url} (data in {args.data_dir})", flush=True)
        print("Point the official kaggle CLI at it (demo account):", flush=True)
        print(shell_env(url), flush=True)
        print("Stop with Ctrl-C.", flush=True)
    if args.ready_file:
        _write_ready(args.ready_file, {"url": url, "pid": os.getpid(), "data_dir": str(args.data_dir)})
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
