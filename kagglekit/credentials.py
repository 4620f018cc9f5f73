"""Find the user's Kaggle credentials exactly where the official client looks, without importing it.

Importing any ``kaggle.*`` module authenticates at import time (and prints help text
when nothing is found), so this module re-implements the lookup of kaggle 2.2.5 /
kagglesdk 0.1.38 (docs/kaggle-wire.md §4.1) in plain Python:

1. an access token: inside a Kaggle notebook the file named by ``KAGGLE_API_V1_TOKEN``;
   then ``KAGGLE_API_TOKEN`` (the token itself, or the path of a file holding it);
   then ``~/.kaggle/access_token``, then ``~/.kaggle/access_token.txt``;
2. a legacy API key: ``kaggle.json`` in ``$KAGGLE_CONFIG_DIR``, else ``~/.kaggle``, else
   (Linux, when ``~/.kaggle`` does not exist) ``$XDG_CONFIG_HOME/kaggle`` or
   ``~/.config/kaggle``; its values are overridden by ``KAGGLE_USERNAME`` / ``KAGGLE_KEY``.

kagglekit never writes, copies or prints a credential: the secret lives in a
:class:`Secret`, whose ``repr``/``str`` are redacted, so even ``dataclasses.asdict`` or
an f-string cannot leak it. Only the HTTP layer calls :meth:`Secret.reveal`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from kagglekit.constants import DEMO_KEY, DEMO_USERNAME
from kagglekit.errors import CredentialsError

AuthKind = Literal["token", "key"]

TOKEN_SETTINGS_URL = "https://www.kaggle.com/settings"
NO_CREDENTIALS_HINT = (
    f"Create an API token at {TOKEN_SETTINGS_URL} (section 'API', 'Create New Token') and save it as "
    "~/.kaggle/access_token (chmod 600), or set KAGGLE_API_TOKEN; a legacy kaggle.json key or "
    "KAGGLE_USERNAME + KAGGLE_KEY work too. To try kagglekit without an account, add --local "
    "(the embedded emulator)."
)


class Secret:
    """A credential value that never shows itself in ``repr``, ``str``, logs or JSON."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The raw value, for the HTTP layer only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:
        return self  # immutable; also lets dataclasses.asdict() copy a Credentials

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")  # keep it out of caches and files


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Who talks to Kaggle, and how: a bearer token or a legacy username + key.

    ``source`` says where the secret came from (a path or an environment variable),
    so error messages can point at it without ever showing it.
    """

    auth_kind: AuthKind
    secret: Secret
    source: str
    username: str | None = None  # for a token: a hint from kaggle.json / KAGGLE_USERNAME, may be None
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> Secret | None:
        return self.secret if self.auth_kind == "key" else None

    @property
    def token(self) -> Secret | None:
        return self.secret if self.auth_kind == "token" else None

    def describe(self) -> str:
        """Human summary without the secret, e.g. ``API key of 'alice' from ~/.kaggle/kaggle.json``."""
        if self.auth_kind == "key":
            return f"API key of '{self.username}' from {self.source}"
        return f"access token from {self.source}"

    def __repr__(self) -> str:
        return (
            f"Credentials(auth_kind={self.auth_kind!r}, username={self.username!r}, "
            f"source={self.source!r}, secret=***)"
        )

    __str__ = __repr__


def demo_credentials() -> Credentials:
    """The emulator's seeded demo account (never sent anywhere but the local emulator)."""
    return Credentials(
        auth_kind="key",
        secret=Secret(DEMO_KEY),
        source="the local emulator's demo account",
        username=DEMO_USERNAME,
    )


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of ``kaggle.json``, chosen exactly as kaggle 2.2.5 does (no folder is created)."""
    env = os.environ if environ is None else environ
    explicit = env.get("KAGGLE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = _home(env)
    legacy = home / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        return Path(xdg) / "kaggle"
    return legacy


def find_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """Return the credentials the official client would use, or raise ``CredentialsError``.

    The error lists every place that was looked at and what was (not) found there.
    """
    env = os.environ if environ is None else environ
    looked: list[str] = []
    token = _find_token(env, looked)
    legacy = _read_legacy(env, looked)
    if token is not None:
        secret, source, warnings = token
        _check_header_safe(secret.reveal(), source, "access token")
        return Credentials("token", secret, source, username=legacy.username, warnings=warnings)
    if legacy.username and legacy.key:
        _check_header_safe(legacy.key, legacy.key_source, "API key")
        _check_header_safe(legacy.username, legacy.username_source, "username", allow_colon=False)
        return Credentials(
            "key", Secret(legacy.key), legacy.source, username=legacy.username, warnings=legacy.warnings
        )
    oauth = _home(env) / ".kaggle" / "credentials.json"
    if oauth.is_file():
        looked.append(
            f"{oauth}: found, but OAuth logins from `kaggle auth login` need a network refresh that "
            "kagglekit does not do; create an API token instead"
        )
    lines = "\n".join(f"  - {entry}" for entry in looked)
    raise CredentialsError(
        "No Kaggle credentials found. kagglekit looked, in the official client's order, at:\n" + lines,
        NO_CREDENTIALS_HINT,
    )


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _check_header_safe(value: str, source: str, what: str, *, allow_colon: bool = True) -> None:
    """Refuse a credential that cannot travel in an HTTP header, naming where it came from, never the value.

    Two tokens on two lines, spaces, control or non-ASCII characters would otherwise surface as
    ``Invalid header value b'Bearer ...'`` from the HTTP library, secret included.
    """
    if _HEADER_SAFE.fullmatch(value) and (allow_colon or ":" not in value):
        return
    problems = []
    if any(ch in value for ch in "\r\n"):
        problems.append("more than one line")
    if any(ch in " \t" for ch in value.strip()):
        problems.append("spaces inside it")
    if any(ord(ch) > 0x7E for ch in value):
        problems.append("non-ASCII characters")
    if any(ord(ch) < 0x20 and ch not in "\r\n\t" for ch in value) or "\x7f" in value:
        problems.append("control characters")
    if not allow_colon and ":" in value:
        problems.append("a ':'")
    why = ", ".join(problems) or "characters an HTTP header cannot carry"
    raise CredentialsError(
        f"The Kaggle {what} in {source} is malformed ({why}); it was not sent anywhere.",
        f"Put exactly one {what} in {source} (copy it again from {TOKEN_SETTINGS_URL}, 'API' section), "
        "with nothing else on the line.",
    )


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _loose_permissions(path: Path) -> str | None:
    """Kaggle's own warning when a credential file is readable by group or others."""
    if os.name == "nt":
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"{path} is readable by other users on this system; run: chmod 600 {path}"
    return None


