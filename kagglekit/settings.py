"""Project settings: ``[tool.kagglekit]`` in pyproject.toml or a ``kagglekit.toml``.

Precedence (docs/settings.md): command line > ``KAGGLEKIT_*`` environment > project
file > defaults. Every bad value raises ``ConfigError`` naming the field, where the
value came from (file, variable or option) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kagglekit import constants
from kagglekit.errors import ConfigError, shown
from kagglekit.kernel_ref import OWNER_CHARS

PROJECT_FILE = "kagglekit.toml"
PYPROJECT_FILE = "pyproject.toml"
ENV_PREFIX = "KAGGLEKIT_"

ACCELERATOR_ALIASES = {"cpu": "None", "none": "None", "gpu": constants.SHAPE_GPU_DEFAULT,
                       "tpu": constants.SHAPE_TPU_DEFAULT}


@dataclasses.dataclass(frozen=True)
class ProjectSettings:
    """Resolved settings of one project (all precedence levels applied)."""

    root: Path
    config_file: Path | None = None
    kernel_owner: str | None = None  # None: filled from the account at push time
    kernel_slug: str | None = None
    title: str | None = None  # None: derived from the slug
    entry: str | None = None  # "pkg.train" (module) or "train.py" (script)
    code_file: str | None = None  # None: "<slug>.py"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    competitions: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    accelerator: str = "cpu"  # "cpu" | "gpu" | "tpu" | a machine shape
    internet: bool | None = None  # None: on, except off when a competition is attached
    private: bool = True
    timeout_s: int | None = None  # None: Kaggle's session limit for the accelerator
    exit_grace_s: int = constants.EXIT_GRACE_SECONDS  # the process is ended this long after the run ended
    checkpoints: tuple[str, ...] = constants.DEFAULT_CHECKPOINT_PATTERNS
    output_budget_bytes: int = constants.OUTPUT_BUDGET_BYTES
    test_flag: str | None = None  # "config.py:Config.running_test"; None: search for it
    test_flag_enabled: bool = True  # test-flag = false: the project reads KAGGLEKIT_MODE itself
    requirements: tuple[str, ...] = ()  # () = requirements.txt, else [project].dependencies; "none" = ignore
    deps: str = "auto"  # auto | install | vendor | none: how a kernel gets what Kaggle's image lacks
    args: tuple[str, ...] = ()  # command-line arguments for the entry point, every run
    test_args: tuple[str, ...] = ()  # added after ``args`` in test mode (--test)
    sets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # `set`: --set NAME=VALUE, every run
    test_sets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # `test-set`: in test mode
    working_files: tuple[str, ...] = ()  # project files copied into /kaggle/working before the entry runs
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # environment variables set in the kernel
    experiments: tuple[Mapping[str, Any], ...] = ()  # the `experiments` table as written (experiments.py)

    def sets_for(self, mode: str | None, given: Mapping[str, str] | None = None) -> dict[str, str]:
        """The --set overrides of a run: ``set``, then ``test-set`` in test mode, then the command line's."""
        return {**self.sets, **(self.test_sets if mode == "test" else {}), **(given or {})}
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict)  # field -> where its value came from
    warnings: tuple[str, ...] = ()

    @property
    def kernel_id(self) -> str | None:
        if self.kernel_slug is None:
            return None
        return f"{self.kernel_owner}/{self.kernel_slug}" if self.kernel_owner else self.kernel_slug

    @property
    def machine_shape(self) -> str:
        """The ``machine_shape`` to write: a shape name, or ``"None"`` for CPU."""
        return ACCELERATOR_ALIASES.get(self.accelerator.lower(), self.accelerator)

    @property
    def accelerator_kind(self) -> str:
        return constants.accelerator_kind(self.machine_shape)

    @property
    def enable_internet(self) -> bool:
        return self.internet if self.internet is not None else not self.competitions

    @property
    def session_limit_s(self) -> int:
        return self.timeout_s or constants.SESSION_LIMIT_SECONDS[self.accelerator_kind]

    @property
    def resolved_title(self) -> str | None:
        if self.title:
            return self.title
        return title_from_slug(self.kernel_slug) if self.kernel_slug else None

    @property
    def resolved_code_file(self) -> str:
        return self.code_file or f"{self.kernel_slug or 'kernel'}.py"

    def origin(self, field: str) -> str:
        return self.origins.get(field, "default")

    def with_owner(self, owner: str) -> ProjectSettings:
        """A copy with the kernel owner filled in (from the account, at push time)."""
        return dataclasses.replace(self, kernel_owner=owner)


