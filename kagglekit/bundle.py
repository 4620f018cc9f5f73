"""Bundle a multi-file project into ONE Kaggle kernel script plus ``kernel-metadata.json``.

Files are collected with the default exclusions (data, checkpoints, outputs, virtualenvs,
caches, VCS), ``.gitignore`` / ``.kaggleignore`` rules and the ``include``/``exclude``
settings, pruning excluded folders while walking. Secrets never ship. The bundled copy
gets the test flag and ``--set`` overrides (testflag.py); the archive (sorted tar, fixed
metadata, xz, base64) is embedded with kagglekit's runtime in a script rendered from
``templates/kernel/script.py.jinja``. The same project gives a byte-identical script.
See docs/bundling.md.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import functools
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kagglekit import __version__, constants, display
from kagglekit.errors import BundleError, ConfigError
from kagglekit.kernel_metadata import METADATA_FILE, write_metadata
from kagglekit.kernel_ref import KernelRef
from kagglekit.run_options import RunOptions
from kagglekit.settings import ProjectSettings, resolve_machine_shape
from kagglekit.testflag import FlagChange, apply_flags
from kagglekit.written import REASON as WRITTEN_REASON
from kagglekit.written import mark_bundle_folder, written_by_kagglekit
from kagglekit.written import marks_folder as written_marks_folder

DEFAULT_OUT_DIR = ".kagglekit/bundle"
SCRIPT_TEMPLATE = "kernel/script.py.jinja"
RUNTIME_PACKAGE = "kagglekit_runtime"
XZ_PRESET = 6
TAR_MTIME = 0
BIGGEST_SHOWN = 5
WATCHDOG_INTERVAL_S = 5.0
EARLY_SIZE_LIMIT = 64 * constants.SOURCE_LIMIT_BYTES
TOO_BIG_HINT = ("Leave them out (add them to .kaggleignore, or exclude = [...] in [tool.kagglekit]). Data and "
                "weights belong in a Kaggle dataset: `kaggle datasets create -p DIR`, list it under datasets = "
                "[\"owner/slug\"] and read it with kagglekit_runtime.input_path(\"dataset\", \"owner/slug\").")

# (gitignore pattern, why it is left out); later user rules (.gitignore, .kaggleignore, exclude) win.
DEFAULT_IGNORES: tuple[tuple[str, str], ...] = (
    (".git/", "version control"), (".hg/", "version control"), (".svn/", "version control"),
    (".venv/", "virtualenv"), ("venv/", "virtualenv"),
    ("__pycache__/", "cache"), ("*.py[cod]", "cache"), (".mypy_cache/", "cache"), (".pytest_cache/", "cache"),
    (".ruff_cache/", "cache"), (".tox/", "cache"), (".nox/", "cache"), (".cache/", "cache"),
    (".ipynb_checkpoints/", "notebook checkpoints"), ("*.egg-info/", "build metadata"),
    ("node_modules/", "dependencies"), (".idea/", "editor files"), (".vscode/", "editor files"),
    (".DS_Store", "editor files"),
    ("/data/", "data"), ("/input/", "data"), ("/inputs/", "data"), ("/dataset/", "data"), ("/datasets/", "data"),
    ("/output/", "outputs"), ("/outputs/", "outputs"), ("/working/", "outputs"), ("/build/", "build output"),
    ("/dist/", "build output"), ("wandb/", "experiment logs"), ("mlruns/", "experiment logs"),
    ("lightning_logs/", "experiment logs"),
    ("/checkpoints/", "checkpoints"), ("*.pt", "checkpoints"), ("*.pth", "checkpoints"),
    ("*.ckpt", "checkpoints"), ("*.safetensors", "checkpoints"),
    (".kagglekit/", "kagglekit's own files"), (".kaggleignore", "ignore rules"), (".gitignore", "ignore rules"),
    (".gitattributes", "version control"),
)
# A default "data" folder that is a Python package (has __init__.py) is code, not data: kept.
_PACKAGE_SAFE_REASONS = frozenset({"data", "outputs", "build output", "checkpoints"})

# Refused even when an include pattern names them (matched on the lower-cased file name).
SECRET_PATTERNS: tuple[str, ...] = (
    "kaggle.json", "access_token*", ".env*", "credentials.json", "credentials*.json", "client_secret*.json",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".netrc", "_netrc", ".pypirc", ".git-credentials", ".htpasswd", "secrets.toml", "*.secret", "*.secrets",
)
# A private key, a Kaggle token, or a 32-hex Kaggle key given to a key/token/secret name in any
# notation: `KAGGLE_KEY = "..."`, `os.environ['KAGGLE_KEY'] = '...'`, kaggle.json content in any key
# order, JSON-escaped inside a notebook (`\"key\": \"...\"`), YAML (`key: ...`). `cache_key` or
# `EXPECTED_MD5` holding a hash is not a credential and still ships.
_SECRET_CONTENT = re.compile(
    rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----|KGAT_[0-9a-f]{32}"
    rb"|(?i:(?<![A-Za-z0-9_])(?:kaggle_)?(?:api_?)?(?:key|token|secret))(?:\\?[\"'])?\]?\s*[:=]\s*"
    rb"(?:\\?[\"'])?[0-9a-fA-F]{32}(?![0-9a-fA-F])")


@dataclasses.dataclass(frozen=True)
class BundledFile:
    path: str  # project-relative, POSIX
    size: int


@dataclasses.dataclass(frozen=True)
class LeftOut:
    path: str  # a folder ("data/") pruned while walking
    reason: str


@dataclasses.dataclass
class BundleResult:
    out_dir: Path
    script_path: Path
    metadata_path: Path
    kernel: str
    title: str
    entry: str
    mode: str | None
    overrides: dict[str, str]
    machine_shape: str
    enable_internet: bool
    is_private: bool
    session_limit_s: int
    files: list[BundledFile]
    biggest: list[BundledFile]
    left_out: list[LeftOut]
    total_bytes: int
    script_bytes: int
    limit_bytes: int
    archive_sha256: str
    flag_changes: list[FlagChange]
    metadata: dict[str, Any]
    warnings: list[str]
    argv: list[str] = dataclasses.field(default_factory=list)  # the entry point's command-line arguments
    source_roots: list[str] = dataclasses.field(default_factory=list)  # ["src"] for a src layout
    code_dataset: str | None = None  # set when the archive travels in a dataset (project over 1 MiB)
    code_dataset_dir: Path | None = None  # the folder to upload as that dataset (the archive file)
    inline_script_bytes: int = 0  # what the one self-contained script would have weighed

    @property
    def delivery(self) -> str:
        """How the code reaches Kaggle, in words (the 1 MiB preflight line)."""
        if self.code_dataset is None:
            return "inline, in the one kernel script"
        return (f"through dataset {self.code_dataset}: the project would make a script of "
                f"{display.source_share(self.inline_script_bytes)}, so its archive is uploaded as a private "
                f"dataset and the kernel is a {display.size(self.script_bytes)} loader that checks its sha256")


@dataclasses.dataclass
class _Spec:
    base: str  # folder the rules are relative to ("" = project root)
    spec: Any  # pathspec.GitIgnoreSpec
    label: str
    reasons: tuple[str, ...] | None = None  # per pattern (defaults only)


def _spec(lines: list[str], label: str = "", warnings: list[str] | None = None) -> Any:
    """Git's rules for ``lines``; a line git cannot use either (a lone ``!``) is skipped, with a warning."""
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError):  # pathspec's GitIgnorePatternError is a ValueError
        pass
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, TypeError):
            if warnings is not None:
                warnings.append(f"{label or 'an ignore file'} line {number}: {line.strip()!r} is not a valid "
                                "pattern (git ignores it too); skipped")
            continue
        kept.append(line)
    return pathspec.GitIgnoreSpec.from_lines(kept)


