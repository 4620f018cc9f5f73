"""Experiments: named variants of one project, each pushed as its own kernel.

An experiment is a name plus ``--set`` overrides (and optionally its own accelerator, mode and
session timeout). They come from the project's settings (an ``experiments`` table) or from the
command line as a grid (``--grid lr=1e-3,3e-4 --grid fold=0,1,2``: the cartesian product). Each
runs as its own kernel, ``<project-slug>-<experiment-slug>``, so outputs, versions and resume
chains of two experiments never mix (docs/queue.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kagglekit.errors import ConfigError
from kagglekit.run_options import RunOptions, parse_sets

# Kaggle names a kernel after its title (at most 50 characters); the relay sibling adds "-relay".
MAX_EXPERIMENT_SLUG = 44
_KEYS = {"name", "set", "accelerator", "mode", "timeout"}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One variant of the project."""

    name: str
    sets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    accelerator: str | None = None  # None: the project's accelerator
    mode: str | None = None  # "test" | "full" | None (as written)
    timeout: str | None = None  # session timeout ("40", "2h"), None: the project's

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "set": dict(self.sets), "accelerator": self.accelerator,
                           "mode": self.mode, "timeout": self.timeout}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        data = json.loads(text)
        return cls(name=data["name"], sets=dict(data.get("set") or {}), accelerator=data.get("accelerator"),
                   mode=data.get("mode"), timeout=data.get("timeout"))

    def run_options(self, defaults: RunOptions | None = None) -> RunOptions:
        """What to push this experiment with: its own values over the command line's defaults."""
        base = defaults or RunOptions()
        return dataclasses.replace(base, mode=self.mode or base.mode, sets={**base.sets, **self.sets},
                                   accelerator=self.accelerator or base.accelerator,
                                   timeout=self.timeout or base.timeout)

    def overrides_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.sets.items()))


def experiment_slug(project_slug: str, name: str) -> str:
    """``mnist`` + ``lr 3e-4`` -> ``mnist-lr-3e-4``; too long: cut, with a short hash so two stay apart."""
    from kagglekit.settings import slugify

    slug = slugify(f"{project_slug}-{name}")
    if len(slug) <= MAX_EXPERIMENT_SLUG:
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return slug[:MAX_EXPERIMENT_SLUG - 7].rstrip("-") + "-" + digest


def experiment_kernel(project_kernel: str, name: str) -> str:
    """The experiment's kernel id (``owner/<project-slug>-<experiment-slug>``)."""
    owner, _, slug = project_kernel.rpartition("/")
    new = experiment_slug(slug, name)
    return f"{owner}/{new}" if owner else new


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ConfigError(f"experiment override value {value!r} is not a number, string or boolean.")


def _one(name: str, raw: Mapping[str, Any], where: str) -> Experiment:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: experiment '{name}' has unknown key(s) {', '.join(sorted(unknown))}.",
                          hint="An experiment takes set = {NAME = VALUE}, accelerator, mode and timeout.")
    sets = raw.get("set") or {}
    if not isinstance(sets, Mapping):
        raise ConfigError(f"{where}: experiment '{name}': set must be a table of NAME = VALUE.")
    parsed = parse_sets([f"{k}={_text(v)}" for k, v in sets.items()])
    mode = raw.get("mode")
    if mode not in (None, "test", "full"):
        raise ConfigError(f"{where}: experiment '{name}': mode must be \"test\" or \"full\", not {mode!r}.")
    accelerator = raw.get("accelerator")
    if accelerator is not None:
        from kagglekit.settings import resolve_machine_shape

        resolve_machine_shape(str(accelerator))
    timeout = raw.get("timeout")
    return Experiment(name=name, sets=parsed, accelerator=None if accelerator is None else str(accelerator),
                      mode=mode, timeout=None if timeout is None else str(timeout))


def parse_table(tables: Sequence[Mapping[str, Any]], where: str = "the experiments setting") -> tuple[Experiment, ...]:
    """The ``experiments`` setting (settings.py keeps it as written: one table per experiment, with its
    ``name``): set = {NAME = VALUE}, accelerator, mode, timeout."""
    out = []
    for raw in tables:
        name = raw.get("name")
        if not name:
            raise ConfigError(f"{where}: each [[experiments]] entry needs a name.")
        if "bad" in raw:
            raise ConfigError(f"{where}: experiments.{name} must be a table (set = {{...}}, accelerator, ...).")
        out.append(_one(str(name), raw, where))
    _check_unique(out)
    return tuple(out)


def from_settings(settings: Any) -> tuple[Experiment, ...]:
    """The project's experiments (its ``experiments`` table)."""
    where = str(settings.config_file) if settings.config_file is not None else "the project settings"
    return parse_table(settings.experiments, where)


def parse_grid(values: Sequence[str]) -> tuple[Experiment, ...]:
    """``("lr=1e-3,3e-4", "fold=0,1")`` -> four experiments named ``lr-1e-3-fold-0`` ... (in that order)."""
    axes: list[tuple[str, list[str]]] = []
    for item in values:
        name, sep, raw = item.partition("=")
        choices = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not choices:
            raise ConfigError(f"--grid {item!r} is not NAME=V1,V2,...", hint="E.g. --grid lr=1e-3,3e-4 --grid fold=0,1")
        parse_sets([f"{name}={choices[0]}"])  # the same NAME rule as --set
        if any(name.strip() == n for n, _ in axes):
            raise ConfigError(f"--grid names {name.strip()} twice.", hint="Give each NAME once, with all its values.")
        axes.append((name.strip(), choices))
    out: list[Experiment] = []
    if not axes:
        return ()
    for combo in itertools.product(*(choices for _, choices in axes)):
        sets = {name: value for (name, _), value in zip(axes, combo, strict=True)}
        label = "-".join(f"{k}-{v}" for k, v in sets.items())
        out.append(Experiment(name=label, sets=sets))
    _check_unique(out)
    return tuple(out)


def _check_unique(experiments: Sequence[Experiment]) -> None:
    from kagglekit.settings import slugify

    seen: dict[str, str] = {}
    for e in experiments:
        slug = slugify(e.name)
        if not slug:
            raise ConfigError(f"Experiment name {e.name!r} has no letters or digits to name a kernel after.")
        if slug in seen:
            raise ConfigError(f"Experiments {seen[slug]!r} and {e.name!r} would share the kernel slug '{slug}'.",
                              hint="Give them names that differ in letters or digits.")
        seen[slug] = e.name


def select(experiments: Sequence[Experiment], grid: Sequence[Experiment]) -> tuple[Experiment, ...]:
    """The settings' experiments, then the grid's (a grid name already in the settings is an error)."""
    combined = [*experiments, *grid]
    _check_unique(combined)
    return tuple(combined)