def title_from_slug(slug: str) -> str:
    """``my-mnist-run`` -> ``My Mnist Run`` (whose slugified form is the slug again)."""
    title = " ".join(part.capitalize() for part in slug.split("-"))
    return title if slugify(title) == slug else slug


def slugify(text: str) -> str:
    from slugify import slugify as _slugify  # the same function `kaggle kernels push` uses

    result: str = _slugify(text)
    return result


class _Bad(Exception):
    """A value that does not fit; the text says what is allowed."""


# re.ASCII: \d is 0-9 only (float() would read '9\U0001d7d9\u0661' as 911: never a value anyone typed)
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$",
                          re.IGNORECASE | re.ASCII)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
               "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


MAX_NUMBER_DIGITS = 30  # longer digit runs are typos or attacks, never a duration or a size


def _finite(text_or_number: object, allowed: str) -> float:
    """A finite float from an int, float or digit string; ``_Bad`` for inf, nan and absurd lengths."""
    if isinstance(text_or_number, int) and abs(text_or_number) >= 10**MAX_NUMBER_DIGITS:
        raise _Bad(allowed + f" (a number of at most {MAX_NUMBER_DIGITS} digits)")
    if isinstance(text_or_number, str) and len(text_or_number.split(".")[0]) > MAX_NUMBER_DIGITS:
        raise _Bad(allowed + f" (a number of at most {MAX_NUMBER_DIGITS} digits)")
    try:
        number = float(text_or_number)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise _Bad(allowed) from None
    if not math.isfinite(number):
        raise _Bad(allowed + " (a finite number, not inf or nan)")
    return number


