"""``--set FILE:key.path=VALUE`` on the YAML, JSON and TOML config files a project reads.

Only the bundled copy changes. YAML goes through ruamel.yaml's round-trip mode and TOML through
tomlkit, so comments, key order and quoting of everything else stay as written; JSON keeps its
key order and indentation. The key must already exist (a typo would otherwise add a key the
project never reads), and the new value must fit the old one's type, as for Python attributes.
"""

from __future__ import annotations

import difflib
import io
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kagglekit.errors import BundleError, ConfigError
from kagglekit.testflag import FLAG_NAMES, FlagChange, parse_value

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


# Booleans only in YAML 1.1 (PyYAML, which Kaggle's image and most projects read YAML with): ruamel.yaml reads
# them as text (YAML 1.2), so a project's `amp: yes` would look like a string here and --set amp=false
# would write 'false', a string, which is true.
_YAML11_BOOL = re.compile(r"yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF")


def _yaml_tools() -> tuple[Any, Any]:
    """ruamel.yaml's round-trip YAML, and a float type it writes in a form YAML 1.1 and 1.2 both read as a float.

    Python writes 1e-07; PyYAML (YAML 1.1) reads that as the string '1e-07' (its floats need a dot), so a
    --set lr=1e-7 would hand the project a string. 1.0e-07 is a float for every YAML reader.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.anchor import Anchor
    from ruamel.yaml.representer import RoundTripRepresenter

    class Float(float):
        """A float written the YAML 1.1 way; optionally carrying an anchor (&name) that aliases follow."""

        anchor: Any = None

        def with_anchor(self, name: str | None) -> Float:
            if name:
                self.anchor = Anchor()
                self.anchor.value, self.anchor.always_dump = name, True
            return self

    class Representer(RoundTripRepresenter):  # a subclass: the registration below stays out of ruamel's own
        def represent_yaml11_float(self, data: Any) -> Any:
            text = repr(float(data)).lower()
            if text in ("nan", "inf", "-inf"):
                text = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[text]
            elif "e" in text and "." not in text.split("e")[0]:
                text = text.replace("e", ".0e", 1)
            return self.represent_scalar("tag:yaml.org,2002:float", text, anchor=data.anchor)

    Representer.add_representer(Float, Representer.represent_yaml11_float)
    yaml = YAML(typ="rt")
    yaml.Representer = Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    return yaml, Float


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) the file itself uses, so a dump keeps its layout.

    ruamel.yaml writes one indentation for the whole file; without this a 4-space file came back 2-space.
    """
    maps: list[int] = []
    seqs: list[tuple[int, int]] = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for above, line in itertools.pairwise(lines):
        head = above.split(" #")[0].rstrip()
        if not head.endswith(":") or head.lstrip().startswith("- "):
            continue
        col = len(above) - len(above.lstrip(" "))
        inner = len(line) - len(line.lstrip(" "))
        if line.lstrip().startswith("- "):
            after = line.lstrip()[1:]
            seqs.append((inner - col, inner + 1 + len(after) - len(after.lstrip(" ")) - col))
        elif inner > col:
            maps.append(inner - col)
    mapping = max(set(maps), key=maps.count) if maps else 2
    offset, sequence = max(set(seqs), key=seqs.count) if seqs else (0, 2)
    return mapping, max(sequence, offset + 2), offset


