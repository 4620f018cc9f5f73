"""``python -m kagglekit.emulator serve --host 127.0.0.1 --port N|0 --data-dir DIR [--ready-file F]``.

Serves in the foreground and prints its URL and ready-to-paste environment variables.
``--ready-file`` gets ``{"url", "pid", "data_dir"}`` (written atomically) once the
server answers, so a parent process (``kagglekit emulator start``) can wait for it.
``--config JSON`` (or ``KAGGLEKIT_EMULATOR_CONFIG``) sets rules (docs/emulator.md). A bind beyond
loopback (``--host 0.0.0.0``) warns and protects the control routes with a token
(``--control-token`` / ``KAGGLEKIT_EMULATOR_CONTROL_TOKEN``, else a random one, printed).
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

CONFIG_ENV = "KAGGLEKIT_EMULATOR_CONFIG"
TOKEN_ENV = "KAGGLEKIT_EMULATOR_CONTROL_TOKEN"


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
    serve.add_argument("--config", default=os.environ.get(CONFIG_ENV),
                       help=f"JSON object of rule settings (see docs/emulator.md); default ${CONFIG_ENV}")
    serve.add_argument("--control-token", default=os.environ.get(TOKEN_ENV),
                       help=f"token the control routes require (default ${TOKEN_ENV}; a random one on a "
                            "non-loopback bind)")
    serve.add_argument("--quiet", action="store_true", help="print only the URL")
    args = parser.parse_args(argv)

    from kagglekit.emulator.server import EmulatorServer, is_loopback

    try:
        config = json.loads(args.config) if args.config else None
    except ValueError as exc:
        parser.error(f"--config is not valid JSON: {exc}")
    if config is not None and not isinstance(config, dict):
        parser.error("--config must be a JSON object")
    server = EmulatorServer(args.data_dir, host=args.host, port=args.port, config=config,
                            control_token=args.control_token or None)
    server.bind()
    url = server.url
    if not is_loopback(args.host):
        bar = "!" * 78
        print(f"{bar}\nWARNING: the kagglekit emulator listens on {server.bound_address}, reachable from other "
              f"machines.\nIt runs any pushed code as {os.environ.get('USER', 'this user')}, and it is not a "
              f"security boundary.\nControl routes (/__emulator/...) need the header "
              f"X-Emulator-Token: {server.control_token}\n{bar}", file=sys.stderr, flush=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.quiet:
        print(url, flush=True)
    else:
        print(f"kagglekit emulator listening on {server.bound_address}, serving at {url} "
              f"(data in {args.data_dir})", flush=True)
        print("Point the official kaggle CLI at it (demo account):", flush=True)
        print(shell_env(url), flush=True)
        print("Stop with Ctrl-C.", flush=True)
    if args.ready_file:
        _write_ready(args.ready_file, {"url": url, "pid": os.getpid(), "data_dir": str(args.data_dir)})
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