def parse_duration(value: object) -> int:
    """``"11h"``, ``"90m"``, ``"1h30m"``, ``"3600"`` or an int -> whole seconds, at least 1.

    A value that rounds to 0 s is refused: 0 would mean "no timeout set", i.e. the full 12 h.
    """
    allowed = "a duration such as '11h', '90m', '1h30m' or a number of seconds"
    if isinstance(value, bool):
        raise _Bad(allowed)
    if isinstance(value, int | float):
        seconds = _finite(value, allowed)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            seconds = _finite(text, allowed)
        else:
            m = _DURATION_RE.match(text)
            if not text or not m or not any(m.groups()):
                raise _Bad(allowed)
            h, mi, s = (_finite(g, allowed) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
    else:
        raise _Bad(allowed)
    if seconds <= 0:
        raise _Bad("a positive duration such as '11h' or '90m'")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise _Bad(f"a duration up to Kaggle's session limit (12h), not {seconds:.3g} seconds")
    if round(seconds) < 1:
        raise _Bad(f"a duration of at least 1 second ({seconds:g} s rounds to 0, which would mean no limit)")
    return round(seconds)


MAX_DURATION_S = 7 * 24 * 3600  # far above any session limit: the limit check after parsing says the rest


def parse_size(value: object) -> int:
    """``"20GB"``, ``"500 MB"``, ``"1.5GiB"`` or an int -> bytes (GB = 10^9, GiB = 2^30)."""
    allowed = "a size such as '20GB', '500MB', '1.5GiB' or a number of bytes"
    if isinstance(value, bool):
        raise _Bad(allowed)
    if isinstance(value, int):
        n = _finite(value, allowed)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or (m.group(2) or "").lower() not in _SIZE_UNITS:
            raise _Bad(allowed)
        n = _finite(m.group(1), allowed) * _SIZE_UNITS[(m.group(2) or "").lower()]
    else:
        raise _Bad(allowed)
    if n <= 0:
        raise _Bad("a positive size such as '20GB'")
    if not math.isfinite(n) or n > MAX_SIZE_BYTES:
        raise _Bad(f"a size up to {MAX_SIZE_BYTES // 1000**4} TB, not {n:.3g} bytes")
    if int(n) < 1:
        raise _Bad(f"a size of at least 1 byte ({value!r} is {n:g} bytes, which would mean nothing may be written)")
    return int(n)


MAX_SIZE_BYTES = 1000**5  # 1 PB: far above any Kaggle limit; the limit checks after parsing say the rest


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise _Bad("true or false")


def field_is_bool(key: str) -> bool:
    """Settings whose file value must be a TOML boolean (strings are for environment variables)."""
    return FIELDS.get(key) is parse_bool


def _str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("a non-empty string")
    return value.strip()


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Bad("a list of strings, e.g. [\"a\", \"b\"]")
    return tuple(v.strip() for v in value)


_SLUG_CHARS = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def parse_kernel(value: object) -> tuple[str | None, str]:
    """``owner/slug`` or a bare ``slug`` (owner filled from the account later)."""
    text = _str(value)
    parts = text.split("/")
    if len(parts) > 2:
        raise _Bad("'owner/slug' or 'slug' (no version: the version is chosen by Kaggle at push)")
    owner, slug = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    if owner is not None and not OWNER_CHARS.fullmatch(owner):  # the one rule, kernel_ref's
        raise _Bad("'owner/slug' with your Kaggle username (letters, digits, '-' or '_') as owner, "
                   "or just 'slug' to use your account")
    if not slug:
        raise _Bad("'owner/slug' with a non-empty slug")
    if len(slug) < constants.MIN_SLUG_LENGTH:
        raise _Bad(f"a slug of at least {constants.MIN_SLUG_LENGTH} characters ('{slug}' has {len(slug)})")
    if not _SLUG_CHARS.match(slug):
        raise _Bad(f"a slug of lowercase letters, digits and hyphens, such as '{slugify(slug) or 'my-kernel'}'")
    return owner, slug


def parse_title(value: object) -> str:
    title = _str(value)
    if len(title) < constants.MIN_TITLE_LENGTH:
        raise _Bad(f"a title of at least {constants.MIN_TITLE_LENGTH} characters")
    return title


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def parse_entry(value: object) -> str:
    text = _str(value)
    if text.endswith((".py", ".ipynb")):
        if text.startswith("/") or ".." in Path(text).parts:
            raise _Bad("a script or notebook path relative to the project root, e.g. 'train.py', "
                       "'scripts/train.py' or 'train.ipynb'")
        return Path(text).as_posix()
    if re.fullmatch(rf"{_IDENT}(\.{_IDENT})*", text):
        return text
    raise _Bad("a module such as 'mypkg.train', a script such as 'train.py' or a notebook such as 'train.ipynb'")


def parse_code_file(value: object) -> str:
    text = _str(value)
    if "/" in text or "\\" in text or not text.endswith((".py", ".ipynb")):
        raise _Bad("a file name ending in .py (or .ipynb for a notebook entry), without folders, e.g. 'kernel.py'")
    return text


def parse_accelerator(value: object) -> str:
    text = _str(value)
    if text.lower() in ACCELERATOR_ALIASES:
        return text.lower()
    known = constants.GPU_SHAPES | constants.TPU_SHAPES
    if text in known:
        return text
    close = difflib.get_close_matches(text, sorted(known), n=1)
    extra = f" (did you mean '{close[0]}'?)" if close else ""
    raise _Bad("'gpu' (T4 x2), 'tpu' (v5e-8), 'cpu' or a machine shape such as 'NvidiaTeslaT4' or "
               f"'TpuV5E8'{extra}")


def resolve_machine_shape(value: str, origin: str = "--accelerator") -> str:
    """'gpu' / 'tpu' / 'cpu' / a shape -> the machine_shape to write; ConfigError if unknown."""
    try:
        alias = parse_accelerator(value)
    except _Bad as exc:
        raise ConfigError(f"{origin} {value!r} is not valid: expected {exc}.",
                          hint="docs/settings.md lists the accelerators.") from None
    return ACCELERATOR_ALIASES.get(alias.lower(), alias)


def parse_test_flag(value: object) -> str | None:
    if value is False or (isinstance(value, str) and value.strip().lower() in {"false", "none", "off"}):
        return None
    text = _str(value)
    m = re.fullmatch(rf"([^:]+\.(?:py|ipynb)):({_IDENT}(?:\.{_IDENT})*)\.({_IDENT})", text)
    if not m:
        raise _Bad("'FILE.py:Class.attribute' (or FILE.ipynb:...), e.g. 'config.py:Config.running_test', or false to leave "
                   "the sources alone (the project reads KAGGLEKIT_MODE itself)")
    return text


def parse_args_list(value: object) -> tuple[str, ...]:
    """``["--epochs", "10"]``: the entry point's arguments (a TOML list of strings; numbers are taken as text)."""
    allowed = 'a list of command-line arguments, e.g. ["--epochs", "10", "--fold", "0"]'
    if isinstance(value, str):  # environment variable: split as a shell would
        import shlex

        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise _Bad(f"{allowed} ({exc})") from None
    if not isinstance(value, list):
        raise _Bad(allowed)
    out: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _Bad(f"{allowed}; {item!r} is not a string or a number")
        text = str(item)
        if "\x00" in text:
            raise _Bad(f"{allowed}; {item!r} holds a NUL byte, which no command line can carry")
        out.append(text)
    return tuple(out)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_PY_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
SET_EXAMPLES = ("E.g. --set n_epoch=1 (a Config attribute or module constant), --set CFG.lr=3e-4, "
                "--set config.py:EPOCHS=1, --set configs/base.yaml:train.epochs=1.")


def parse_set_target(name: str) -> tuple[str | None, str]:
    """``"configs/a.yaml:train.epochs"`` -> ``("configs/a.yaml", "train.epochs")``; ``"lr"`` -> ``(None, "lr")``.

    Raises ConfigError when the target is none of: NAME, Class.NAME, FILE.py:[Class.]NAME,
    FILE.yaml|yml|json|toml:key.path.
    """
    file, sep, key = name.rpartition(":")
    if not sep:
        if not _NAME.match(name):
            raise ConfigError(f"--set {name!r}: not a NAME or Class.NAME.", hint=SET_EXAMPLES)
        return None, name
    file = file.strip().replace("\\", "/")
    if not file or file.startswith("/") or ".." in file.split("/"):
        raise ConfigError(f"--set {name!r}: {file or 'the file'!r} is not a path relative to the project root.",
                          hint=SET_EXAMPLES)
    if file.endswith(".py"):
        if not _PY_TARGET.match(key):
            raise ConfigError(f"--set {name!r}: after {file}: comes a NAME or Class.NAME, not {key!r}.",
                              hint=SET_EXAMPLES)
    elif file.lower().endswith(CONFIG_SUFFIXES):
        if not key or any(not part.strip() for part in key.split(".")):
            raise ConfigError(f"--set {name!r}: after {file}: comes a key path such as train.epochs, not {key!r}.",
                              hint=SET_EXAMPLES)
    else:
        raise ConfigError(f"--set {name!r}: {file} is neither a .py file nor a .yaml/.yml/.json/.toml config file.",
                          hint=SET_EXAMPLES)
    return file, key


def parse_set_table(value: object) -> dict[str, str]:
    """``{"EPOCHS" = 1, "configs/base.yaml:train.lr" = 3e-4}``: --set NAME=VALUE pairs kept in the file."""
    allowed = ('a table of --set NAME = VALUE pairs, e.g. { "CFG.epochs" = 1, '
               '"configs/base.yaml:train.epochs" = 1 }')
    out: dict[str, str] = {}
    for name, raw in _scalar_table(value, allowed):
        try:
            parse_set_target(name)
        except ConfigError as exc:
            raise _Bad(f"{allowed}; {exc.message}") from None
        out[name] = ("True" if raw else "False") if isinstance(raw, bool) else str(raw)
    return out


def _scalar_table(value: object, allowed: str) -> list[tuple[str, object]]:
    """A table of string/number/boolean values, or ``NAME=VALUE,NAME=VALUE`` from an environment variable."""
    if isinstance(value, str):
        value = dict(item.split("=", 1) for item in value.split(",") if "=" in item) or value
    if not isinstance(value, dict):
        raise _Bad(allowed)
    for name, raw in value.items():
        if isinstance(raw, dict | list) or raw is None:
            raise _Bad(f"{allowed}; the value of {str(name).strip()!r} is not a string, number or boolean")
    return [(str(name).strip(), raw) for name, raw in value.items()]


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SECRET_ENV_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|_KEY$|^KAGGLE_KEY$|CREDENTIAL)", re.I)
RESERVED_ENV = re.compile(r"(KAGGLEKIT_|KAGGLE_|PYTHONPATH\Z|PYTHONUNBUFFERED\Z)")


