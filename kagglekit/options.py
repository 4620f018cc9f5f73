"""Options shared by ``kagglekit bundle`` and ``kagglekit push`` (accelerator, mode, --set, ...).

Kept light (click only): cli.py imports it at start-up.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kagglekit.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_PY_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
SET_EXAMPLES = ("E.g. --set n_epoch=1 (a Config attribute or module constant), --set CFG.lr=3e-4, "
                "--set config.py:EPOCHS=1, --set configs/base.yaml:train.epochs=1.")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What to run and where: command-line values, None when not given."""

    mode: str | None = None  # "test" | "full"
    sets: dict[str, str] = dataclasses.field(default_factory=dict)  # --set NAME=VALUE
    accelerator: str | None = None  # "gpu" | "tpu" | "cpu" | a machine shape
    internet: bool | None = None
    timeout: str | None = None  # "11h", "90m", seconds
    args: tuple[str, ...] = ()  # the entry point's arguments, given after ``--``

    def settings_overrides(self) -> dict[str, Any]:
        """The command-line layer for ``settings.load_project``."""
        return {"accelerator": self.accelerator, "internet": self.internet, "timeout": self.timeout}


def run_options(f: F) -> F:
    """Decorate a command with --test/--full, --set, --gpu/--tpu/--cpu, --accelerator, --internet, --timeout."""
    decorators = [
        click.option("--test", "mode_test", is_flag=True,
                     help="Run the project's test mode: running_test = True in the bundled copy."),
        click.option("--full", "mode_full", is_flag=True,
                     help="Run the full mode: running_test = False in the bundled copy."),
        click.option("--set", "set_values", multiple=True, metavar="NAME=VALUE",
                     help="Override a value in the bundled copy (repeatable): a Config attribute or module "
                          "constant (--set n_epoch=1, --set config.py:EPOCHS=1) or a config file key "
                          "(--set configs/base.yaml:train.epochs=1)."),
        click.option("--gpu", "acc_gpu", is_flag=True, help="GPU T4 x2 (machine_shape NvidiaTeslaT4)."),
        click.option("--tpu", "acc_tpu", is_flag=True, help="TPU v5e-8 (machine_shape TpuV5E8)."),
        click.option("--cpu", "acc_cpu", is_flag=True, help="No accelerator."),
        click.option("--accelerator", "acc_shape", metavar="SHAPE",
                     help="Any machine shape, e.g. NvidiaTeslaT4, TpuV5E8, NvidiaL4."),
        click.option("--internet/--no-internet", "internet", default=None,
                     help="Internet access in the kernel (default: on, off with a competition source)."),
        click.option("--timeout", metavar="DURATION",
                     help="Session time limit, e.g. 11h or 90m (default: Kaggle's 12h, 9h for TPU)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


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


def parse_sets(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("n_epoch=1", "lr=3e-4")`` -> ``{"n_epoch": "1", "lr": "3e-4"}`` (later wins).

    A name may be qualified: ``CFG.lr``, ``config.py:EPOCHS``, ``configs/base.yaml:train.epochs``.
    """
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set {item!r} is not NAME=VALUE.", hint=SET_EXAMPLES)
        parse_set_target(name)
        out[name] = value.strip()
    return out


def parse_run_options(*, mode_test: bool = False, mode_full: bool = False, set_values: tuple[str, ...] = (),
                      acc_gpu: bool = False, acc_tpu: bool = False, acc_cpu: bool = False,
                      acc_shape: str | None = None, internet: bool | None = None,
                      timeout: str | None = None) -> RunOptions:
    """Turn the raw values of ``run_options`` into a ``RunOptions`` (conflicts are ConfigErrors)."""
    if mode_test and mode_full:
        raise ConfigError("--test and --full contradict each other.", hint="Give one of them.")
    chosen = [name for name, on in (("--gpu", acc_gpu), ("--tpu", acc_tpu), ("--cpu", acc_cpu),
                                     (f"--accelerator {acc_shape}", acc_shape is not None)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"Conflicting accelerators: {' and '.join(chosen)}.", hint="Give one of them.")
    accelerator = "gpu" if acc_gpu else "tpu" if acc_tpu else "cpu" if acc_cpu else acc_shape
    if accelerator is not None:
        from kagglekit.settings import resolve_machine_shape

        resolve_machine_shape(accelerator)  # fail early, with the allowed values
    return RunOptions(mode="test" if mode_test else "full" if mode_full else None,
                      sets=parse_sets(set_values), accelerator=accelerator, internet=internet, timeout=timeout)
