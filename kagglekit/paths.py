"""Where kagglekit keeps its per-user state, and how it writes files safely.

The data dir comes from platformdirs (XDG on Linux); ``KAGGLEKIT_HOME`` overrides
it so tests and demos stay isolated from a user's real ledger.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV_HOME = "KAGGLEKIT_HOME"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def data_dir() -> Path:
    """The per-user data dir (created on first use)."""
    override = os.environ.get(ENV_HOME)
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("kagglekit", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ledger_path() -> Path:
    return data_dir() / "ledger.sqlite3"


def emulator_state_path() -> Path:
    """JSON file with the background emulator's URL and pid."""
    return data_dir() / "emulator.json"


def emulator_data_dir() -> Path:
    return data_dir() / "emulator"


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[object]:
    """Open a temporary file beside ``path``; on success fsync and rename it into place.

    A crash leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; keep an existing file's mode, else the usual umask-based one.
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o666 & ~_UMASK)
        f = os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding=encoding)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)  # type: ignore[attr-defined]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb", encoding=None) as f:
        f.write(data)  # type: ignore[attr-defined]