def parse_env_table(value: object) -> dict[str, str]:
    """``{WANDB_MODE = "offline"}``: variables the kernel sets before the entry runs (never secrets).

    The kernel's source is readable by anyone who can see the kernel, so a name that looks like a
    secret is refused; names kagglekit or Kaggle set themselves would be overwritten or break the run.
    """
    allowed = 'a table of environment variables, e.g. { WANDB_MODE = "offline" }'
    out: dict[str, str] = {}
    for name, raw in _scalar_table(value, allowed):
        if not ENV_NAME.match(name):
            raise _Bad(f"{allowed}; {name!r} is not a variable name (letters, digits and _, not first a digit)")
        if SECRET_ENV_NAME.search(name):
            raise _Bad(f"{allowed}, without secrets: {name} looks like one, and the kernel's source is readable by "
                       "anyone who can see the kernel. Attach secrets in the Kaggle editor (Add-ons > Secrets) "
                       "and read them with kaggle_secrets.UserSecretsClient")
        if RESERVED_ENV.match(name):
            raise _Bad(f"{allowed}; {name} is set by kagglekit or Kaggle in the kernel")
        out[name] = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    return out


def parse_working_files(value: object) -> tuple[str, ...]:
    items = _str_list(value)
    for item in items:
        if item.startswith("/") or ".." in Path(item).parts:
            raise _Bad(f"paths relative to the project root, such as 'config.toml' or 'configs' ('{item}' is not)")
    return tuple(Path(item).as_posix() for item in items)


