"""``--set FILE:key.path=VALUE`` on the YAML, JSON and TOML config files a project reads.

Only the bundled copy changes. YAML goes through ruamel.yaml's round-trip mode and TOML through
tomlkit, so comments, key order and quoting of everything else stay as written; JSON keeps its
key order and indentation. The key must already exist (a typo would otherwise add a key the
project never reads), and the new value must fit the old one's type, as for Python attributes.
"""

from __future__ import annotations

import difflib
import io
import json
import re
from collections.abc import Mapping
from typing import Any

from kagglekit.errors import BundleError, ConfigError
from kagglekit.testflag import FlagChange, parse_value

SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def is_config_target(name: str) -> bool:
    """Whether a ``--set`` name points into a config file (``configs/base.yaml:train.epochs``)."""
    file, sep, _ = name.rpartition(":")
    return bool(sep) and file.lower().endswith(SUFFIXES)


def _fit(target: str, raw: str, old: Any) -> Any:
    """The new value for ``raw``, of the old value's type (int→float widens); ConfigError otherwise."""
    is_lit, parsed = parse_value(raw)
    value: Any = parsed
    if not is_lit:
        value = raw  # a bare word is text
    if old is None or value is None:
        return value
    if isinstance(old, bool):
        ok = isinstance(value, bool)
    elif isinstance(old, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(old, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(old, str):
        ok = True
        value = raw if not isinstance(value, str) else value  # --set name=1 on a string keeps "1"
    elif isinstance(old, list):
        ok = isinstance(value, list | tuple)
        value = list(value) if ok else value
    elif isinstance(old, dict):
        ok = isinstance(value, dict)
    else:
        ok = type(value) is type(old)
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number", list: "a list", dict: "a mapping"}
        wanted = next((v for t, v in kind.items() if isinstance(old, t)), type(old).__name__)
        raise ConfigError(f"--set {target}={raw}: the file holds {old!r} there, and {raw!r} is not {wanted}.",
                          hint=f"Give {wanted}, e.g. --set {target}={_example(old)}.")
    return value


def _example(old: Any) -> str:
    if isinstance(old, bool):
        return "true"
    if isinstance(old, int):
        return "1"
    if isinstance(old, float):
        return "0.5"
    if isinstance(old, list):
        return "[1, 2]"
    return "text"


def _walk(target: str, root: Any, keys: list[str]) -> tuple[Any, Any]:
    """(container, key) of the last key in ``keys``; ConfigError naming the first key that is not there."""
    node = root
    for depth, key in enumerate(keys):
        here = ".".join(keys[:depth]) or "the top level"
        if isinstance(node, Mapping):
            if key not in node:
                close = difflib.get_close_matches(key, [str(k) for k in node], n=1)
                raise ConfigError(f"--set {target}: {here} has no key {key!r}"
                                  + (f" (did you mean {close[0]!r}?)" if close else "") + ".",
                                  hint="Its keys: " + ", ".join(str(k) for k in list(node)[:30]))
            index: Any = key
        elif isinstance(node, list):
            if not re.fullmatch(r"-?\d+", key) or not -len(node) <= int(key) < len(node):
                raise ConfigError(f"--set {target}: {here} is a list of {len(node)} items; {key!r} is not an index.")
            index = int(key)
        else:
            raise ConfigError(f"--set {target}: {here} is a value ({node!r}), not a mapping with key {key!r}.")
        if depth == len(keys) - 1:
            return node, index
        node = node[index]
    raise ConfigError(f"--set {target}: an empty key path.")


def _line_of(text: str, key: str, start: int = 0) -> int:
    m = re.search(r"^[ \t]*[\"']?" + re.escape(key) + r"[\"']?\s*[:=]", text[start:], re.MULTILINE)
    return text.count("\n", 0, start + m.start()) + 1 if m else 0


def _yaml(file: str, text: str, edits: list[tuple[str, list[str], str]]) -> tuple[str, list[FlagChange]]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise BundleError(f"{file} is not valid YAML, so --set cannot change it: {exc}".splitlines()[0]) from None
    changes = []
    for target, keys, raw in edits:
        parent, key = _walk(target, data, keys)
        old = parent[key]
        new = _fit(target, raw, old)
        line = 0
        lc = getattr(parent, "lc", None)
        if lc is not None:
            try:
                line = (lc.key(key) if isinstance(parent, Mapping) else lc.item(key))[0] + 1
            except (KeyError, IndexError, TypeError, AttributeError):
                line = 0
        parent[key] = new
        changes.append(FlagChange(file, line, ".".join(keys), _show(old), _show(new)))
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue(), changes


def _json(file: str, text: str, edits: list[tuple[str, list[str], str]]) -> tuple[str, list[FlagChange]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file} is not valid JSON, so --set cannot change it: {exc}.") from None
    m = re.search(r"\n([ \t]+)\S", text)
    indent: int | str | None = (len(m.group(1)) if m.group(1).strip(" ") == "" else m.group(1)) if m else None
    changes = []
    for target, keys, raw in edits:
        parent, key = _walk(target, data, keys)
        old = parent[key]
        new = _fit(target, raw, old)
        parent[key] = new
        changes.append(FlagChange(file, _line_of(text, str(keys[-1])), ".".join(keys), _show(old), _show(new)))
    out = json.dumps(data, indent=indent, ensure_ascii=False)
    return out + ("\n" if text.endswith("\n") else ""), changes


def _toml(file: str, text: str, edits: list[tuple[str, list[str], str]]) -> tuple[str, list[FlagChange]]:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise BundleError(f"{file} is not valid TOML, so --set cannot change it: {exc}.") from None
    changes = []
    for target, keys, raw in edits:
        parent, key = _walk(target, doc, keys)
        old = parent[key]
        plain_old = old.unwrap() if hasattr(old, "unwrap") else old
        new = _fit(target, raw, plain_old)
        parent[key] = new
        changes.append(FlagChange(file, _line_of(text, str(keys[-1])), ".".join(keys), _show(plain_old), _show(new)))
    return tomlkit.dumps(doc), changes


def _show(value: Any) -> str:
    if hasattr(value, "unwrap"):
        value = value.unwrap()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, int | float) else repr(value)


def apply_config_sets(contents: Mapping[str, bytes], sets: Mapping[str, str]) -> tuple[dict[str, bytes],
                                                                                      list[FlagChange]]:
    """Apply ``FILE:key.path=VALUE`` overrides to the bundled files; returns changed files and the changes."""
    by_file: dict[str, list[tuple[str, list[str], str]]] = {}
    for target, raw in sets.items():
        file, _, path = target.rpartition(":")
        if file not in contents:
            close = difflib.get_close_matches(file, sorted(n for n in contents if n.lower().endswith(SUFFIXES)), n=1)
            raise ConfigError(f"--set {target}: {file} is not among the bundled files"
                              + (f" (did you mean {close[0]}?)" if close else "") + ".",
                              hint="Give the path relative to the project root, and check that no ignore rule "
                                   "leaves it out (kagglekit -v bundle lists the files).")
        by_file.setdefault(file, []).append((target, path.split("."), raw))
    out: dict[str, bytes] = {}
    changes: list[FlagChange] = []
    for file, edits in sorted(by_file.items()):
        try:
            text = contents[file].decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"{file} is not UTF-8 text, so --set cannot change it.") from None
        low = file.lower()
        handler = _json if low.endswith(".json") else _toml if low.endswith(".toml") else _yaml
        new_text, file_changes = handler(file, text, edits)
        out[file] = new_text.encode("utf-8")
        changes += file_changes
    return out, changes
