"""One kernel identity per project folder, remembered from the push that used it.

A project without a ``kernel`` setting pushes to a slug derived from its folder name, owned by
the account that pushed. ``push`` records that ``owner/slug`` in ``.kagglekit/kernel.json``
(per backend: Kaggle, the local emulator, another endpoint, since the owner differs), and
``status``, ``logs``, ``pull-outputs``, ``report`` and ``runs`` run in the same folder find it.
A ``kernel`` setting always wins over what was remembered.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

FILE = ".kagglekit/kernel.json"


def backend_key(local: bool, endpoint: str | None) -> str:
    """``kaggle``, ``local`` (``--local`` or any loopback endpoint) or the endpoint's host."""
    if local:
        return "local"
    if endpoint:
        from kagglekit.credentials import ledger_account

        return ledger_account("_", endpoint).partition("@")[2] or "kaggle"
    return "kaggle"


def _read(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(root: Path, kernel: str, backend: str) -> None:
    """Record that ``kernel`` (owner/slug) is this folder's kernel on ``backend``; never fails a push."""
    data = _read(root)
    by_backend = data.get("kernels") if isinstance(data.get("kernels"), dict) else {}
    assert isinstance(by_backend, dict)
    owner_slug = "/".join(kernel.split("/")[:2])
    if by_backend.get(backend) == owner_slug and data.get("last") == owner_slug:
        return
    by_backend[backend] = owner_slug
    from kagglekit.paths import write_text_atomic

    with contextlib.suppress(OSError):
        (root / FILE).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / FILE, json.dumps({"kernels": by_backend, "last": owner_slug}, indent=1,
                                                  sort_keys=True) + "\n")


def remembered(root: Path, backend: str | None = None) -> str | None:
    """The kernel pushed from this folder on ``backend`` (None: the last one pushed on any)."""
    data = _read(root)
    if backend is None:
        last = data.get("last")
        return last if isinstance(last, str) and last else None
    by_backend = data.get("kernels")
    value = by_backend.get(backend) if isinstance(by_backend, dict) else None
    return value if isinstance(value, str) and value else None