def _read_token_file(path: Path) -> tuple[str | None, str]:
    """(token, what happened) for a token file: missing, unreadable or empty files give no token."""
    if not path.exists():
        return None, "no such file"
    if path.is_dir():
        return None, "is a folder, not a file; ignored"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({type(exc).__name__})"
    if not text:
        return None, "empty file"
    return text, "found"


def _find_token(env: Mapping[str, str], looked: list[str]) -> tuple[Secret, str, tuple[str, ...]] | None:
    # 1. Inside a Kaggle notebook: the file named by KAGGLE_API_V1_TOKEN.
    if env.get("KAGGLE_KERNEL_RUN_TYPE") is not None and env.get("KAGGLE_DATA_PROXY_URL") is not None:
        path_value = env.get("KAGGLE_API_V1_TOKEN")
        if path_value:
            value, what = _read_token_file(Path(path_value))
            if value:
                return Secret(value), f"{path_value} (KAGGLE_API_V1_TOKEN, inside a Kaggle notebook)", ()
            looked.append(f"{path_value} (KAGGLE_API_V1_TOKEN): {what}")
    # 2. KAGGLE_API_TOKEN: the token itself, or the path of a file holding it.
    raw = env.get("KAGGLE_API_TOKEN")
    if raw:
        candidate = Path(raw)  # kagglesdk does no ~ expansion either
        if candidate.exists():
            value, what = _read_token_file(candidate)
            if value:
                warning = _loose_permissions(candidate)
                return Secret(value), f"{candidate} (named by KAGGLE_API_TOKEN)", (
                    (warning,) if warning else ()
                )
            looked.append(f"KAGGLE_API_TOKEN names the file {candidate}: {what}")
            # kagglesdk stops the token search here (an empty token file), then falls back to the key.
            return None
        return Secret(raw), "the KAGGLE_API_TOKEN environment variable", ()
    looked.append("KAGGLE_API_TOKEN environment variable: not set")
    # 3./4. ~/.kaggle/access_token, then ~/.kaggle/access_token.txt (never KAGGLE_CONFIG_DIR).
    for name in ("access_token", "access_token.txt"):
        path = _home(env) / ".kaggle" / name
        value, what = _read_token_file(path)
        if value:
            warning = _loose_permissions(path)
            return Secret(value), str(path), ((warning,) if warning else ())
        looked.append(f"{path}: {what}")
    return None


