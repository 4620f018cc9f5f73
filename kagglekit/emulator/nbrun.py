"""Execute a notebook kernel top to bottom (run by path in the kernel's sandbox, never imported).

``python nbrun.py [--require-kernelspec] NOTEBOOK.ipynb EXECUTED.ipynb``: runs every code cell in
order with nbclient and the python3 (ipykernel) kernel in the current directory, echoing each
stream output live to this process's stdout/stderr, so the emulator records it in
Kaggle's log format just as for a script. Exit codes: 0 ok, 1 a cell raised,
2 the notebook could not be read or (``--require-kernelspec``) names no kernel in its
``metadata.kernelspec``, which fails on Kaggle too (kaggle-cli #689; papermill's message).
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def main(argv: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    require_kernelspec = "--require-kernelspec" in argv
    src, dst = [a for a in argv[1:] if a != "--require-kernelspec"][:2]
    try:
        nb = nbformat.read(src, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:
        print(f"The notebook could not be read: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    kernelspec = nb.get("metadata", {}).get("kernelspec") or {}
    if require_kernelspec and not (isinstance(kernelspec, dict) and kernelspec.get("name")):
        print("ValueError: No kernel name found in notebook and no override provided.", file=sys.stderr, flush=True)
        return 2

    class StreamingClient(NotebookClient):  # type: ignore[misc]
        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            kind = msg.get("msg_type")
            content = msg.get("content", {})
            if kind == "stream":
                stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
                stream.write(content.get("text", ""))
                stream.flush()
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text:
                    print(text, flush=True)
            elif kind == "error":
                print(_ANSI.sub("", "\n".join(content.get("traceback", []))), file=sys.stderr, flush=True)
            return super().output(outs, msg, display_id, cell_index)

    import os

    client = StreamingClient(nb, timeout=None, kernel_name="python3", allow_errors=False,
                             resources={"metadata": {"path": os.getcwd()}})
    code = 0
    try:
        client.execute()
    except CellExecutionError as exc:
        ename = getattr(exc, "ename", "") or "Error"
        evalue = getattr(exc, "evalue", "")
        print(f"{ename}: {evalue}", file=sys.stderr, flush=True)
        code = 1
    except Exception as exc:
        print(f"The notebook could not be executed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    with contextlib.suppress(Exception):
        nbformat.write(nb, dst)  # type: ignore[no-untyped-call]
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