def _read_ignore(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


class _Collector:
    def __init__(self, root: Path, settings: ProjectSettings, skip: list[Path],
                 written: list[Path] | None = None) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.warnings: list[str] = []
        self.skip = {os.path.realpath(p) for p in skip}
        self.written = {os.path.realpath(p) for p in written or []}  # kagglekit's own files: never shipped
        self.defaults = _Spec("", _spec([p for p, _ in DEFAULT_IGNORES]), "default",
                              tuple(r for _, r in DEFAULT_IGNORES))
        kaggleignore = root / ".kaggleignore"
        user_tail: list[_Spec] = []
        if kaggleignore.is_file():
            user_tail.append(_Spec("", _spec(_read_ignore(kaggleignore), ".kaggleignore", self.warnings),
                                   ".kaggleignore"))
        if settings.exclude:
            user_tail.append(_Spec("", _spec(list(settings.exclude), "the exclude setting", self.warnings),
                                   "the exclude setting"))
        self.tail = user_tail
        self.include = _spec(list(settings.include), "the include setting", self.warnings) if settings.include else None
        self.include_prefixes, self.include_names = _include_roots(settings.include)
        self.files: list[tuple[str, Path, int]] = []
        self.left_out: list[LeftOut] = []

    def decide(self, rel: str, is_dir: bool, chain: list[_Spec], abs_path: str) -> tuple[bool, str]:
        probe = rel + "/" if is_dir else rel
        ignored, reason = False, ""
        r = self.defaults.spec.check_file(probe)
        if r.include is not None:
            ignored = bool(r.include)
            assert self.defaults.reasons is not None
            reason = self.defaults.reasons[r.index] if r.include else ""
            if ignored and is_dir and reason in _PACKAGE_SAFE_REASONS \
                    and os.path.isfile(os.path.join(abs_path, "__init__.py")):
                ignored, reason = False, ""
        for s in [*chain, *self.tail]:
            sub = probe[len(s.base) + 1:] if s.base else probe
            r = s.spec.check_file(sub)
            if r.include is not None:
                ignored, reason = bool(r.include), s.label
        if not ignored and is_dir and os.path.isfile(os.path.join(abs_path, "pyvenv.cfg")):
            ignored, reason = True, "virtualenv"
        return ignored, reason

    def inside(self, path: str) -> bool:
        """Does ``path``, links resolved, stay inside the project? (links must not ship host files)"""
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def may_descend(self, rel: str) -> bool:
        """Could an include pattern name something inside this excluded folder?"""
        if any(p == rel or p.startswith(rel + "/") or rel.startswith(p + "/") for p in self.include_prefixes):
            return True
        return any(name in rel.split("/") for name in self.include_names)

    def walk(self) -> None:
        """Every file to bundle, depth first in name order: each folder's own .gitignore joins the rules below it."""
        root_gitignore = self.root / ".gitignore"
        chain0 = [_Spec("", _spec(_read_ignore(root_gitignore), ".gitignore", self.warnings), ".gitignore")] \
            if root_gitignore.is_file() else []
        stack: list[_Folder] = [("", str(self.root), chain0, False)]
        while stack:
            rel_dir, abs_dir, chain, inside_ignored = stack.pop()
            listed = self._list(rel_dir, abs_dir, chain)
            if listed is None:
                continue
            entries, chain = listed
            subdirs: list[_Folder] = []
            for e in entries:
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                    is_link = e.is_symlink()
                except OSError:
                    continue
                if is_dir:
                    subdirs += self._folder(e, rel, chain, inside_ignored)
                else:
                    self._file(e, rel, chain, inside_ignored, is_link)
            stack.extend(reversed(subdirs))
        self.files.sort(key=lambda f: f[0])

    def _list(self, rel_dir: str, abs_dir: str, chain: list[_Spec]) -> tuple[list[os.DirEntry[str]], list[_Spec]] | None:
        """A folder's entries in name order and the rules that apply in it (None, with a warning: unreadable)."""
        try:
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.warnings.append(f"cannot read {rel_dir or '.'}: {exc.strerror}")
            return None
        if rel_dir and any(e.name == ".gitignore" for e in entries):
            chain = [*chain, _Spec(rel_dir, _spec(_read_ignore(Path(abs_dir) / ".gitignore"),
                                                  f"{rel_dir}/.gitignore", self.warnings), f"{rel_dir}/.gitignore")]
        return entries, chain

    def _folder(self, e: os.DirEntry[str], rel: str, chain: list[_Spec], inside_ignored: bool) -> list[_Folder]:
        """The sub-folder to walk ([] when left out: kagglekit's own output, an ignore rule)."""
        if os.path.realpath(e.path) in self.skip:
            return []
        if os.path.realpath(e.path) in self.written or written_marks_folder(e.path):
            self.left_out.append(LeftOut(rel + "/", WRITTEN_REASON))
            return []
        ignored, reason = self.decide(rel, True, chain, e.path)
        if ignored or inside_ignored:
            if self.may_descend(rel):  # an include pattern may still pick a file inside
                return [(rel, e.path, chain, True)]
            if not inside_ignored:
                self.left_out.append(LeftOut(rel + "/", reason))
            return []
        return [(rel, e.path, chain, False)]

    def _file(self, e: os.DirEntry[str], rel: str, chain: list[_Spec], inside_ignored: bool, is_link: bool) -> None:
        """Add the file unless a rule leaves it out; links to folders or outside the project are warned of."""
        if is_link and os.path.isdir(e.path):
            self.warnings.append(f"{rel}: a link to a folder, not followed")
            return
        if is_link and not self.inside(e.path):
            self.warnings.append(f"{rel}: a link to a file outside the project, not followed "
                                 "(copy the file into the project if it belongs in the bundle)")
            return
        if not os.path.isfile(e.path):
            return
        if os.path.realpath(e.path) in self.written:
            self.left_out.append(LeftOut(rel, WRITTEN_REASON))
            return
        ignored, _ = self.decide(rel, False, chain, e.path)
        if (ignored or inside_ignored) and not (self.include is not None and self.include.match_file(rel)):
            return
        try:
            size = os.stat(e.path).st_size
        except OSError:
            return
        self.files.append((rel, Path(e.path), size))


_Folder = tuple[str, str, list[_Spec], bool]  # (project-relative path, absolute path, rules, inside an ignored one)


def _include_roots(patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    prefixes: list[str] = []
    names: list[str] = []
    for raw in patterns:
        p = raw.strip()
        if not p or p.startswith(("!", "#")):
            continue
        core = p.strip("/")
        if "/" not in core:
            if not any(c in core for c in "*?["):
                names.append(core)
            continue
        fixed = []
        for part in core.split("/"):
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        if fixed:
            prefixes.append("/".join(fixed))
    return prefixes, names


def is_secret_name(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    return any(fnmatch.fnmatchcase(name, pat) for pat in SECRET_PATTERNS)


def runtime_sources() -> dict[str, bytes]:
    """kagglekit/runtime/*.py, shipped as the package ``kagglekit_runtime``."""
    folder = Path(__file__).resolve().parent / "runtime"
    return {f"{RUNTIME_PACKAGE}/{p.name}": p.read_bytes() for p in sorted(folder.glob("*.py"))}


def build_archive(project: Mapping[str, bytes], runtime: Mapping[str, bytes]) -> bytes:
    """Sorted tar (fixed mtime, owner and modes) of project/ and runtime/, xz-compressed."""
    buf = io.BytesIO()
    entries = sorted([(f"project/{k}", v) for k, v in project.items()]
                     + [(f"runtime/{k}", v) for k, v in runtime.items()])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, preset=XZ_PRESET)


def _py_literal(value: Any) -> str:
    """ASCII-only Python literal (json-like values)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_py_literal(v) for v in value) + "]"
    return ascii(value)


def resolve_entry(entry: str | None, names: set[str], roots: list[str] | None = None) -> str:
    """Check the entry point is bundled; without one, pick a lone train.py / main.py.

    ``roots``: source folders besides the project root (``["src"]``), where modules are found too.
    """
    if entry is None:
        found = [n for n in ("train.py", "main.py") if n in names]
        if len(found) == 1:
            return found[0]
        raise BundleError(
            "No entry point: kagglekit does not know what to run"
            + (f" (both {' and '.join(found)} exist)." if found else "."),
            hint='Set it in [tool.kagglekit] or kagglekit.toml: entry = "mypkg.train" (a module) or '
                 'entry = "train.py" (a script), or KAGGLEKIT_ENTRY.')
    if entry.endswith((".py", ".ipynb")):
        if entry not in names:
            raise BundleError(f"The entry {'notebook' if entry.endswith('.ipynb') else 'script'} {entry} is not "
                              "among the bundled files.",
                              hint="Check the path (relative to the project root) and that no ignore rule "
                                   "leaves it out (kagglekit -v bundle lists the files).")
        return entry
    from kagglekit.layout import module_file

    if module_file(entry, names, roots or []) is None:
        mod = entry.replace(".", "/")
        where = " and in ".join(["the project root", *(f"{r}/" for r in roots or [])])
        raise BundleError(f"The entry module {entry} is not among the bundled files (looked for {mod}.py and "
                          f"{mod}/__main__.py in {where}).",
                          hint="Check the module path and that no ignore rule leaves it out; for a src layout, "
                               "declare the package folder in pyproject.toml (e.g. [tool.setuptools.packages.find] "
                               "where = [\"src\"]) or keep it under src/.")
    return entry


def _shape(machine_shape: str | None, settings: ProjectSettings) -> str:
    return settings.machine_shape if machine_shape is None else resolve_machine_shape(machine_shape)


@dataclasses.dataclass
class _Plan:
    """What a bundle will be, decided from the settings and options before any file is read."""

    out: Path
    sets: dict[str, str]
    shape: str
    kind: str
    enable_internet: bool
    session_limit: int
    kernel_sources: list[str]
    dataset_sources: list[str]
    resume_from: str | None
    warnings: list[str]
    set_fields: dict[str, str] = dataclasses.field(default_factory=dict)  # target -> "set"/"test-set" it came from


@dataclasses.dataclass
class _Sources:
    """The project's files as they will ship: contents (after --set / --test), entry, arguments, notebook."""

    collector: _Collector
    contents: dict[str, bytes]
    roots: list[str]
    entry: str
    argv: list[str]
    nb: Any = None  # the entry notebook (a dict), when the entry is a .ipynb
    flag_changes: list[FlagChange] = dataclasses.field(default_factory=list)


def build_bundle(
    settings: ProjectSettings,
    *,
    mode: str | None = None,
    overrides: Mapping[str, str] | None = None,
    machine_shape: str | None = None,
    internet: bool | None = None,
    out_dir: Path | None = None,
    resume_from: str | None = None,
    args: Sequence[str] = (),
    requirements: Mapping[str, Any] | None = None,
    extra_datasets: tuple[str, ...] = (),
    code_dataset: str | None = None,
) -> BundleResult:
    """Write ``<out_dir>/<code_file>`` and ``kernel-metadata.json``; return what was bundled.

    ``machine_shape`` / ``internet`` override the settings ("gpu"/"tpu"/"cpu" or a shape).
    ``resume_from`` ("owner/slug[/version]"): that kernel's output is attached as a kernel
    source and, in the kernel, the files matching the ``checkpoints`` patterns are copied
    into /kaggle/working before the entry point runs (so training picks up where it stopped).
    ``args``: command-line arguments given after ``--``; they follow the ``args`` setting (and
    ``test-args`` in test mode), so argparse lets them win.
    ``requirements`` (``{"install": [...], "wheels": "owner/slug"?}``) are installed in the kernel before
    the entry; ``extra_datasets`` are attached. ``code_dataset`` ("owner/slug"): when the script would be
    over 1 MiB, the archive goes to ``<out_dir>/code-dataset/`` for upload as that dataset and the script
    becomes a loader (without it, such a project is refused).
    Phases: resolve -> collect and guard -> transform -> render -> write. Long only by its parameters.
    """
    plan = _resolve(settings, mode=mode, overrides=overrides, machine_shape=machine_shape, internet=internet,
                    out_dir=out_dir, resume_from=resume_from, extra_datasets=extra_datasets)
    src = _collect(settings, plan, mode, args)
    _transform(settings, src, mode, plan)
    code_file = _code_file(settings, src)
    archive = build_archive(src.contents, runtime_sources())
    sha = hashlib.sha256(archive).hexdigest()
    files = [BundledFile(rel, size) for rel, _, size in src.collector.files]
    render_kernel = _renderer(settings, plan, src, sha, code_file=code_file, mode=mode, files=files,
                              requirements=requirements)
    script_bytes, inline_bytes, code_dir = _deliver(render_kernel, archive, sha, plan, code_dataset, src.contents)
    metadata = _metadata(settings, plan, code_file, notebook_kernel=src.nb is not None)
    script_path, metadata_path = _write(plan, code_file, script_bytes, metadata, mark=out_dir is not None)
    return BundleResult(
        out_dir=plan.out, script_path=script_path, metadata_path=metadata_path, kernel=settings.kernel_id or "",
        title=settings.resolved_title or settings.kernel_slug or "", entry=src.entry, mode=mode,
        overrides=plan.sets, machine_shape=plan.shape, enable_internet=plan.enable_internet,
        is_private=settings.private, session_limit_s=plan.session_limit, files=files,
        biggest=sorted(files, key=lambda f: (-f.size, f.path))[:BIGGEST_SHOWN], left_out=src.collector.left_out,
        total_bytes=sum(f.size for f in files), script_bytes=len(script_bytes),
        limit_bytes=constants.SOURCE_LIMIT_BYTES, archive_sha256=sha, flag_changes=src.flag_changes,
        metadata=metadata, warnings=plan.warnings, code_dataset=code_dataset if code_dir is not None else None,
        code_dataset_dir=code_dir, inline_script_bytes=inline_bytes, argv=src.argv, source_roots=src.roots)


def _resolve(settings: ProjectSettings, *, mode: str | None, overrides: Mapping[str, str] | None,
             machine_shape: str | None, internet: bool | None, out_dir: Path | None,
             resume_from: str | None, extra_datasets: tuple[str, ...]) -> _Plan:
    """Check the settings and options against Kaggle's limits and decide the bundle's shape."""
    root = settings.root
    out = (out_dir or root / DEFAULT_OUT_DIR).resolve()
    if out == root.resolve():
        raise BundleError("The output folder is the project itself.",
                          hint=f"Write the bundle elsewhere, e.g. -o {DEFAULT_OUT_DIR} (the default).")
    if settings.kernel_slug is None:
        raise ConfigError(
            f"No kernel id: the folder name '{root.name}' does not make a slug of 5+ characters.",
            hint='Set kernel = "owner/my-kernel" in [tool.kagglekit] or kagglekit.toml (or KAGGLEKIT_KERNEL).')
    warnings = list(settings.warnings)
    sets = {str(k): str(v) for k, v in sorted(settings.sets_for(mode, overrides).items())}
    shape = _shape(machine_shape, settings)
    kind = constants.accelerator_kind(shape)
    if shape in constants.RETIRED_SHAPES and not any(shape in w for w in warnings):
        warnings.append(constants.RETIRED_SHAPE_WARNING.format(shape=shape))
    session_limit = settings.timeout_s or constants.SESSION_LIMIT_SECONDS[kind]
    if session_limit > constants.SESSION_LIMIT_SECONDS[kind]:
        raise ConfigError(f"timeout {session_limit}s is over Kaggle's {kind.upper()} session limit "
                          f"({constants.SESSION_LIMIT_SECONDS[kind] // 3600}h).",
                          hint="Use a shorter --timeout, or leave it unset.")
    kernel_sources = list(settings.kernels)
    if resume_from is not None:
        try:
            parent = KernelRef.parse(resume_from.strip("/"))
        except ConfigError as exc:
            raise ConfigError(f"resume from {resume_from!r}: {exc.message}", exc.hint) from None
        resume_from = str(parent)
        if not any(k.split("/")[:2] == [parent.owner, parent.slug] for k in kernel_sources):
            kernel_sources.append(resume_from)
    return _Plan(out=out, sets=sets, shape=shape, kind=kind,
                 enable_internet=settings.enable_internet if internet is None else internet,
                 session_limit=session_limit, kernel_sources=kernel_sources, resume_from=resume_from,
                 dataset_sources=[*settings.datasets, *(d for d in extra_datasets if d not in settings.datasets)],
                 warnings=warnings, set_fields=_set_fields(settings, mode, overrides))


def _set_fields(settings: ProjectSettings, mode: str | None, given: Mapping[str, str] | None) -> dict[str, str]:
    """Which ``--set`` targets came from the ``set``/``test-set`` settings rather than the command line."""
    fields = {k: "set" for k in settings.sets}
    if mode == "test":
        fields.update({k: "test-set" for k in settings.test_sets})
    return {k: field for k, field in fields.items() if k not in (given or {})}


def _point_at_config_key(exc: ConfigError, py_sets: Mapping[str, str], contents: Mapping[str, bytes],
                         prefer: Sequence[str]) -> ConfigError:
    """``--set Config.epochs`` found no such attribute, but a bundled config file has an ``epochs`` key: code that
    fills its Config from YAML (``setattr(self, key, value)``) keeps the value there, so say which key to set."""
    from kagglekit.configfiles import keys_named

    for target, value in py_sets.items():
        if exc.message.startswith((f"--set {target}:", f"--set {target!r}:")):
            hits = keys_named(contents, target.rpartition(":")[2].rpartition(".")[2], prefer)
            if hits:
                rel, path, old = hits[0]
                more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
                return ConfigError(exc.message, hint=f"{rel} has the key {path}: {old!r}{more}; if the code fills "
                                                     f"its settings from that file, set the key there: "
                                                     f"--set {rel}:{path}={value}")
    return exc


def _from_settings(settings: ProjectSettings, plan: _Plan, exc: ConfigError) -> ConfigError:
    """A ``--set TARGET: ...`` error about a target that came from the ``set``/``test-set`` setting, reworded to
    name that setting and where it is written: the user looking for it on the command line would not find it."""
    for target, field in sorted(plan.set_fields.items(), key=lambda kv: -len(kv[0])):
        for shown in (target, repr(target)):
            head = f"--set {shown}"
            if exc.message.startswith(head) and exc.message[len(head):len(head) + 1] in (":", "=", " ", ""):
                origin = settings.origin(field)
                where = origin
                if settings.config_file is not None and origin == str(settings.config_file):
                    table = f"tool.kagglekit.{field}" if settings.config_file.name == "pyproject.toml" else field
                    where = f"{origin} [{table}]"
                hint = f"Fix {field} in {origin}." + (f" {exc.hint}" if exc.hint else "")
                return ConfigError(f"{where} {target!r}{exc.message[len(head):]}", hint=hint)
    return exc


def _collect(settings: ProjectSettings, plan: _Plan, mode: str | None, args: Sequence[str]) -> _Sources:
    """Walk the project and read its files, refusing secrets and hopeless sizes; find the entry and its args."""
    root = settings.root
    collector = _Collector(root, settings, skip=[plan.out], written=written_by_kagglekit(root))
    collector.walk()
    plan.warnings += collector.warnings
    secrets = [rel for rel, path, _ in collector.files
               if is_secret_name(rel) or (path.is_symlink() and is_secret_name(os.path.realpath(path)))]
    if secrets:
        raise BundleError(
            "Refusing to bundle secrets: " + ", ".join(secrets) + ". Anything in the bundle can be read by "
            "whoever sees the kernel (and public kernels by everyone).",
            hint="Move them out of the project, or leave them out with .kaggleignore (or .gitignore); "
                 "include patterns cannot bring them back. Attach secrets in the Kaggle editor "
                 "(Add-ons > Secrets) instead.")
    raw_total = sum(size for _, _, size in collector.files)
    if raw_total > EARLY_SIZE_LIMIT:  # hopeless even for xz: say so before reading it all into memory
        biggest = sorted(collector.files, key=lambda f: -f[2])[:BIGGEST_SHOWN]
        raise BundleError(
            f"The project's files add up to {display.size(raw_total)}, far over Kaggle's source limit of 1 MiB "
            f"({constants.SOURCE_LIMIT_BYTES:,} bytes) for the one kernel script. Largest contributors: "
            + "; ".join(f"{rel} ({display.size(size)})" for rel, _, size in biggest) + ".",
            hint=TOO_BIG_HINT)
    contents: dict[str, bytes] = {}
    for rel, path, _size in collector.files:
        try:
            contents[rel] = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"Cannot read {rel}: {exc.strerror}.") from None
    leaked = [rel for rel, data in contents.items() if _SECRET_CONTENT.search(data)]
    if leaked:
        raise BundleError("Refusing to bundle files that contain a private key or a Kaggle API key/token: "
                          + ", ".join(leaked) + ".",
                          hint="Remove the secret from the file (read it from Kaggle's Secrets add-on instead), "
                               "or leave the file out with .kaggleignore.")
    from kagglekit.layout import source_roots

    roots = source_roots(root, contents)
    try:
        entry = resolve_entry(settings.entry, set(contents), roots)
    except BundleError as exc:
        if settings.entry is None:
            raise
        # name the setting and where it is written: a new user's first push may hit this
        where = settings.origin("entry")
        raise BundleError(f"entry = {settings.entry!r} ({where}): {exc.message}", hint=exc.hint) from None
    for rel in settings.working_files:
        if rel not in contents and not any(name.startswith(rel.rstrip("/") + "/") for name in contents):
            raise BundleError(f"working-files names {rel}, which is not among the bundled files.",
                              hint="Give paths relative to the project root (a file or a folder), and check that no "
                                   "ignore rule leaves them out (kagglekit -v bundle lists the files).")
    return _Sources(collector, contents, roots, entry, entry_argv(settings, mode, args))


def _transform(settings: ProjectSettings, src: _Sources, mode: str | None, plan: _Plan) -> None:
    """Apply the mode and ``--set`` to the bundled copy (sources, notebook cells, config files); check it parses."""
    from kagglekit import notebook
    from kagglekit.configfiles import apply_config_sets, is_config_target, keys_that_may_win
    from kagglekit.testflag import find_reassignments

    contents, entry = src.contents, src.entry
    py_sources: dict[str, str] = {}
    if mode is not None or plan.sets:
        for rel, data in contents.items():
            if rel.endswith(".py"):
                try:
                    py_sources[rel] = data.decode("utf-8-sig")  # a BOM is valid Python (PEP 263)
                except UnicodeDecodeError:
                    continue
    src.nb = notebook.load(entry, contents[entry]) if notebook.is_notebook(entry) else None
    if src.nb is not None:  # its code cells, as one Python source the test flag and --set can edit
        nb_python, nb_magics = notebook.as_python(src.nb)
        py_sources[entry] = nb_python
        if src.argv:
            plan.warnings.append(f"args/test-args/-- ARGS ({shlex.join(src.argv)}) do not reach a notebook: it has "
                                 "no command line. Use --set, or read KAGGLEKIT_MODE.")
    py_sets = {k: v for k, v in plan.sets.items() if not is_config_target(k)}
    try:
        changed, flag_changes = apply_flags(py_sources, mode=mode, sets=py_sets, test_flag=settings.test_flag,
                                            test_flag_enabled=settings.test_flag_enabled,
                                            flag_required=not ((settings.test_args or settings.test_sets)
                                                               and settings.test_flag is None))
    except ConfigError as exc:
        exc = _point_at_config_key(exc, py_sets, contents, prefer=[*src.argv, *settings.working_files])
        raise _from_settings(settings, plan, exc) from None
    plan.warnings += [str(r) for r in find_reassignments({**py_sources, **changed}, flag_changes, py_sets)]
    if src.nb is not None:
        flag_changes = notebook.relabel(entry, changed.get(entry, nb_python), flag_changes)
        plan.warnings[:] = [notebook.relabel_text(entry, nb_python, w) for w in plan.warnings]
        if entry in changed:
            notebook.put_back(src.nb, changed.pop(entry), nb_magics)
            contents[entry] = (json.dumps(src.nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    for rel, text in changed.items():
        contents[rel] = text.encode("utf-8")
    try:
        changed_configs, config_changes = apply_config_sets(
            contents, {k: v for k, v in plan.sets.items() if is_config_target(k)})
    except ConfigError as exc:
        raise _from_settings(settings, plan, exc) from None
    contents.update(changed_configs)
    src.flag_changes = sorted([*flag_changes, *config_changes], key=lambda c: (c.file, c.line))
    plan.warnings += keys_that_may_win(contents, src.flag_changes)
    check_syntax(contents)
    shadowed = sorted({rel.split("/")[0].removesuffix(".py") for rel in contents} & PREIMPORTED_ON_KAGGLE)
    plan.warnings += [f"the project's top-level module '{name}' has the name of a module Kaggle's image imports "
                      f"at start-up, so on Kaggle `import {name}` finds Kaggle's, not yours: rename it."
                      for name in shadowed]


def _code_file(settings: ProjectSettings, src: _Sources) -> str:
    """The kernel's file name: a .py script, or a .ipynb when the entry is a notebook."""
    from kagglekit import notebook

    code_file = settings.resolved_code_file
    if src.nb is not None:
        code_file = settings.code_file or f"{settings.kernel_slug}{notebook.SUFFIX}"
        if not notebook.is_notebook(code_file):
            raise ConfigError(f"code-file = {code_file!r} ({settings.origin('code-file')}): the entry {src.entry} is "
                              "a notebook, so the kernel is a notebook and its file must end in .ipynb.",
                              hint=f"Use code-file = \"{settings.kernel_slug}.ipynb\", or leave code-file unset.")
    elif notebook.is_notebook(code_file):
        raise ConfigError(f"code-file = {code_file!r} ({settings.origin('code-file')}) names a notebook, but the "
                          f"entry {src.entry} is a script.", hint="Use a .py code-file, or a .ipynb entry.")
    if code_file == METADATA_FILE:
        raise ConfigError("code-file cannot be kernel-metadata.json.")
    return code_file


def _renderer(settings: ProjectSettings, plan: _Plan, src: _Sources, sha: str, *, code_file: str,
              mode: str | None, files: list[BundledFile], requirements: Mapping[str, Any] | None) -> Callable[..., bytes]:
    """The kernel from templates/kernel/script.py.jinja: call it with where the archive is.

    For a notebook entry, the kernel is the notebook whose first cell is that script.
    """
    from kagglekit import notebook
    from kagglekit.templating import render

    kernel_id = settings.kernel_id or ""
    config: dict[str, Any] = {
        "kagglekit_version": __version__,
        "kernel": kernel_id,
        "entry": src.entry,
        "mode": mode,
        "overrides": plan.sets,
        "bundle_sha256": sha,
        "accelerator": "cpu" if plan.kind == "cpu" else plan.shape,
        "session_limit_s": plan.session_limit,
        "exit_grace_s": settings.exit_grace_s,
        "output_budget_bytes": settings.output_budget_bytes,
        "watchdog_interval_s": WATCHDOG_INTERVAL_S,
        "env": dict(sorted(settings.env.items())),  # the env setting: secret-looking names were refused there
        "resume_from": plan.resume_from,
        "checkpoints": list(settings.checkpoints),
        "argv": src.argv,
        "python_path": src.roots,
        "working_files": list(settings.working_files),
    }
    if requirements:
        config["requirements"] = dict(requirements)
    render_script = functools.partial(
        render, SCRIPT_TEMPLATE, code_file=code_file, version=__version__, kernel=kernel_id, entry=src.entry,
        mode_label=mode or "as in the sources", accelerator=display.hardware(plan.shape),
        n_files=len(files), total_label=display.size(sum(f.size for f in files)), sha256=sha,
        config_items=[(ascii(k), _py_literal(v)) for k, v in config.items()],
    )

    def render_kernel(**parts: Any) -> bytes:
        text: str = render_script(**parts)
        return (notebook.kernel_notebook(src.nb, text) if src.nb is not None else text).encode("utf-8")

    return render_kernel


def _deliver(render_kernel: Callable[..., bytes], archive: bytes, sha: str, plan: _Plan,
             code_dataset: str | None, contents: Mapping[str, bytes]) -> tuple[bytes, int, Path | None]:
    """The kernel with the archive inside, or, over 1 MiB, a loader plus the code dataset folder.

    Returns (kernel, the inline kernel's size, the code dataset folder or None).
    """
    script_bytes = render_kernel(archive_b64=base64.encodebytes(archive).decode("ascii"),
                                 archive_dataset=None, archive_file="")
    inline_bytes = len(script_bytes)
    if inline_bytes < constants.SOURCE_LIMIT_BYTES:
        if (plan.out / "code-dataset").exists():
            shutil.rmtree(plan.out / "code-dataset")
        return script_bytes, inline_bytes, None
    if code_dataset is None:
        raise _too_big(inline_bytes, contents)
    archive_file = f"bundle-{sha[:16]}.tar.xz"
    script_bytes = render_kernel(archive_b64="", archive_dataset=code_dataset, archive_file=archive_file)
    code_dir = plan.out / "code-dataset"
    if code_dir.exists():
        shutil.rmtree(code_dir)
    code_dir.mkdir(parents=True)
    (code_dir / archive_file).write_bytes(archive)
    plan.dataset_sources.append(code_dataset)
    return script_bytes, inline_bytes, code_dir


def _metadata(settings: ProjectSettings, plan: _Plan, code_file: str, *, notebook_kernel: bool) -> dict[str, Any]:
    """kernel-metadata.json's content (the format ``kaggle kernels push`` reads)."""
    kernel_id = settings.kernel_id or ""
    if settings.kernel_owner is None:
        plan.warnings.append(f"the kernel id '{kernel_id}' has no owner: `kagglekit push` fills it from your "
                             "account; for `kaggle kernels push`, set kernel = \"owner/slug\".")
    return {
        "id": kernel_id,
        "title": settings.resolved_title or settings.kernel_slug,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook" if notebook_kernel else "script",
        "is_private": settings.private,
        "enable_gpu": plan.kind == "gpu",
        "enable_tpu": plan.kind == "tpu",
        "enable_internet": plan.enable_internet,
        "dataset_sources": plan.dataset_sources,
        "competition_sources": list(settings.competitions),
        "kernel_sources": plan.kernel_sources,
        "model_sources": list(settings.models),
        "machine_shape": plan.shape,
    }


def _write(plan: _Plan, code_file: str, script_bytes: bytes, metadata: Mapping[str, Any], *,
           mark: bool) -> tuple[Path, Path]:
    """Write the kernel and kernel-metadata.json atomically; ``mark`` a folder the user chose."""
    from kagglekit.paths import write_bytes_atomic

    plan.out.mkdir(parents=True, exist_ok=True)
    if mark:  # a folder the user chose: marked, so that no later bundle ships it
        mark_bundle_folder(plan.out)
    script_path = plan.out / code_file
    write_bytes_atomic(script_path, script_bytes)
    script_path.chmod(0o644)  # mkstemp makes 0600 files; the script is not secret
    return script_path, write_metadata(plan.out, metadata)


def entry_argv(settings: ProjectSettings, mode: str | None, extra: Sequence[str] = ()) -> list[str]:
    """The entry point's arguments: ``args``, then ``test-args`` in test mode, then those after ``--``."""
    return [*settings.args, *(settings.test_args if mode == "test" else ()), *extra]


def _too_big(script_bytes: int, contents: Mapping[str, bytes]) -> BundleError:
    """Name the files that cost the most once compressed (an estimate per file)."""
    by_raw = sorted(contents.items(), key=lambda kv: -len(kv[1]))[:12]
    estimates = sorted(((rel, len(data), len(lzma.compress(data, preset=1)) * 4 // 3) for rel, data in by_raw),
                       key=lambda t: -t[2])[:BIGGEST_SHOWN]
    listed = "; ".join(f"{rel} ({display.size(raw)}, about {display.size(cost)} in the script)" for rel, raw, cost in estimates)
    return BundleError(
        f"The kernel script would be {display.size(script_bytes)} ({script_bytes:,} bytes), over Kaggle's source limit "
        f"of 1 MiB ({constants.SOURCE_LIMIT_BYTES:,} bytes). Largest contributors: {listed}.",
        hint=TOO_BIG_HINT + " If the code itself is that big: give the kernel an owner (kernel = \"owner/slug\"); "
        "then the archive travels as the private dataset <owner>/<slug>-code (push fills the owner from your "
        "account, bundle writes that folder as code-dataset/).")


def _limit_text(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


KAGGLE_PYTHON = (3, 12)  # the oldest Python of Kaggle's current images (3.12, 3.13)
# Top-level modules Kaggle's image imports in every interpreter (its sitecustomize.py does `from log import Log`):
# a project module of the same name is shadowed by the cached one on Kaggle, but not here.
PREIMPORTED_ON_KAGGLE = frozenset({"log", "sitecustomize", "usercustomize"})


def check_syntax(contents: Mapping[str, bytes]) -> None:
    """Refuse Python files that do not parse for Kaggle's Python: Kaggle would spend a session to say the same."""
    import ast

    for rel in sorted(contents):
        if not rel.endswith(".py"):
            continue
        try:
            ast.parse(contents[rel], rel, feature_version=KAGGLE_PYTHON)
        except SyntaxError as exc:
            where = f"{rel}:{exc.lineno}" if exc.lineno else rel
            raise BundleError(f"{where}: {exc.msg} — this file does not compile, so the run would fail at once.",
                              hint="Fix it (python -m py_compile " + rel + " shows the same) and push again, "
                                   "or leave the file out with .kaggleignore.") from None


def format_summary(result: BundleResult, *, verbose: bool = False) -> str:
    lines: list[str] = []
    lines.append(f"Bundled {len(result.files)} files ({display.size(result.total_bytes)}) for {result.kernel}, "
                 f"entry {result.entry}")
    if verbose:
        lines += [f"  {f.path}  {display.size(f.size)}" for f in result.files]
    elif result.biggest:
        lines.append("  biggest: " + ", ".join(f"{f.path} ({display.size(f.size)})" for f in result.biggest))
    if result.left_out:
        shown = result.left_out[:8]
        more = f" and {len(result.left_out) - len(shown)} more" if len(result.left_out) > len(shown) else ""
        lines.append("  left out: " + ", ".join(f"{x.path} ({x.reason})" for x in shown) + more)
    if result.source_roots:
        lines.append("  src layout: " + ", ".join(f"{r}/" for r in result.source_roots) + " goes on sys.path")
    if result.mode or result.flag_changes:
        lines.append(f"Mode: {result.mode or 'as in the sources'}")
    for change in result.flag_changes:
        lines.append(f"  {change}")
    if result.argv:
        lines.append(f"Arguments: {shlex.join(result.argv)}")
    lines.append(f"Script: {result.script_path.name} {display.source_share(result.script_bytes)}, "
                 f"sha256 {result.archive_sha256[:12]}")
    lines.append(f"Code: {result.delivery}")
    if result.code_dataset_dir is not None:
        lines.append(f"  dataset folder: {result.code_dataset_dir} (kagglekit push uploads it, content-addressed)")
    lines.append(f"Kernel: {result.kernel} \"{result.title}\"  {display.hardware(result.machine_shape)}  "
                 f"internet {'on' if result.enable_internet else 'off'}  "
                 f"{'private' if result.is_private else 'public'}  session limit {_limit_text(result.session_limit_s)}")
    for w in result.warnings:
        lines.append(f"Warning: {w}")
    lines.append(f"Wrote {result.script_path} and {result.metadata_path.name}")
    return "\n".join(lines)


def bundle_project(project_dir: Path | None, out_dir: Path | None, run: RunOptions) -> BundleResult:
    """``kagglekit bundle``: resolve the settings (command line > env > file) and build the bundle."""
    from kagglekit.channel import VENDOR, plan_deps
    from kagglekit.settings import load_project

    settings = load_project(project_dir, overrides=run.settings_overrides())
    plan = plan_deps(settings, settings.enable_internet)  # as push decides; `deps vendor` uploads the wheels
    wheels = (plan.wheels_dataset,) if plan.action == VENDOR and plan.wheels_dataset else ()
    return build_bundle(settings, mode=run.mode, overrides=run.sets, out_dir=out_dir,
                        code_dataset=code_dataset_ref(settings), requirements=plan.requirements_config(),
                        extra_datasets=wheels, args=run.args or ())


def code_dataset_ref(settings: ProjectSettings) -> str | None:
    """The private dataset that carries a project over 1 MiB: ``<owner>/<kernel-slug>-code``."""
    if not settings.kernel_owner or not settings.kernel_slug:
        return None
    return f"{settings.kernel_owner}/{settings.kernel_slug[:45].rstrip('-')}-code"
