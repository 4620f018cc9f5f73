"""The ``running_test`` toggle and ``--set`` overrides, applied to the BUNDLED copy of a project.

The flag is found with the AST: an assignment to ``running_test`` (or the common
misspelling ``runing_test``) in the body of a Config-like class (a class whose name
contains "Config" or "CFG"), or the one ``test-flag = "config.py:Config.running_test"``
names. Only the assigned value's source span is replaced, so the formatting and
comments of the file are kept; the local files are never touched.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping

from kagglekit.errors import BundleError

FLAG_NAMES = ("running_test", "runing_test")
DECLARE_HINT = ('Declare where the flag lives in [tool.kagglekit] (or kagglekit.toml): '
                'test-flag = "config.py:Config.running_test"; or test-flag = false if the project reads '
                'KAGGLEKIT_MODE / KAGGLEKIT_RUNNING_TEST itself.')


@dataclasses.dataclass(frozen=True)
class FlagChange:
    """One value replaced in the bundled copy: ``config.py:12 running_test: True → False``."""

    file: str
    line: int
    name: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.file}:{self.line} {self.name} = {self.new} (already so)"
        return f"{self.file}:{self.line} {self.name}: {self.old} → {self.new}"


@dataclasses.dataclass
class _Assign:
    file: str
    cls: str
    name: str
    node: ast.expr  # the assigned value
    annotation: str | None
    shared: bool  # `a = b = 1`: changing the value would change another name too


def is_config_class(name: str) -> bool:
    upper = name.upper()
    return "CONFIG" in upper or "CFG" in upper


def _class_path(stack: list[str]) -> str:
    return ".".join(stack)


def _iter_classes(tree: ast.Module) -> Iterator[tuple[str, ast.ClassDef]]:
    """Classes at module level and nested in classes (not in functions), with dotted names."""
    def walk(body: list[ast.stmt], prefix: list[str]) -> Iterator[tuple[str, ast.ClassDef]]:
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                path = [*prefix, stmt.name]
                yield _class_path(path), stmt
                yield from walk(stmt.body, path)
            elif isinstance(stmt, ast.If | ast.Try):
                yield from walk(_child_bodies(stmt), prefix)

    yield from walk(tree.body, [])


def _child_bodies(stmt: ast.stmt) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    if isinstance(stmt, ast.If):
        out += stmt.body + stmt.orelse
    elif isinstance(stmt, ast.Try):
        out += stmt.body + stmt.orelse + stmt.finalbody
        for handler in stmt.handlers:
            out += handler.body
    elif isinstance(stmt, ast.With):
        out += stmt.body
    return out


def _class_assignments(file: str, cls_name: str, cls: ast.ClassDef) -> Iterator[_Assign]:
    """Assignments in a class body, including inside `if`/`try`/`with` blocks, not nested scopes."""
    def walk(body: list[ast.stmt]) -> Iterator[_Assign]:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
                for name in names:
                    yield _Assign(file, cls_name, name, stmt.value, None, len(stmt.targets) > 1)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
                yield _Assign(file, cls_name, stmt.target.id, stmt.value, ast.unparse(stmt.annotation), False)
            elif isinstance(stmt, ast.If | ast.Try | ast.With):
                yield from walk(_child_bodies(stmt))

    yield from walk(cls.body)


def _parse(file: str, text: str) -> ast.Module | None:
    try:
        return ast.parse(text, filename=file)
    except (SyntaxError, ValueError):
        return None


def _literal(node: ast.expr) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


_ANNOTATION_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


def parse_value(raw: str) -> tuple[bool, object]:
    """``--set`` value as a Python literal; (False, raw) when it is not one (a bare word)."""
    try:
        return True, ast.literal_eval(raw.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        low = raw.strip().lower()
        if low in {"true", "false"}:
            return True, low == "true"
        if low in {"none", "null"}:
            return True, None
        return False, raw


def _fit(name: str, raw: str, assign: _Assign) -> str:
    """The source text for ``raw`` if it fits the attribute's current type; BundleError otherwise."""
    is_lit, value = parse_value(raw)
    old_is_lit, old = _literal(assign.node)
    expected: type | None = None
    if assign.annotation in _ANNOTATION_TYPES:
        expected = _ANNOTATION_TYPES[assign.annotation]
    elif old_is_lit and old is not None:
        expected = type(old)
    where = f"{assign.file}: {assign.cls}.{name} = {ast.unparse(assign.node)}"
    if not is_lit:
        if expected in (None, str):
            return repr(raw)
        raise BundleError(f"--set {name}={raw}: '{raw}' is not a Python literal, and {where} holds a "
                          f"{expected.__name__ if expected else 'value'}.",
                          hint="Give a Python literal: numbers as 1 or 0.5, text in quotes, True/False, None.")
    if expected is None or value is None:
        return _source_text(raw, value)
    if expected is bool and not isinstance(value, bool):
        ok = False
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise BundleError(f"--set {name}={raw}: a {type(value).__name__} does not fit {where} "
                          f"(a {expected.__name__}).",
                          hint=f"Give a {expected.__name__} value, e.g. --set {name}={_example(expected)}.")
    if expected is float and isinstance(value, int):
        return repr(float(value))
    return _source_text(raw, value)


