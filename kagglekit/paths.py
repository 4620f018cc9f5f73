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
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")  # virtual file systems: never a place for kagglekit's output
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
def atomic_writer(path: Path, mode: str = "w", encoding: str | None = "utf-8", *,
                  fsync: bool = True) -> Iterator[object]:
    """Open a temporary file beside ``path``; on success fsync and rename it into place.

    A crash leaves either the old file or the new one, never half of one (``fsync=False`` skips the
    flush to disk, for frequent saves: a power cut may then keep the old file, still never half of one). A device, pipe or folder
    at ``path`` is refused: the rename would replace it (as root, even ``/dev/null``).
    """
    if path.exists() and not path.is_file():
        from kagglekit.errors import ConfigError

        raise ConfigError(f"{path} exists and is not a regular file (a folder, device, pipe or socket); "
                          "kagglekit writes files only.", hint="Choose another file name.")
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
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str, *, fsync: bool = True) -> None:
    with atomic_writer(path, fsync=fsync) as f:
        f.write(text)  # type: ignore[attr-defined]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb", encoding=None) as f:
        f.write(data)  # type: ignore[attr-defined]


def _system_folder(path: Path) -> str | None:
    real = os.path.realpath(path)
    return next((top for top in SYSTEM_FOLDERS if real == top or real.startswith(top + "/")), None)


def output_dir(path: Path, option: str) -> Path:
    """Make sure ``path`` is (or can become) a folder kagglekit may write into; ``ConfigError`` if not.

    Checked before any work, so ``-o afile/sub``, ``-o /dev/null`` or ``-o /proc/1/x`` fail with what
    is wrong with the path instead of an OSError from deep inside.
    """
    from kagglekit.errors import ConfigError

    hint = f"Give {option} a folder you can write to (it is created if missing)."
    if "\x00" in str(path):
        raise ConfigError(f"{option} {str(path)!r} contains a NUL character, which no path can hold.", hint=hint)
    try:
        return _output_dir(path, option, hint)
    except OSError as exc:  # e.g. a name over 255 bytes or a path over PATH_MAX
        raise ConfigError(f"{option} {_short_path(path)}: {exc.strerror or exc}.", hint=hint) from None


def _short_path(path: Path, limit: int = 120) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _output_dir(path: Path, option: str, hint: str) -> Path:
    from kagglekit.errors import ConfigError

    top = _system_folder(path)
    if top is not None:
        raise ConfigError(f"{option} {path}: {top} is a system folder (a virtual file system), not a place for "
                          "files.", hint=hint)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder.", hint=hint)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, so it cannot hold a folder.", hint=hint)
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create the folder ({exc.strerror or exc}).", hint=hint) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: the folder is not writable.", hint=hint)
    return path


def output_file(path: Path, option: str) -> Path:
    """Make sure ``path`` can be written as a regular file (its folder is created); ``ConfigError`` if not.

    An existing device, pipe or folder there is refused: an atomic write would replace it.
    """
    from kagglekit.errors import ConfigError

    hint = f"Give {option} a file path in a folder you can write to."
    if "\x00" in str(path):
        raise ConfigError(f"{option} {str(path)!r} contains a NUL character, which no path can hold.", hint=hint)
    if len(path.name.encode("utf-8", "surrogateescape")) > 255:
        raise ConfigError(f"{option} {_short_path(path)}: the file name is longer than the 255 bytes file "
                          "systems allow.", hint=hint)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder, not a file.", hint=hint)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path} exists and is not a regular file (a device, pipe or socket).",
                          hint=hint)
    if not path.name:
        raise ConfigError(f"{option} {path!s} names no file.", hint=hint)
    output_dir(path.parent if str(path.parent) else Path("."), option)
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (the emulator's server, a queue runner holding its lease)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
