"""A local Kaggle-compatible kernels API that really runs kernels (the ``--local`` backend).

Structure, as moto does it: ``models`` (state + rules, no HTTP), ``responses`` (parse +
serialize, logs and files included), ``routes`` (URL -> route), ``control`` (the
``/__emulator/`` routes), ``app`` (backend + runner + faults), ``server`` (HTTP),
``runner`` (subprocesses), ``faults`` (fault injection). Prod-shaped by default
(docs/emulator.md). Imports nothing from kagglekit except ``kagglekit.constants``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kagglekit.emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from kagglekit.emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
