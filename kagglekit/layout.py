"""Where a project's importable code lives: the project root, or ``src/`` (PyPA's src layout).

An installed project (``pip install -e .``) imports ``mypkg`` from ``src/mypkg`` because its
build backend says so. The kernel has no install step, so kagglekit reads the same declaration
and puts that folder on ``sys.path`` (and ``PYTHONPATH``) before the entry point runs:

* setuptools: ``[tool.setuptools] package-dir = {"" = "src"}`` or
  ``[tool.setuptools.packages.find] where = ["src"]`` (``setup.cfg``: ``package_dir = =src``);
* hatch: ``[tool.hatch.build.targets.wheel] packages = ["src/mypkg"]`` (or ``sources = ["src"]``);
* flit: ``[tool.flit.module]``/the module found under ``src/``;
* pdm: ``[tool.pdm.build] package-dir = "src"``;
* none of these: a ``src/`` folder holding a package (a folder with ``__init__.py``) or a module.
"""

from __future__ import annotations

import configparser
import contextlib
import tomllib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any


def _declared_roots(pyproject: dict[str, Any]) -> list[str]:
    tool = pyproject.get("tool") if isinstance(pyproject.get("tool"), dict) else {}
    assert isinstance(tool, dict)
    roots: list[str] = []
    st = tool.get("setuptools")
    if isinstance(st, dict):
        package_dir = st.get("package-dir")
        if isinstance(package_dir, dict) and isinstance(package_dir.get(""), str):
            roots.append(package_dir[""])
        packages = st.get("packages")
        find = packages.get("find") if isinstance(packages, dict) else None
        if isinstance(find, dict) and isinstance(find.get("where"), list):
            roots += [w for w in find["where"] if isinstance(w, str)]
    hatch_wheel = tool.get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {}) \
        if isinstance(tool.get("hatch"), dict) else {}
    if isinstance(hatch_wheel, dict):
        for pkg in hatch_wheel.get("packages", []) or []:
            if isinstance(pkg, str) and "/" in pkg.strip("/"):
                roots.append(str(PurePosixPath(pkg.strip("/")).parent))
        sources = hatch_wheel.get("sources")
        if isinstance(sources, list):
            roots += [s for s in sources if isinstance(s, str)]
        elif isinstance(sources, dict):
            roots += [k for k, v in sources.items() if isinstance(k, str) and v in ("", None)]
    pdm_build = tool.get("pdm", {}).get("build", {}) if isinstance(tool.get("pdm"), dict) else {}
    if isinstance(pdm_build, dict) and isinstance(pdm_build.get("package-dir"), str):
        roots.append(pdm_build["package-dir"])
    return roots


def _setup_cfg_roots(path: Path) -> list[str]:
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return []
    roots = []
    if parser.has_option("options", "package_dir"):
        for line in parser.get("options", "package_dir").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip() and value.strip():
                roots.append(value.strip())
    if parser.has_option("options.packages.find", "where"):
        roots += [w.strip() for w in parser.get("options.packages.find", "where").split() if w.strip()]
    return roots


def _clean(root: str) -> str | None:
    p = PurePosixPath(root.replace("\\", "/").strip().strip("/"))
    if not p.parts or p.is_absolute() or ".." in p.parts or str(p) == ".":
        return None
    return str(p)


def source_roots(project: Path, files: Iterable[str]) -> list[str]:
    """Project-relative folders to put on ``sys.path`` besides the root (``["src"]`` for a src layout).

    ``files`` are the bundled files (POSIX, project-relative): a declared root that ships no
    Python file is ignored, so the answer is always about what the kernel really receives.
    """
    names = set(files)
    declared: list[str] = []
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        with contextlib.suppress(tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            declared += _declared_roots(tomllib.loads(pyproject.read_text(encoding="utf-8")))
    setup_cfg = project / "setup.cfg"
    if setup_cfg.is_file():
        declared += _setup_cfg_roots(setup_cfg)
    if not declared and any(n.startswith("src/") for n in names):
        top = {n.split("/")[1] for n in names if n.startswith("src/") and n.count("/") >= 1}
        if any(f"src/{t}/__init__.py" in names or (t.endswith(".py") and f"src/{t}" in names) for t in top):
            declared.append("src")
    out: list[str] = []
    for raw in declared:
        root = _clean(raw)
        if root and root not in out and any(n.startswith(root + "/") and n.endswith(".py") for n in names):
            out.append(root)
    return out


def module_file(entry: str, names: set[str], roots: list[str]) -> str | None:
    """The bundled file that ``python -m entry`` runs: ``[root/]pkg/mod.py`` or ``[root/]pkg/mod/__main__.py``."""
    mod = entry.replace(".", "/")
    for prefix in ["", *(r + "/" for r in roots)]:
        for candidate in (f"{prefix}{mod}.py", f"{prefix}{mod}/__main__.py"):
            if candidate in names:
                return candidate
    return None
