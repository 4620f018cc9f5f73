"""``kernel-metadata.json``: the one place that writes it (for bundle) and reads and validates it (for push).

Validation mirrors kaggle 2.2.5's ``kernels_push`` (docs/kaggle-wire.md §6): every problem is a
``ConfigError`` naming the file and the field, found before any network call.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kagglekit.constants import MIN_SLUG_LENGTH, MIN_TITLE_LENGTH, RETIRED_SHAPE_WARNING, RETIRED_SHAPES
from kagglekit.errors import ConfigError

METADATA_FILE = "kernel-metadata.json"
VALID_LANGUAGES = ("python", "r", "rmarkdown")
VALID_KERNEL_TYPES = ("script", "notebook")
VALID_PINNING_TYPES = ("original", "latest")


@dataclasses.dataclass(frozen=True)
class KernelMetadata:
    """A validated kernel-metadata.json with its code file's text, as SaveKernel sends them."""

    slug: str | None  # the ``id``: OWNER/SLUG or a bare slug
    id_no: int | None
    title: str | None
    text: str
    language: str
    kernel_type: str
    is_private: bool
    enable_gpu: bool
    enable_tpu: bool
    enable_internet: bool
    dataset_sources: list[str]
    competition_sources: list[str]
    kernel_sources: list[str]
    model_sources: list[str]
    keywords: list[str]
    docker_image_pinning_type: str | None
    docker_image: str | None
    machine_shape: str | None
    warnings: list[str]


def write_metadata(folder: Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``folder/kernel-metadata.json`` atomically, readable by all (it holds no secret)."""
    from kagglekit.paths import write_text_atomic

    path = folder / METADATA_FILE
    write_text_atomic(path, json.dumps(dict(metadata), indent=2) + "\n")
    path.chmod(0o644)  # mkstemp makes 0600 files
    return path


def read_metadata(folder: Path, *, accelerator: str | None = None) -> KernelMetadata:
    """Load and validate ``folder``'s kernel-metadata.json and its code file; ``accelerator`` overrides the shape."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    meta = _load(folder, meta_path)
    fields = _Fields(meta, meta_path)
    warnings: list[str] = []
    title = fields.text("title", None)
    if title and len(title) < MIN_TITLE_LENGTH:
        raise fields.bad("title", f"must be at least {MIN_TITLE_LENGTH} characters")
    code_file = _code_file(folder, fields)
    slug, id_no = _identity(fields, title, warnings)
    language, kernel_type = _language_and_type(fields)
    sources = _sources(fields)
    keywords = fields.strings("keywords")
    pinning = fields.text("docker_image_pinning_type", None)
    if pinning is not None and pinning not in VALID_PINNING_TYPES:
        raise fields.bad("docker_image_pinning_type", f"must be one of {', '.join(VALID_PINNING_TYPES)}")
    docker_image = fields.text("docker_image", None)
    machine_shape = accelerator or fields.text("machine_shape", None)
    if machine_shape and machine_shape.lower() in {s.lower() for s in RETIRED_SHAPES}:
        warnings.append(RETIRED_SHAPE_WARNING.format(shape=machine_shape))
    flags = {name: fields.boolean(name, default) for name, default in (
        ("is_private", True), ("enable_gpu", False), ("enable_tpu", False), ("enable_internet", True))}
    text = _code_text(code_file, kernel_type, fields)
    return KernelMetadata(
        slug=slug, id_no=id_no, title=title, text=text, language=language, kernel_type=kernel_type,
        dataset_sources=sources["dataset_sources"], competition_sources=sources["competition_sources"],
        kernel_sources=sources["kernel_sources"], model_sources=sources["model_sources"],
        keywords=keywords, docker_image_pinning_type=pinning, docker_image=docker_image,
        machine_shape=machine_shape, warnings=warnings, **flags)


def _load(folder: Path, meta_path: Path) -> dict[str, Any]:
    hint = f"Fix {meta_path} (see `kaggle kernels init` for the format)."
    if not folder.is_dir():
        raise ConfigError(f"Kernel folder {folder} does not exist.", "Pass the folder that holds kernel-metadata.json.")
    if not meta_path.is_file():
        raise ConfigError(f"Metadata file not found: {meta_path}.", "Bundle the project first (kagglekit push does).")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{meta_path} is not valid JSON: {exc}.", hint) from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_path} must hold a JSON object.", hint)
    return meta


class _Fields:
    """Typed access to the metadata's fields; a wrong type is a ``ConfigError`` naming the field."""

    def __init__(self, meta: dict[str, Any], path: Path) -> None:
        self.meta = meta
        self.path = path

    def bad(self, field: str, why: str) -> ConfigError:
        return ConfigError(f"{self.path}: field '{field}' {why}.",
                           f"Fix {self.path} (see `kaggle kernels init` for the format).")

    def text(self, field: str, default: str | None) -> str | None:
        value = self.meta.get(field, default)
        if value is not None and not isinstance(value, str):
            raise self.bad(field, f"must be a string, not {type(value).__name__}")
        return value

    def strings(self, field: str) -> list[str]:
        value = self.meta.get(field, [])
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.bad(field, "must be a list of strings")
        return list(value)

    def boolean(self, field: str, default: bool) -> bool:
        if field not in self.meta:
            return default
        value = self.meta[field]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.bad(field, f"must be true or false, not {value!r}")