@dataclasses.dataclass
class _Legacy:
    username: str | None
    key: str | None
    source: str
    warnings: tuple[str, ...]
    username_source: str = ""
    key_source: str = ""


def _read_legacy(env: Mapping[str, str], looked: list[str]) -> _Legacy:
    folder = config_dir(env)
    path = folder / "kaggle.json"
    why = "" if env.get("KAGGLE_CONFIG_DIR") else " (KAGGLE_CONFIG_DIR not set)"
    values: dict[str, object] = {}
    warnings: list[str] = []
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            looked.append(f"{path}{why}: cannot be parsed as JSON ({type(exc).__name__}); ignored, as Kaggle does")
            loaded = {}
        if isinstance(loaded, dict):
            values = dict(loaded)
        else:
            looked.append(f"{path}{why}: found, but it is not a JSON object ({type(loaded).__name__}); ignored")
        warning = _loose_permissions(path)
        if warning:
            warnings.append(warning)
        missing = [name for name in ("username", "key") if not values.get(name)]
        if values and missing:
            looked.append(f"{path}{why}: found, but it has no {' and no '.join(missing)}")
        elif values:
            looked.append(f"{path}{why}: found")
    elif path.is_dir():
        looked.append(f"{path}{why}: is a folder, not a file; ignored")
    elif path.exists():
        looked.append(f"{path}{why}: not a regular file; ignored")
    else:
        looked.append(f"{path}{why}: no such file")
    file_username = _str_or_none(values.get("username"))
    file_key = _str_or_none(values.get("key"))
    env_username = env.get("KAGGLE_USERNAME") or None
    env_key = env.get("KAGGLE_KEY") or None
    if env_username is None and env_key is None:
        looked.append("KAGGLE_USERNAME / KAGGLE_KEY environment variables: not set")
    elif env_username is None or env_key is None:
        only = "KAGGLE_USERNAME" if env_key is None else "KAGGLE_KEY"
        looked.append(f"KAGGLE_USERNAME / KAGGLE_KEY environment variables: only {only} is set")
    username = env_username or file_username
    key = env_key or file_key
    sources = []
    if (file_username and not env_username) or (file_key and not env_key):
        sources.append(str(path))
    if env_username or env_key:
        names = [n for n, v in (("KAGGLE_USERNAME", env_username), ("KAGGLE_KEY", env_key)) if v]
        sources.append(" and ".join(names) + " environment variable" + ("s" if len(names) > 1 else ""))
    return _Legacy(username, key, " + ".join(sources) or str(path), tuple(warnings),
                   username_source="the KAGGLE_USERNAME environment variable" if env_username else str(path),
                   key_source="the KAGGLE_KEY environment variable" if env_key else str(path))


def _str_or_none(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


KAGGLE_HOSTS = ("api.kaggle.com", "www.kaggle.com", "kaggle.com")


def ledger_account(username: str, endpoint: str) -> str:
    """The key the ledger and quota readings use for ``username`` on ``endpoint``.

    ``alice`` on Kaggle's production API, ``alice@local`` on a loopback endpoint (the emulator,
    on whatever port), ``alice@<host>`` on any other: a demo account's runs and quota never mix
    with a real account's, and a real user named ``demo`` stays apart from the emulator's.
    """
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme == "https" and host in KAGGLE_HOSTS:
        return username
    try:
        ip = ipaddress.ip_address(host)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        loopback = ip.is_loopback or (mapped is not None and mapped.is_loopback)
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    return f"{username}@local" if loopback else f"{username}@{host}"