def _occurrences(data: Any) -> dict[int, list[tuple[Any, Any, str]]]:
    """Every place each anchored node is used, in document order: the first is its &anchor, the rest *aliases."""
    found: dict[int, list[tuple[Any, Any, str]]] = {}
    seen: set[int] = set()

    def walk(node: Any, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            here = f"{path}.{key}" if path else str(key)
            anchor = getattr(getattr(child, "anchor", None), "value", None)
            if anchor is not None:
                found.setdefault(id(child), []).append((node, key, here))
            if isinstance(child, Mapping | list):
                walk(child, here)

    walk(data, "")
    return {k: v for k, v in found.items() if len(v) > 1}


def _read_as(old: Any) -> Any:
    """The value a project's YAML reader sees: `yes`/`off` are booleans to PyYAML, and so is an anchored true."""
    from ruamel.yaml.scalarbool import ScalarBoolean

    if isinstance(old, ScalarBoolean):
        return bool(old)
    if type(old) is str and _YAML11_BOOL.fullmatch(old):
        return old.lower() in ("yes", "on")
    return old


def _yaml_node(value: Any, old: Any, float_type: Any, anchor: str | None = None) -> Any:
    """``value`` as ruamel.yaml should write it: 1.1-safe floats, the old quoting, text quoted where needed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarbool import ScalarBoolean
    from ruamel.yaml.scalarint import ScalarInt
    from ruamel.yaml.scalarstring import PlainScalarString, ScalarString, SingleQuotedScalarString

    if isinstance(value, bool):
        return ScalarBoolean(value, anchor=anchor) if anchor else value
    if isinstance(value, int):
        return ScalarInt(value, anchor=anchor) if anchor else value
    if isinstance(value, float):
        return float_type(value).with_anchor(anchor)
    if isinstance(value, str):
        style = type(old) if isinstance(old, ScalarString) and type(old) is not PlainScalarString else None
        if style is None and _needs_quotes(value):
            style = SingleQuotedScalarString
        if style is not None:
            return style(value, anchor=anchor) if anchor else style(value)
        return PlainScalarString(value, anchor=anchor) if anchor else value
    if isinstance(value, list | tuple):
        seq = CommentedSeq([_yaml_node(v, None, float_type) for v in value])
        if isinstance(old, CommentedSeq) and old.fa.flow_style():
            seq.fa.set_flow_style()
        if anchor:
            seq.yaml_set_anchor(anchor, always_dump=True)
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap((k, _yaml_node(v, None, float_type)) for k, v in value.items())
        if anchor:
            mapping.yaml_set_anchor(anchor, always_dump=True)
        return mapping
    return value


def _needs_quotes(text: str) -> bool:
    """Whether plain ``text`` would be read as something other than text by a YAML 1.1 or 1.2 reader."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver

    return any(VersionedResolver(version=v).resolve(ScalarNode, text, (True, False)) != "tag:yaml.org,2002:str"
               for v in ((1, 1), (1, 2)))


def _plain(data: Any) -> dict[str, Any]:
    """path -> value of every mapping key, as a reader sees them (aliases resolved; a list is one value)."""
    out: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        else:
            out[path] = node

    walk(data, "")
    return out


def _reader_view(text: str) -> dict[str, Any] | None:
    """The document as plain data (see _plain); None when a safe reader cannot load it (custom !tags)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return _plain(YAML(typ="safe", pure=True).load(text))
    except YAMLError:
        return None


def _yaml(file: str, text: str, edits: list[tuple[str, list[str], str]]) -> tuple[str, list[FlagChange]]:
    from ruamel.yaml.error import YAMLError

    yaml, float_type = _yaml_tools()
    yaml.indent(*_guess_indent(text))
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise BundleError(f"{file} is not valid YAML, so --set cannot change it: {exc}".splitlines()[0]) from None
    before = _reader_view(text)
    changes = []
    asked: set[str] = set()
    for target, keys, raw in edits:
        parent, key = _walk(target, data, keys)
        old = parent[key]
        line = _line_at(data, ".".join(keys))
        read_as = _read_as(old)
        new = _fit(target, raw, read_as)
        uses = _occurrences(data).get(id(old), [])
        if uses and uses[0][0] is parent and uses[0][1] == key:
            # the key holds &anchor: the value changes wherever the file aliases it, as YAML means
            node = _yaml_node(new, old, float_type, anchor=old.anchor.value)
            for holder, where, _ in uses:
                holder[where] = node
        else:
            if uses:  # an *alias replaced by its own value: drop the anchor's comment ruamel.yaml copied to it
                owner, owner_key = uses[0][0], uses[0][1]
                mine, theirs = (getattr(c, "ca", None) for c in (parent, owner))
                if mine is not None and theirs is not None and key in mine.items and owner_key in theirs.items \
                        and mine.items[key][2] is theirs.items[owner_key][2]:
                    mine.items[key][2] = None
            parent[key] = _yaml_node(new, old, float_type)
        asked.add(".".join(keys))
        shown = old if type(old) is str and read_as is not old else _show(read_as)  # `yes` stays `yes`
        changes.append(FlagChange(file, line, ".".join(keys), shown, _show(new)))
    buf = io.StringIO()
    yaml.dump(data, buf)
    out = buf.getvalue()
    after = _reader_view(out) if before is not None else None
    if before is not None and after is not None:  # keys that changed with the asked ones: *aliases, << merges
        for path in sorted(set(before) | set(after)):
            inside = any(path == a or path.startswith(a + ".") or a.startswith(path + ".") for a in asked)
            if not inside and before.get(path) != after.get(path):
                changes.append(FlagChange(file, _line_at(data, path), f"{path} (via an alias)",
                                          _show(before.get(path)), _show(after.get(path))))
    return out, changes


def _line_at(data: Any, path: str) -> int:
    """The line of ``path`` (a.b.0) in the loaded document, else of the nearest key above it that has one."""
    node: Any = data
    keys = path.split(".")
    found = 0
    try:
        for depth, key in enumerate(keys):
            index: Any = int(key) if isinstance(node, list) else key
            found = _yaml_line(node, index) or found
            if depth < len(keys) - 1:
                node = node[index]
    except (KeyError, IndexError, ValueError, TypeError):
        pass
    return found


def _yaml_line(parent: Any, key: Any) -> int:
    lc = getattr(parent, "lc", None)
    if lc is None:
        return 0
    try:
        return int((lc.key(key) if isinstance(parent, Mapping) else lc.item(key))[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return 0


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


def _config_doc(rel: str, data: bytes) -> Any:
    """A bundled config file as plain data, or None (not UTF-8, not parseable, too big to be a config)."""
    import tomllib

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if len(data) > 1_000_000:
        return None
    low = rel.lower()
    try:
        text = data.decode("utf-8-sig")
        if low.endswith(".json"):
            return json.loads(text)
        if low.endswith(".toml"):
            return tomllib.loads(text)
        return YAML(typ="safe", pure=True).load(text)
    except (UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError, YAMLError, RecursionError):
        return None  # a file that will not parse has no keys to compare


def _key_paths(node: Any, path: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(node, Mapping):
            out.append((here, child))
        out += _key_paths(child, here)
    return out


def _filled_from_data(contents: Mapping[str, bytes], change: FlagChange) -> bool:
    """Whether some code fills the class of ``change`` from a mapping: ``Config(**opts)``, ``setattr(CFG, k, v)``,
    ``CFG.__dict__.update(d)``, pydantic/dacite/OmegaConf loaders, or setattr(cls/self) in the class's own file."""
    cls = change.name.rpartition(":")[2].rpartition(".")[0].rpartition(".")[2]
    name = re.escape(cls)
    outside = re.compile(rf"setattr\(\s*{name}\b|\b{name}\s*\(\s*\*\*|\b{name}\.__dict__\.update\("
                         rf"|\b{name}\.(?:parse_obj|model_validate|from_dict|from_yaml|from_json)\("
                         rf"|(?:from_dict|structured)\(\s*{name}\b")
    inside = re.compile(r"setattr\(\s*(?:cls|self)\s*,|\bcls\s*\(\s*\*\*|(?:cls|self)\.__dict__\.update\(")
    own_file = change.file.split(" cell ")[0]
    for rel, data in contents.items():
        if not rel.endswith((".py", ".ipynb")):
            continue
        text = data.decode("utf-8", "replace")
        if outside.search(text) or (rel == own_file and f"class {cls}" in text and inside.search(text)):
            return True
    return False


def keys_that_may_win(contents: Mapping[str, bytes], changes: Sequence[FlagChange]) -> list[str]:
    """``--set CFG.epochs`` when a bundled config file has an ``epochs`` key too: the file may win.

    Competition code often keeps defaults in a class and overrides them from YAML
    (``Config(**yaml.safe_load(f))``, ``setattr(CFG, k, v)``): then the class attribute --set changed is
    never read, and the report would show a change that does not happen.
    """
    attrs: dict[str, FlagChange] = {}
    set_keys = {(c.file, c.name) for c in changes if c.file.lower().endswith(SUFFIXES)}
    for change in changes:
        cls, _, attr = change.name.rpartition(":")[2].rpartition(".")
        if cls and attr not in FLAG_NAMES and not change.file.lower().endswith(SUFFIXES):
            attrs.setdefault(attr, change)
    attrs = {a: c for a, c in attrs.items() if _filled_from_data(contents, c)}
    out = []
    for attr, change in attrs.items():
        where = [hit for hit in keys_named(contents, attr) if (hit[0], hit[1]) not in set_keys]
        if not where:
            continue
        rel, path, value = where[0]
        more = f" (and {len(where) - 1} more)" if len(where) > 1 else ""
        qualname = change.name.rpartition(":")[2]
        out.append(f"--set {qualname}: {rel} has the key {path}: {_show(value)}{more}; if the code fills "
                   f"{qualname.rpartition('.')[0]} from that file, its value wins and {change.file}:{change.line} "
                   f"is never used: --set {rel}:{path} instead")
    return out


def keys_named(contents: Mapping[str, bytes], attr: str, prefer: Sequence[str] = ()) -> list[tuple[str, str, Any]]:
    """Bundled config file keys called ``attr`` (any depth, scalar values): ``(file, key path, value)``.

    For ``--set Config.epochs`` when no class has that attribute because the code fills it from a YAML
    file (``setattr(self, key, value)`` over ``yaml.safe_load``): the key to set is in the file. Files in
    ``prefer`` (the entry's arguments, working-files) come first, as the ones the run reads.
    """
    hits: list[tuple[str, str, Any]] = []
    for rel in sorted(contents, key=lambda r: (r not in prefer, r)):
        if not rel.lower().endswith(SUFFIXES):
            continue
        doc = _config_doc(rel, contents[rel])
        hits += [(rel, path, value) for path, value in (_key_paths(doc) if doc is not None else ())
                 if path.rpartition(".")[2] == attr and not isinstance(value, Mapping | list)]
    return hits