def _code_file(folder: Path, fields: _Fields) -> Path:
    code_path = fields.text("code_file", "")
    if not code_path:
        raise fields.bad("code_file", "is missing: a source file must be specified")
    code_file = folder / code_path
    if not code_file.is_file():
        raise fields.bad("code_file", f"names {code_file}, which does not exist")
    return code_file


def _identity(fields: _Fields, title: str | None, warnings: list[str]) -> tuple[str | None, int | None]:
    """The ``id`` (OWNER/SLUG or a slug) and ``id_no``; warns when the title would make another slug."""
    slug = fields.text("id", None)
    id_no = fields.meta.get("id_no")
    if id_no is not None and (isinstance(id_no, bool) or not isinstance(id_no, int)):
        raise fields.bad("id_no", f"must be an integer, not {id_no!r}")
    if not slug and not id_no:
        raise fields.bad("id", "is missing: an id (OWNER/SLUG) or id_no must be specified")
    if slug:
        kernel_slug = slug
        if "/" in slug:
            parts = slug.split("/")
            if len(parts) > 2:
                raise fields.bad("id", "cannot contain a version" if len(parts) == 3 else "must be OWNER/SLUG")
            if not parts[0] or not parts[1]:
                raise fields.bad("id", "must be OWNER/SLUG")
            if len(parts[1]) < MIN_SLUG_LENGTH:
                raise fields.bad("id", f"has a slug shorter than {MIN_SLUG_LENGTH} characters")
            kernel_slug = parts[1]
        if title:
            from slugify import slugify  # a dependency of kaggle; no kaggle import

            if kernel_slug.lower() != slugify(title):
                warnings.append(
                    f"The title '{title}' does not resolve to the slug '{kernel_slug}'; Kaggle may create a "
                    "kernel with a different URL. Make the title match the slug."
                )
    return slug, id_no


def _language_and_type(fields: _Fields) -> tuple[str, str]:
    language = fields.text("language", "") or ""
    if language not in VALID_LANGUAGES:
        raise fields.bad("language", f"must be one of {', '.join(VALID_LANGUAGES)}, not {language!r}")
    kernel_type = fields.text("kernel_type", "") or ""
    if kernel_type not in VALID_KERNEL_TYPES:
        raise fields.bad("kernel_type", f"must be one of {', '.join(VALID_KERNEL_TYPES)}, not {kernel_type!r}")
    if kernel_type == "notebook" and language == "rmarkdown":
        language = "r"
    return language, kernel_type


def _dataset_ok(parts: list[str]) -> bool:
    return len(parts) in (2, 3) and bool(parts[0]) and bool(parts[1])


def _kernel_ok(parts: list[str]) -> bool:
    return (len(parts) in (2, 3) and bool(parts[0]) and len(parts[1]) >= MIN_SLUG_LENGTH
            and (len(parts) == 2 or bool(parts[2])))


def _model_ok(parts: list[str]) -> bool:
    return len(parts) == 5 and all(parts) and parts[4].isdigit()


_SOURCE_FORMS: dict[str, tuple[Callable[[list[str]], bool] | None, str]] = {
    "dataset_sources": (_dataset_ok, "OWNER/DATASET-SLUG[/VERSION]"),
    "kernel_sources": (_kernel_ok, "OWNER/KERNEL-SLUG[/VERSION]"),
    "model_sources": (_model_ok, "OWNER/MODEL/FRAMEWORK/VARIATION/VERSION"),
    "competition_sources": (None, ""),
}


def _sources(fields: _Fields) -> dict[str, list[str]]:
    """The four source lists, each entry checked against its form."""
    out: dict[str, list[str]] = {}
    for field, (valid, form) in _SOURCE_FORMS.items():
        values = fields.strings(field)
        for source in values:
            if valid is not None and not valid(source.split("/")):
                raise fields.bad(field, f"has '{source}'; use {form}")
        out[field] = values
    return out


def _code_text(code_file: Path, kernel_type: str, fields: _Fields) -> str:
    try:
        body = code_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fields.bad("code_file",
                         f"names {code_file}, which cannot be read as UTF-8 ({type(exc).__name__})") from None
    return normalize_notebook(body, code_file) if kernel_type == "notebook" else body


def normalize_notebook(body: str, path: Path) -> str:
    """Kaggle's push re-serialisation: code cells lose outputs, list sources are joined (wire doc §6.2)."""
    try:
        notebook = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Notebook {path} is not valid JSON: {exc}.",
                          "Save the notebook again from Jupyter.") from None
    if isinstance(notebook, dict) and isinstance(notebook.get("cells"), list):
        for cell in notebook["cells"]:
            if not isinstance(cell, dict):
                continue
            if "outputs" in cell and cell.get("cell_type") == "code":
                cell["outputs"] = []
            if "source" in cell and isinstance(cell["source"], list):
                cell["source"] = "".join(cell["source"])
    return json.dumps(notebook)
