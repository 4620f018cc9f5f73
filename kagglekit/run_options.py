"""What to run and where (``RunOptions``), parsed from command-line values: no click, so core modules can use it.

``kagglekit.options`` turns these into click options for ``bundle`` and ``push``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kagglekit.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What to run and where: command-line values, None when not given."""

    mode: str | None = None  # "test" | "full"
    sets: dict[str, str] = dataclasses.field(default_factory=dict)  # --set NAME=VALUE
    accelerator: str | None = None  # "gpu" | "tpu" | "cpu" | a machine shape
    internet: bool | None = None
    timeout: str | None = None  # "11h", "90m", seconds
    args: tuple[str, ...] | None = None  # the entry point's arguments, given after ``--`` (``()``: an empty ``--``)
    kernel: str | None = None  # another kernel than the project's (an experiment's own, kagglekit/experiments.py)

    def settings_overrides(self) -> dict[str, Any]:
        """The command-line layer for ``settings.load_project``."""
        out: dict[str, Any] = {"accelerator": self.accelerator, "internet": self.internet, "timeout": self.timeout}
        if self.kernel is not None:  # the title names the kernel on Kaggle: it follows the slug
            from kagglekit.settings import title_from_slug

            out.update(kernel=self.kernel, title=title_from_slug(self.kernel.rpartition("/")[2]))
        return out


def parse_sets(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("n_epoch=1", "lr=3e-4")`` -> ``{"n_epoch": "1", "lr": "3e-4"}`` (later wins).

    A name may be qualified: ``CFG.lr``, ``config.py:EPOCHS``, ``configs/base.yaml:train.epochs``.
    """
    from kagglekit.settings import SET_EXAMPLES, parse_set_target

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