def _source_text(raw: str, value: object) -> str:
    """The user's own spelling when it is already a literal (5e-4 stays 5e-4), else repr()."""
    try:
        if ast.literal_eval(raw.strip()) == value:
            return raw.strip()
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    return repr(value)


def _example(t: type) -> str:
    return {bool: "True", int: "1", float: "0.5", str: "'text'"}.get(t, repr(t()))


@dataclasses.dataclass
class _Edit:
    file: str
    node: ast.expr
    name: str
    new: str


def apply_flags(
    sources: Mapping[str, str],
    *,
    mode: str | None,
    sets: Mapping[str, str] | None = None,
    test_flag: str | None = None,
    test_flag_enabled: bool = True,
) -> tuple[dict[str, str], list[FlagChange]]:
    """Toggle the test flag for ``mode`` ("test"/"full"/None) and apply ``sets`` (NAME -> VALUE text).

    ``sources`` maps project-relative POSIX paths of .py files to their text. Returns the
    changed files' new text and the list of changes, in file/line order.
    """
    sets = dict(sets or {})
    if mode is None and not sets:
        return {}, []
    if mode not in (None, "test", "full"):
        raise BundleError(f"Unknown mode {mode!r}.", hint="Use --test or --full.")
    tree_of = _tree_cache(sources)
    target_class: tuple[str, str] | None = None  # (file, dotted class)
    flag_assigns: list[_Assign] = []
    if test_flag:
        target_class, flag_assigns = _declared_flag(sources, tree_of, test_flag, mode)
    elif test_flag_enabled:
        target_class, flag_assigns = _found_flag(sources, tree_of, mode)
    edits: list[_Edit] = []
    if mode is not None and flag_assigns:
        value = "True" if mode == "test" else "False"
        edits += [_Edit(a.file, a.node, a.name, value) for a in _alone(flag_assigns, flag_assigns[0].name)]
    for name, raw in sets.items():
        if name in FLAG_NAMES:
            raise BundleError(f"--set {name}=... : the test flag is set with --test / --full.",
                              hint="Use --test or --full instead.")
        assigns = _alone(_find_attribute(sources, tree_of, name, target_class), name)
        edits += [_Edit(a.file, a.node, name, _fit(name, raw, a)) for a in assigns]
    return _apply(sources, edits)


def _tree_cache(sources: Mapping[str, str]) -> Callable[[str], ast.Module | None]:
    """``tree_of(file)``: each source parsed once, None when it does not parse."""
    trees: dict[str, ast.Module] = {}

    def tree_of(file: str) -> ast.Module | None:
        if file not in trees:
            parsed = _parse(file, sources[file])
            if parsed is None:
                return None
            trees[file] = parsed
        return trees[file]

    return tree_of


def _alone(assigns: list[_Assign], name: str) -> list[_Assign]:
    """The assignments, refusing one that assigns ``name`` together with another name."""
    for a in assigns:
        if a.shared:
            raise BundleError(f"{a.file}:{a.node.lineno} assigns {a.name} together with another name; "
                              "kagglekit will not change both.", hint=f"Give {name} its own line.")
    return assigns


def _declared_flag(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None], test_flag: str,
                   mode: str | None) -> tuple[tuple[str, str], list[_Assign]]:
    """The flag named by ``test-flag = "path.py:Class.attr"``: its class and assignments."""
    file, _, rest = test_flag.partition(":")
    cls_path, _, attr = rest.rpartition(".")
    if file not in sources:
        raise BundleError(f"test-flag names {file}, which is not among the bundled files.",
                          hint="Check the path (relative to the project root) and that no ignore rule "
                               "leaves it out; " + DECLARE_HINT)
    tree = tree_of(file)
    if tree is None:
        raise BundleError(f"{file} (named by test-flag) does not parse as Python.")
    classes = dict(_iter_classes(tree))
    if cls_path not in classes:
        close = difflib.get_close_matches(cls_path, list(classes), n=1)
        raise BundleError(f"test-flag names class {cls_path} in {file}, which has no such class"
                          + (f" (did you mean {close[0]}?)" if close else "") + ".", hint=DECLARE_HINT)
    flag_assigns = [a for a in _class_assignments(file, cls_path, classes[cls_path]) if a.name == attr]
    if mode is not None and not flag_assigns:
        raise BundleError(f"{file}: class {cls_path} has no assignment to {attr} (named by test-flag).",
                          hint=DECLARE_HINT)
    return (file, cls_path), flag_assigns


