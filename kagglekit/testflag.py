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
from collections.abc import Callable, Iterable, Iterator, Mapping

from kagglekit.errors import BundleError, ConfigError, shown

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

    @property
    def qualname(self) -> str:
        """``CFG.epochs`` for a class attribute, ``EPOCHS`` for a module-level constant (cls "")."""
        return f"{self.cls}.{self.name}" if self.cls else self.name


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
    """The source text for ``raw`` if it fits the attribute's current type; ConfigError otherwise."""
    is_lit, value = parse_value(raw)
    old_is_lit, old = _literal(assign.node)
    expected: type | None = None
    if assign.annotation in _ANNOTATION_TYPES:
        expected = _ANNOTATION_TYPES[assign.annotation]
    elif old_is_lit and old is not None:
        expected = type(old)
    where = f"{assign.file}: {assign.qualname} = {ast.unparse(assign.node)}"
    if not is_lit:
        if expected in (None, str):
            return repr(raw)
        why = _why_not_literal(raw)
        raise ConfigError(f"--set {name}={shown(raw)}: not a Python literal{why}, and {where} holds a "
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
        raise ConfigError(f"--set {name}={raw}: a {type(value).__name__} does not fit {where} "
                          f"(a {expected.__name__}).",
                          hint=f"Give a {expected.__name__} value, e.g. --set {name}={_example(expected)}.")
    if expected is float and isinstance(value, int):
        return repr(float(value))
    return _source_text(raw, value)


def _why_not_literal(raw: str) -> str:
    """Python's own reason, when it says more than "invalid syntax" (e.g. integers over 4300 digits)."""
    try:
        ast.parse(raw.strip(), mode="eval")
    except SyntaxError as exc:
        msg = str(exc.msg or "")
        if "limit" in msg or "digits" in msg:
            return f" (Python refuses it: {msg.split(';')[0]})"
        return ""
    except (ValueError, MemoryError, RecursionError) as exc:
        return f" ({type(exc).__name__})"
    return ""


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
    flag_required: bool = True,
) -> tuple[dict[str, str], list[FlagChange]]:
    """Toggle the test flag for ``mode`` ("test"/"full"/None) and apply ``sets`` (NAME -> VALUE text).

    ``flag_required=False`` (the project has ``test-args``: its test mode is its arguments): a
    mode with no flag found in the sources is not an error; a flag found is still toggled.

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
        target_class, flag_assigns = _found_flag(sources, tree_of, mode, flag_required)
    edits: list[_Edit] = []
    if mode is not None and flag_assigns:
        value = "True" if mode == "test" else "False"
        edits += [_Edit(a.file, a.node, a.name, value) for a in _alone(flag_assigns, flag_assigns[0].name)]
    for name, raw in sets.items():
        if name.rpartition(":")[2].rpartition(".")[2] in FLAG_NAMES:
            raise ConfigError(f"--set {name}=... : the test flag is set with --test / --full.",
                              hint="Use --test or --full instead.")
        if ":" in name or "." in name:
            assigns = find_qualified(sources, tree_of, name)
        else:
            assigns = (_find_attribute(sources, tree_of, name, target_class)
                       or _module_constant(sources, tree_of, name, target_class))
        edits += [_Edit(a.file, a.node, name, _fit(name, raw, a)) for a in _alone(assigns, name)]
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
                mode: str | None, flag_required: bool) -> tuple[tuple[str, str] | None, list[_Assign]]:
    """The one running_test / runing_test assigned in a Config-like class, searched in every file.

    With a ``mode``, several candidates are an error, and so is none when ``flag_required``.
    """
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
    if mode is not None and not flag_assigns and flag_required:
        raise BundleError(f"--{mode} asks for the test flag, but none was found. Looked in every bundled "
                          ".py file, for running_test / runing_test assigned in a class whose name contains Config "
                          "or CFG.", hint=DECLARE_HINT + ' An argparse project can instead give its test mode as '
                                                         'arguments: test-args = ["--epochs", "1"].')
    return target_class, flag_assigns


def _find_attribute(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None], name: str,
                    target_class: tuple[str, str] | None) -> list[_Assign]:
    """Every assignment of ``name`` in the target Config class (or the single Config-like class defining it);
    [] when none has it."""
    if target_class is not None:
        return [a for a in _target_assignments(tree_of, target_class) if a.name == name]
    matches: dict[tuple[str, str], list[_Assign]] = {}
    for file, cls_name, assigns in _config_classes(sources, tree_of, name):
        found = [a for a in assigns if a.name == name]
        if found:
            matches[(file, cls_name)] = found
    if len(matches) <= 1:
        return next(iter(matches.values()), [])
    listed = ", ".join(f"{f} {c}" for f, c in matches)
    raise ConfigError(f"--set {name}: several Config classes define {name} ({listed}).",
                      hint=f"Say which: --set {next(iter(matches))[1]}.{name}=VALUE, or " + DECLARE_HINT)


def _target_assignments(tree_of: Callable[[str], ast.Module | None], target_class: tuple[str, str]) -> list[_Assign]:
    file, cls_path = target_class
    tree = tree_of(file)
    assert tree is not None  # parsed when the class was found
    return list(_class_assignments(file, cls_path, dict(_iter_classes(tree))[cls_path]))


def _config_classes(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None],
                    needle: str = "") -> Iterator[tuple[str, str, list[_Assign]]]:
    """(file, class, its assignments) of every Config-like class, in files whose text holds ``needle``."""
    for file in sorted(sources):
        if needle not in sources[file]:
            continue
        tree = tree_of(file)
        if tree is None:
            continue
        for cls_name, cls in _iter_classes(tree):
            if is_config_class(cls.name):
                yield file, cls_name, list(_class_assignments(file, cls_name, cls))


def _unknown_name(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None], name: str,
                  target_class: tuple[str, str] | None) -> ConfigError:
    """``--set NAME`` that names nothing: where kagglekit looked, and the names that do exist there."""
    if target_class is not None:
        places = [(f"{target_class[0]} class {target_class[1]}", _target_assignments(tree_of, target_class))]
    else:
        places = [(f"{file} class {cls}", assigns) for file, cls, assigns in _config_classes(sources, tree_of)]
    constants = sorted({a.name for file in sources if (tree := tree_of(file)) is not None
                        for a in module_assignments(file, tree) if _literal(a.node)[0] and a.name.isupper()})
    known = [n for _, assigns in places for n in dict.fromkeys(a.name for a in assigns) if n not in FLAG_NAMES]
    close = difflib.get_close_matches(name, known + constants, n=3)
    looked = ", ".join(p for p, _ in places) or "no Config-like class (name containing Config or CFG)"
    message = (f"--set {name}: {looked} has no attribute {name}, and no .py file assigns it a literal at "
               "module level" + (f" (did you mean {' or '.join(close)}?)" if close else "")
               + ".")
    exist = [f"{p} has: {_listing(dict.fromkeys(a.name for a in assigns if a.name not in FLAG_NAMES))}"
             for p, assigns in places] + ([f"module constants: {_listing(constants)}"] if constants else [])
    if exist:
        message += " " + "; ".join(exist) + "."
    return ConfigError(message, hint="Name it exactly: --set config.py:EPOCHS=1, --set CFG.epochs=1, or a config "
                                     "file key --set configs/base.yaml:train.epochs=1.")


def _names_at(tree_of: Callable[[str], ast.Module | None], files: list[str], cls_path: str, *,
              exact_class: bool) -> list[str]:
    """The names assigned in class ``cls_path`` (or at module level, with no class) of ``files``."""
    names: dict[str, None] = {}
    for f in files:
        tree = tree_of(f)
        if tree is None:
            continue
        if not cls_path:
            names.update(dict.fromkeys(a.name for a in module_assignments(f, tree) if _literal(a.node)[0]))
            continue
        for name, cls in _iter_classes(tree):
            if name == cls_path or (not exact_class and name.rpartition(".")[2] == cls_path):
                names.update(dict.fromkeys(a.name for a in _class_assignments(f, name, cls)))
    return [n for n in names if n not in FLAG_NAMES]


def _class_names(tree_of: Callable[[str], ast.Module | None], files: list[str]) -> list[str]:
    """Config-like classes first, then the others: what ``--set Class.NAME`` could name."""
    names = [name for f in files if (tree := tree_of(f)) is not None for name, _ in _iter_classes(tree)]
    return sorted(dict.fromkeys(names), key=lambda n: (not is_config_class(n.rpartition(".")[2]), n))


def _listing(names: Iterable[str], limit: int = 30) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "") \
        if names else "none"


def module_assignments(file: str, tree: ast.Module) -> Iterator[_Assign]:
    """Assignments at module level (including inside module-level if/try/with), in source order."""
    def walk(body: list[ast.stmt]) -> Iterator[_Assign]:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        yield _Assign(file, "", t.id, stmt.value, None, len(stmt.targets) > 1)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
                yield _Assign(file, "", stmt.target.id, stmt.value, ast.unparse(stmt.annotation), False)
            elif isinstance(stmt, ast.If | ast.Try | ast.With):
                yield from walk(_child_bodies(stmt))

    yield from walk(tree.body)


def _first_module_assignment(file: str, tree: ast.Module, name: str) -> _Assign | None:
    """The first module-level assignment of ``name`` that holds a literal (later ones reassign it)."""
    for a in module_assignments(file, tree):
        if a.name == name and _literal(a.node)[0]:
            return a
    return None


def _module_constant(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None], name: str,
                     target_class: tuple[str, str] | None) -> list[_Assign]:
    """``--set EPOCHS=1`` where no Config class has EPOCHS: the one module-level ``EPOCHS = <literal>``."""
    found: list[_Assign] = []
    for file in sorted(sources):
        if name not in sources[file]:
            continue
        tree = tree_of(file)
        first = _first_module_assignment(file, tree, name) if tree is not None else None
        if first is not None:
            found.append(first)
    if len(found) == 1:
        return found
    if not found:
        raise _unknown_name(sources, tree_of, name, target_class)
    listed = ", ".join(f"{a.file}:{a.node.lineno}" for a in found)
    raise ConfigError(f"--set {name}: several files assign {name} at module level ({listed}).",
                      hint=f"Say which: --set {found[0].file}:{name}=VALUE.")


def find_qualified(sources: Mapping[str, str], tree_of: Callable[[str], ast.Module | None],
                   target: str) -> list[_Assign]:
    """``Class.attr``, ``file.py:NAME`` or ``file.py:Class.attr``: the assignments that --set replaces."""
    file, _, path = target.rpartition(":")
    cls_path, _, attr = path.rpartition(".")
    files = [file] if file else sorted(sources)
    if file and file not in sources:
        close = difflib.get_close_matches(file, sorted(sources), n=1)
        raise ConfigError(f"--set {target}: {file} is not among the bundled .py files"
                          + (f" (did you mean {close[0]}?)" if close else "") + ".",
                          hint="Give the path relative to the project root; kagglekit -v bundle lists the files.")
    found: list[_Assign] = []
    for f in files:
        if attr not in sources[f]:
            continue
        tree = tree_of(f)
        if tree is None:
            continue
        if not cls_path:
            first = _first_module_assignment(f, tree, attr)
            found += [first] if first is not None else []
            continue
        for name, cls in _iter_classes(tree):
            if name == cls_path or (not file and name.rpartition(".")[2] == cls_path):
                found += [a for a in _class_assignments(f, name, cls) if a.name == attr]
    by_place = sorted({(a.file, a.cls) for a in found})
    if not found:
        where = file or "the bundled .py files"
        what = f"class {cls_path} with an attribute {attr}" if cls_path else f"module-level {attr} = <literal>"
        names = _names_at(tree_of, files, cls_path, exact_class=bool(file))
        close = difflib.get_close_matches(attr, names, n=3)
        there = (f" {'Class ' + cls_path if cls_path else 'Module level'} has: {_listing(names)}." if names else
                 f" Classes there: {_listing(_class_names(tree_of, files))}." if cls_path else "")
        raise ConfigError(f"--set {target}: no {what} in {where}"
                          + (f" (did you mean {' or '.join(close)}?)" if close else "") + "." + there,
                          hint="Check the spelling; --set NAME=VALUE alone searches Config classes and "
                               "module constants.")
    if len(by_place) > 1:
        listed = ", ".join(f"{f} {c or '(module)'}" for f, c in by_place)
        raise ConfigError(f"--set {target}: found in several places ({listed}).",
                          hint=f"Say which file: --set {by_place[0][0]}:{path}=VALUE.")
    return found


@dataclasses.dataclass(frozen=True)
class Reassignment:
    """Code that assigns a value --set changed again, so the --set value may never be used."""

    target: str  # the --set name as given
    file: str
    line: int
    code: str
    context: str  # "at module level, inside `if CFG.debug:`" / "in function main"

    def __str__(self) -> str:
        return (f"--set {self.target}: {self.file}:{self.line} assigns it again ({self.code}, {self.context}), "
                "so the value --set writes may never be used; change that line, or --set what it reads")


def find_reassignments(sources: Mapping[str, str], changes: list[FlagChange],
                       sets: Mapping[str, str]) -> list[Reassignment]:
    """Where the code assigns again what ``sets`` changed (``if CFG.debug: CFG.epochs = 1``)."""
    changed = {(c.file, c.line) for c in changes}
    targets: list[tuple[str, str, str, str]] = []  # (set name, file, class simple name or "", attribute)
    for set_name in sets:
        path = set_name.rpartition(":")[2]
        cls, _, attr = path.rpartition(".")
        for file in sorted(sources):
            tree = _parse(file, sources[file]) if attr in sources[file] else None
            if tree is None:
                continue
            for a in [*module_assignments(file, tree),
                      *(x for n, c in _iter_classes(tree) for x in _class_assignments(file, n, c))]:
                if a.name == attr and (a.file, a.node.lineno) in changed and (not cls or a.cls.endswith(cls)):
                    targets.append((set_name, file, a.cls.rpartition(".")[2], attr))
    out: list[Reassignment] = []
    seen: set[tuple[str, int]] = set()
    for set_name, def_file, cls_name, attr in dict.fromkeys(targets):
        module = def_file.rsplit("/", 1)[-1].removesuffix(".py")
        owner_names = {cls_name} if cls_name else {module}
        for file in sorted(sources):
            if attr not in sources[file]:
                continue
            tree = _parse(file, sources[file])
            if tree is None:
                continue
            for node, context, method_of in _assignments_with_context(tree):
                hit = False
                # inside a method of the owning class, its first parameter (cls/self) names the owner too
                owners = owner_names | ({method_of[1]} if method_of and method_of[0] == cls_name else set())
                for t in _targets(node):
                    on_owner = isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name) \
                        and t.value.id in owners
                    same_global = (isinstance(t, ast.Name) and t.id == attr and not cls_name and file == def_file
                                   and (file, node.lineno) not in changed
                                   and (context.startswith("at module level") or _declares_global(tree, node, attr)))
                    hit = hit or on_owner or same_global
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                        and isinstance(node.value.func, ast.Name) and node.value.func.id == "setattr" \
                        and len(node.value.args) >= 2 and isinstance(node.value.args[0], ast.Name) \
                        and node.value.args[0].id in owner_names and isinstance(node.value.args[1], ast.Constant) \
                        and node.value.args[1].value == attr:
                    hit = True
                if hit and (file, node.lineno) not in seen:
                    seen.add((file, node.lineno))
                    code = ast.unparse(node).splitlines()[0]
                    out.append(Reassignment(set_name, file, node.lineno, f"`{code[:80]}`", context))
    return sorted(out, key=lambda r: (r.file, r.line))


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    return []


def _declares_global(tree: ast.Module, node: ast.stmt, name: str) -> bool:
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and any(n is node for n in ast.walk(fn)):
            return any(isinstance(g, ast.Global) and name in g.names for g in ast.walk(fn))
    return False


_MethodOf = tuple[str, str] | None  # (class name, the method's first parameter: cls/self), inside a method


def _assignments_with_context(tree: ast.Module) -> Iterator[tuple[ast.stmt, str, _MethodOf]]:
    """Every assignment statement (and bare call) with where it sits: module level (under which if), or a function."""
    def walk(body: list[ast.stmt], where: str, cond: str,
             method_of: _MethodOf = None) -> Iterator[tuple[ast.stmt, str, _MethodOf]]:
        for stmt in body:
            if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Expr):
                yield stmt, where + (f", inside `{cond}`" if cond else ""), method_of
            elif isinstance(stmt, ast.If):
                test = f"if {ast.unparse(stmt.test)[:60]}:"
                yield from walk(stmt.body, where, test, method_of)
                yield from walk(stmt.orelse, where, f"else of `{test}`", method_of)
            elif isinstance(stmt, ast.For | ast.While | ast.With | ast.Try):
                yield from walk(_child_bodies(stmt) if not isinstance(stmt, ast.For | ast.While)
                                else stmt.body + stmt.orelse, where, cond, method_of)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(stmt.body, f"in function {stmt.name}", "")
            elif isinstance(stmt, ast.ClassDef) and where == "at module level":
                for inner in stmt.body:
                    if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                        params = [*inner.args.posonlyargs, *inner.args.args]
                        first = (stmt.name, params[0].arg) if params and not any(
                            isinstance(d, ast.Name) and d.id == "staticmethod" for d in inner.decorator_list) else None
                        yield from walk(inner.body, f"in method {stmt.name}.{inner.name}", "", first)

    yield from walk(tree.body, "at module level", "")


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