def _validate_sources(kind: str) -> Callable[[object], tuple[str, ...]]:
    def parse(value: object) -> tuple[str, ...]:
        items = _str_list(value)
        for item in items:
            parts = item.split("/")
            if kind == "datasets" and not (2 <= len(parts) <= 3 and all(parts)):
                raise _Bad(f"'owner/dataset-slug' entries ('{item}' is not)")
            if kind == "kernels" and not (2 <= len(parts) <= 3 and all(parts)
                                          and len(parts[1]) >= constants.MIN_SLUG_LENGTH):
                raise _Bad(f"'owner/kernel-slug' entries with a slug of at least 5 characters ('{item}' is not)")
            if kind == "models" and not (len(parts) == 5 and all(parts) and parts[4].isdigit()):
                raise _Bad(f"'owner/model/framework/variation/version' entries ('{item}' is not)")
            if kind == "competitions" and (len(parts) != 1 or not item):
                raise _Bad(f"competition slugs such as 'titanic' ('{item}' is not)")
        return items

    return parse


def parse_deps(value: object) -> str:
    text = _str(value).strip().lower()
    if text not in ("auto", "install", "vendor", "none"):
        raise _Bad("auto, install, vendor or none")
    return text


def _experiments(value: object) -> tuple[Any, ...]:
    """The ``experiments`` table, kept as written: kagglekit/experiments.py reads it (for `queue run`)."""
    if isinstance(value, Mapping):
        return tuple({"name": str(k), **v} if isinstance(v, Mapping) else {"name": str(k), "bad": v}
                     for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return tuple(dict(v) for v in value)
    raise _Bad("a table of experiments, e.g. [tool.kagglekit.experiments.small-lr] with set = { lr = \"1e-4\" }")


def _exit_grace(value: object) -> int:
    seconds = parse_duration(value)
    longest = max(constants.SESSION_LIMIT_SECONDS.values())
    if seconds > longest:
        raise _Bad(f"a duration up to the session limit ({longest // 3600}h); {seconds}s could never pass")
    return seconds


def _budget(value: object) -> int:
    n = parse_size(value)
    if n > constants.OUTPUT_BUDGET_BYTES:
        raise _Bad(f"a size up to Kaggle's 20GB output limit ({n:,} bytes is more)")
    return n


# field name -> (parser, attribute names it sets)
FIELDS: dict[str, Callable[[object], Any]] = {
    "kernel": parse_kernel,
    "title": parse_title,
    "entry": parse_entry,
    "code-file": parse_code_file,
    "include": _str_list,
    "exclude": _str_list,
    "datasets": _validate_sources("datasets"),
    "competitions": _validate_sources("competitions"),
    "kernels": _validate_sources("kernels"),
    "models": _validate_sources("models"),
    "accelerator": parse_accelerator,
    "internet": parse_bool,
    "private": parse_bool,
    "timeout": parse_duration,
    "exit-grace": _exit_grace,
    "checkpoints": _str_list,
    "output-budget": _budget,
    "test-flag": parse_test_flag,
    "requirements": _str_list,
    "deps": parse_deps,
    "args": parse_args_list,
    "test-args": parse_args_list,
    "set": parse_set_table,
    "test-set": parse_set_table,
    "working-files": parse_working_files,
    "env": parse_env_table,
    "experiments": _experiments,
}

LIST_FIELDS = frozenset({"include", "exclude", "datasets", "competitions", "kernels", "models", "checkpoints",
                         "requirements", "working-files"})


def env_var(field: str) -> str:
    """``output-budget`` -> ``KAGGLEKIT_OUTPUT_BUDGET``."""
    return ENV_PREFIX + field.upper().replace("-", "_")


def find_project_root(start: Path) -> tuple[Path, Path | None]:
    """Walk up from ``start`` to the first folder with kagglekit.toml or a [tool.kagglekit] pyproject.

    Returns (root, config file); with no file found, ``start`` is the root.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return folder, candidate
        pyproject = folder / PYPROJECT_FILE
        if pyproject.is_file() and _has_tool_table(pyproject):
            return folder, pyproject
    return start, None


def _has_tool_table(pyproject: Path) -> bool:
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")  # _read_table reports bad bytes
    except OSError:
        return False
    # cheap pre-check before parsing; the real parse (with errors reported) happens in _read_table
    return re.search(r"^\s*\[\s*tool\s*\.\s*kagglekit\s*[\].]", text, re.MULTILINE) is not None


PYPROJECT_TABLES = frozenset({"build-system", "project", "tool", "dependency-groups"})  # PEP 517/518/621/735


def _read_table(path: Path, warnings: list[str] | None = None) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, ValueError) as exc:  # ValueError: e.g. an integer over 4300 digits
        raise ConfigError(f"{path} is not valid TOML: {exc}.",
                          hint="Fix the syntax (see https://toml.io); docs/settings.md has an example.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None
    if path.name == PYPROJECT_FILE:
        table = data.get("tool", {}).get("kagglekit", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.kagglekit] must be a table.")
        _outside_the_tool_table(path, data, warnings)
        return table
    return data


def _outside_the_tool_table(path: Path, data: Mapping[str, Any], warnings: list[str] | None) -> None:
    """A kagglekit setting written outside [tool.kagglekit] (a top-level ``[test-set]``) is an error, as an
    unknown key inside it is: read nowhere, it would silently change nothing. Other non-standard top-level
    tables are another tool's business: a warning that kagglekit does not read them."""
    for key, value in data.items():
        if key in PYPROJECT_TABLES:
            continue
        if key in FIELDS or key.replace("_", "-") in FIELDS:
            field = key.replace("_", "-")
            written = f"[{key}]" if isinstance(value, dict) else f"{key} = ..."
            where = f"[tool.kagglekit.{field}]" if isinstance(value, dict) else f"{field} = ... under [tool.kagglekit]"
            raise ConfigError(f"{path}: {written} is a kagglekit setting outside [tool.kagglekit], where kagglekit "
                              "never reads it.", hint=f"Write it as {where} (docs/settings.md).")
        if warnings is not None:
            warnings.append(f"{path}: top-level {f'[{key}]' if isinstance(value, dict) else repr(key)} is not a "
                            "pyproject.toml table (those are [project], [build-system], [tool.*]); kagglekit "
                            "ignores it and reads only [tool.kagglekit].")


def _where(path: Path) -> str:
    return f"{path} [tool.kagglekit]" if path.name == PYPROJECT_FILE else str(path)


def load_project(start: Path | None = None, overrides: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> ProjectSettings:
    """Find the project from ``start`` (default: cwd) and resolve its settings.

    ``overrides`` are command-line values keyed by field name (``timeout`` or
    ``output_budget``/``output-budget``); ``None`` values are ignored.
    """
    root, config_file = find_project_root(start or Path.cwd())
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    notes: list[str] = []

    def put(field: str, raw: object, origin: str, describe: str) -> None:
        try:
            values[field] = FIELDS[field](raw)
        except (_Bad, ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            # Any parser failure is a bad value, never a kagglekit bug (the class, not just the cases we know).
            expected = str(exc) if isinstance(exc, _Bad) else "a value docs/settings.md describes"
            value = shown(raw) if field != "env" else _names_only(raw)
            raise ConfigError(f"{describe} = {value} is not valid: expected {expected}.",
                              hint=f"Fix {origin}; docs/settings.md lists every setting.") from None
        origins[field] = origin

    if config_file is not None:
        where = _where(config_file)
        for key, raw in _read_table(config_file, notes).items():
            if key not in FIELDS:
                snake = key.replace("_", "-")
                close = [snake] if snake in FIELDS else difflib.get_close_matches(key, list(FIELDS), n=1)
                suggestion = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"{where}: unknown setting '{key}'.{suggestion}",
                    hint="Known settings: " + ", ".join(FIELDS) + " (docs/settings.md).")
            if field_is_bool(key) and not isinstance(raw, bool):
                raise ConfigError(f"{where}: {key} = {raw!r} is not valid: expected true or false (a TOML boolean).",
                                  hint=f"Write {key} = true or {key} = false, without quotes.")
            put(key, raw, str(config_file), f"{where}: {key}")
    for field in FIELDS:
        name = env_var(field)
        if name in env and env[name].strip():
            raw_env: object = env[name]
            if field in LIST_FIELDS:  # comma-separated in the environment (args: split as a shell would)
                raw_env = [v.strip() for v in env[name].split(",") if v.strip()]
            put(field, raw_env, f"the environment variable {name}", name)
    for key, raw in (overrides or {}).items():
        field = key.replace("_", "-")
        if field not in FIELDS:
            raise ConfigError(f"Unknown setting '{key}' given on the command line.")
        if raw is not None:
            put(field, raw, "the command line", f"--{field}")

    return _build(root, config_file, values, origins, notes)


def _names_only(raw: object) -> str:
    """An ``env`` table as its names: a value refused there may be a secret, and error messages get pasted."""
    if isinstance(raw, dict):
        return "{" + ", ".join(f"{name} = ..." for name in raw) + "}"
    return "(value not shown)"


def _build(root: Path, config_file: Path | None, values: dict[str, Any],
           origins: dict[str, str], notes: list[str] | None = None) -> ProjectSettings:
    warnings: list[str] = list(notes or [])
    kw: dict[str, Any] = {}
    if "kernel" in values:
        kw["kernel_owner"], kw["kernel_slug"] = values["kernel"]
    else:
        derived = slugify(root.name)
        if len(derived) >= constants.MIN_SLUG_LENGTH:
            kw["kernel_slug"] = derived
            origins["kernel"] = f"derived from the folder name '{root.name}'"
    for field, attr in (("title", "title"), ("entry", "entry"), ("code-file", "code_file"),
                        ("include", "include"), ("exclude", "exclude"), ("datasets", "datasets"),
                        ("competitions", "competitions"), ("kernels", "kernels"), ("models", "models"),
                        ("accelerator", "accelerator"), ("internet", "internet"), ("private", "private"),
                        ("timeout", "timeout_s"), ("exit-grace", "exit_grace_s"), ("checkpoints", "checkpoints"),
                        ("output-budget", "output_budget_bytes"), ("requirements", "requirements"),
                        ("deps", "deps"), ("args", "args"), ("test-args", "test_args"),
                        ("set", "sets"), ("test-set", "test_sets"), ("working-files", "working_files"),
                        ("env", "env"), ("experiments", "experiments")):
        if field in values:
            kw[attr] = values[field]
    if "test-flag" in values:
        kw["test_flag"] = values["test-flag"]
        kw["test_flag_enabled"] = values["test-flag"] is not None
    settings = ProjectSettings(root=root, config_file=config_file, origins=dict(origins), **kw)

    slug = settings.kernel_slug
    if settings.title and slug and slugify(settings.title) != slug:
        raise ConfigError(
            f"title = {settings.title!r} ({settings.origin('title')}) does not match the kernel slug '{slug}' "
            f"({settings.origin('kernel')}): it slugifies to '{slugify(settings.title)}'.",
            hint=f"Kaggle names a kernel after its title; use a title that slugifies to '{slug}', e.g. "
                 f"'{title_from_slug(slug)}', or change kernel to '{slugify(settings.title)}'.")
    if settings.timeout_s is not None:
        kind = settings.accelerator_kind
        limit = constants.SESSION_LIMIT_SECONDS[kind]
        if settings.timeout_s > limit:
            raise ConfigError(
                f"timeout = {settings.timeout_s}s ({settings.origin('timeout')}) is over Kaggle's "
                f"{limit // 3600}h session limit for {kind.upper()} runs.",
                hint=f"Use at most {limit // 3600}h, or leave timeout unset to get the full limit.")
    if settings.machine_shape in constants.RETIRED_SHAPES:
        warnings.append(constants.RETIRED_SHAPE_WARNING.format(shape=settings.machine_shape))
    return dataclasses.replace(settings, warnings=tuple(warnings))
