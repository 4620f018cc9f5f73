"""Notebooks as the entry point: ``entry = "train.ipynb"`` pushes a notebook kernel.

The kernel is the project's own notebook with two cells added:

* first, the bundle (the same script a .py entry gets): it unpacks the project, puts it on
  ``sys.path``, moves to /kaggle/working and starts the run manifest, then returns;
* last, a one-line cell that marks the run complete in kagglekit/run.json (a cell that raises
  marks it ``error`` through an IPython hook, and nbclient/Kaggle stop there).

The kernelspec is set to Kaggle's ``python3``. The test flag and ``--set`` work inside cells:
the code cells are joined into one Python source (IPython magics and shell escapes masked, so it
parses), edited by the same AST code as .py files, and split back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kagglekit.errors import BundleError
from kagglekit.testflag import FlagChange

SUFFIX = ".ipynb"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
_BOUNDARY = "# kagglekit-cell-boundary"
_MAGIC = re.compile(r"^([ \t]*)pass  # kagglekit-magic-(\d+)$")
FINISH_CELL = ("# kagglekit: the notebook ran to the end; mark the run complete in kagglekit/run.json\n"
               "from kagglekit_runtime import bootstrap as _kagglekit_bootstrap\n"
               "_kagglekit_bootstrap.finish_notebook()")


def is_notebook(path: str) -> bool:
    return path.lower().endswith(SUFFIX)


def load(rel: str, data: bytes) -> dict[str, Any]:
    """The notebook's JSON (nbformat 4); BundleError when it is not one."""
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{rel} is not a notebook (not UTF-8 JSON: {exc}).",
                          hint="Save it again from Jupyter; kagglekit reads nbformat 4 notebooks.") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
        raise BundleError(f"{rel} is not an nbformat 4 notebook.",
                          hint="Save it from a current Jupyter (nbformat 4).")
    return nb


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def code_cells(nb: Mapping[str, Any]) -> list[int]:
    return [i for i, c in enumerate(nb["cells"]) if isinstance(c, dict) and c.get("cell_type") == "code"]


def as_python(nb: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The code cells joined into one parseable source, and the masked magic lines (to restore)."""
    magics: list[str] = []
    parts = []
    for i in code_cells(nb):
        text = _source(nb["cells"][i])
        whole_cell_magic = text.lstrip().startswith("%%")
        lines = []
        for line in text.split("\n"):
            stripped = line.lstrip()
            if whole_cell_magic or stripped.startswith(("%", "!")) or (stripped.endswith("?") and " " not in stripped):
                indent = line[:len(line) - len(stripped)] if not whole_cell_magic else ""
                lines.append(f"{indent}pass  # kagglekit-magic-{len(magics)}")
                magics.append(line)
            else:
                lines.append(line)
        parts.append("\n".join(lines))
    return ("\n" + _BOUNDARY + "\n").join(parts) + "\n", magics


def cell_of_line(python: str, line: int) -> tuple[int, int]:
    """(code cell number counted from 1, line in that cell) of a line of ``as_python``'s text."""
    cell, start = 1, 1
    for n, text in enumerate(python.split("\n"), start=1):
        if n >= line:
            break
        if text == _BOUNDARY:
            cell, start = cell + 1, n + 1
    return cell, line - start + 1


def put_back(nb: dict[str, Any], python: str, magics: list[str]) -> None:
    """Write an edited ``as_python`` text back into the notebook's code cells."""
    parts = python.removesuffix("\n").split("\n" + _BOUNDARY + "\n")
    indexes = code_cells(nb)
    if len(parts) != len(indexes):
        raise BundleError("Internal error: the notebook's cells could not be split back after the edit.")
    for i, text in zip(indexes, parts, strict=True):
        lines = []
        for line in text.split("\n"):
            m = _MAGIC.match(line)
            lines.append(magics[int(m.group(2))] if m else line)
        nb["cells"][i]["source"] = "\n".join(lines)


def relabel(rel: str, python: str, changes: list[FlagChange]) -> list[FlagChange]:
    """``train.ipynb:12`` -> ``train.ipynb cell 3:2``: where the user sees the line."""
    out = []
    for c in changes:
        if c.file != rel:
            out.append(c)
            continue
        cell, line = cell_of_line(python, c.line)
        out.append(FlagChange(f"{rel} cell {cell}", line, c.name, c.old, c.new))
    return out


def relabel_text(rel: str, python: str, text: str) -> str:
    """The same relabelling inside a message (``train.ipynb:12 assigns ...``)."""
    def sub(m: re.Match[str]) -> str:
        cell, line = cell_of_line(python, int(m.group(1)))
        return f"{rel} cell {cell}:{line}"

    return re.sub(re.escape(rel) + r":(\d+)", sub, text)


def kernel_notebook(nb: Mapping[str, Any], script: str) -> str:
    """The kernel: bundle cell, the project's cells (outputs cleared), finish cell; Kaggle's kernelspec."""
    raw_minor = nb.get("nbformat_minor")
    minor: int = raw_minor if isinstance(raw_minor, int) else 4
    with_ids = minor >= 5

    def code(cell_id: str, text: str, hidden: bool = False) -> dict[str, Any]:
        cell: dict[str, Any] = {"cell_type": "code", "execution_count": None,
                                "metadata": {"kagglekit": cell_id, **({"jupyter": {"source_hidden": True}}
                                                                      if hidden else {})},
                                "outputs": [], "source": text}
        if with_ids:
            cell["id"] = f"kagglekit-{cell_id}"
        return cell

    cells: list[dict[str, Any]] = [code("bundle", script.rstrip("\n"), hidden=True)]
    for n, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict):
            continue
        copy = {k: v for k, v in cell.items() if k not in ("outputs", "execution_count", "attachments")}
        copy["source"] = _source(cell)
        if cell.get("cell_type") == "code":
            copy["outputs"] = []
            copy["execution_count"] = None
        if with_ids and "id" not in copy:
            copy["id"] = f"cell-{n}"
        cells.append(copy)
    cells.append(code("finish", FINISH_CELL))
    metadata = {k: v for k, v in (nb.get("metadata") or {}).items() if k not in ("kernelspec", "language_info")}
    metadata["kernelspec"] = dict(KERNELSPEC)
    metadata["language_info"] = dict(LANGUAGE_INFO)
    out = {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": minor}
    return json.dumps(out, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