def _found_flag(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None],
                mode: str | None) -> tuple[tuple[str, str] | None, list[_Assign]]:
    """The one running_test / runing_test assigned in a Config-like class, searched in every file."""
    candidates: dict[tuple[str, str], list[_Assign]] = {}
    for file in sorted(sources):
        text = sources[file]
        if "unning_test" not in text and "uning_test" not in text:
            continue
        tree = tree_of(file)
        if tree is None:
            continue
        for cls_name, cls in _iter_classes(tree):
            if not is_config_class(cls.name):
                continue
            found = [a for a in _class_assignments(file, cls_name, cls) if a.name in FLAG_NAMES]
            if found:
                candidates[(file, cls_name)] = found
    target_class: tuple[str, str] | None = None
    flag_assigns: list[_Assign] = []
    if len(candidates) > 1:
        listed = "; ".join(f"{f}:{a[0].node.lineno} {c}.{a[0].name}" for (f, c), a in candidates.items())
        if mode is not None:
            raise BundleError(f"The test flag is ambiguous: found {len(candidates)} candidates ({listed}).",
                              hint=DECLARE_HINT)
    elif candidates:
        (target_class, flag_assigns), = candidates.items()
        if len({a.name for a in flag_assigns}) > 1:
            raise BundleError(f"{target_class[0]}: class {target_class[1]} assigns both running_test and "
                              "runing_test; kagglekit cannot tell which one the project reads.",
                              hint=DECLARE_HINT)
    if mode is not None and not flag_assigns:
        raise BundleError(f"--{mode} asks for the test flag, but none was found. Looked in every bundled .py "
                          "file, for running_test / runing_test assigned in a class whose name contains Config "
                          "or CFG.", hint=DECLARE_HINT)
    return target_class, flag_assigns


def _find_attribute(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None], name: str,
                    target_class: tuple[str, str] | None) -> list[_Assign]:
    """Every assignment of ``name`` in the target Config class (or the single Config-like class defining it)."""
    if target_class is not None:
        file, cls_path = target_class
        tree = tree_of(file)
        assert tree is not None  # parsed when the class was found
        classes = dict(_iter_classes(tree))
        assigns = list(_class_assignments(file, cls_path, classes[cls_path]))
        found = [a for a in assigns if a.name == name]
        if not found:
            names = sorted({a.name for a in assigns})
            close = difflib.get_close_matches(name, names, n=1)
            raise BundleError(
                f"--set {name}: {file} class {cls_path} has no attribute {name}"
                + (f" (did you mean {close[0]}?)" if close else "") + ".",
                hint="Its attributes: " + ", ".join(names[:30]) + ("…" if len(names) > 30 else ""))
        return found
    matches: dict[tuple[str, str], list[_Assign]] = {}
    for file in sorted(sources):
        if name not in sources[file]:
            continue
        tree = tree_of(file)
        if tree is None:
            continue
        for cls_name, cls in _iter_classes(tree):
            if is_config_class(cls.name):
                found = [a for a in _class_assignments(file, cls_name, cls) if a.name == name]
                if found:
                    matches[(file, cls_name)] = found
    if len(matches) == 1:
        return next(iter(matches.values()))
    if not matches:
        raise BundleError(f"--set {name}: no Config-like class (name containing Config or CFG) in the bundled "
                          f".py files assigns {name}.", hint=DECLARE_HINT)
    listed = ", ".join(f"{f} {c}" for f, c in matches)
    raise BundleError(f"--set {name}: several Config classes define {name} ({listed}).", hint=DECLARE_HINT)


def _apply(sources: Mapping[str, str], edits: list[_Edit]) -> tuple[dict[str, str], list[FlagChange]]:
    """Replace each edited value's source span (AST offsets are UTF-8 byte columns)."""
    by_file: dict[str, list[_Edit]] = {}
    for e in edits:
        by_file.setdefault(e.file, []).append(e)
    new_sources: dict[str, str] = {}
    changes: list[FlagChange] = []
    for file, file_edits in sorted(by_file.items()):
        lines = sources[file].splitlines(keepends=True)
        seen: set[tuple[int, int]] = set()
        unique = []
        for e in file_edits:
            key = (e.node.lineno, e.node.col_offset)
            if key not in seen:
                seen.add(key)
                unique.append(e)
        for e in sorted(unique, key=lambda e: (e.node.lineno, e.node.col_offset), reverse=True):
            node = e.node
            assert node.end_lineno is not None and node.end_col_offset is not None
            first = lines[node.lineno - 1].encode("utf-8")
            last = lines[node.end_lineno - 1].encode("utf-8")
            old_text = "".join(lines[node.lineno - 1:node.end_lineno]).encode("utf-8")
            start = node.col_offset
            end = len(old_text) - (len(last) - node.end_col_offset)
            old_value = old_text[start:end].decode("utf-8")
            replaced = first[:start] + e.new.encode("utf-8") + last[node.end_col_offset:]
            lines[node.lineno - 1:node.end_lineno] = [replaced.decode("utf-8")]
            changes.append(FlagChange(file, node.lineno, e.name, " ".join(old_value.split()), e.new))
        new_sources[file] = "".join(lines)
    changes.sort(key=lambda c: (c.file, c.line))
    return new_sources, changes
