"""Options shared by ``kagglekit bundle`` and ``kagglekit push`` (accelerator, mode, --set, ...).

Kept light (click only): cli.py imports it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


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
