"""Choose what kagglekit talks to: Kaggle, any compatible endpoint, or the local emulator.

- ``local=True``: start (or reuse) the background emulator and sign in as its seeded demo
  account; the user's real credentials are never read, let alone sent.
- ``endpoint`` (``--endpoint`` or ``KAGGLEKIT_ENDPOINT``): that base URL with the user's
  credentials.
- otherwise: ``https://api.kaggle.com`` with the user's credentials.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kagglekit.credentials import demo_credentials, find_credentials
from kagglekit.errors import ConfigError

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient

ENV_ENDPOINT = "KAGGLEKIT_ENDPOINT"


def open_client(local: bool = False, endpoint: str | None = None, verbose: bool = False) -> KaggleApiClient:
    """The client for these options; ``verbose`` traces HTTP to stderr with secrets redacted."""
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.api.transport import KAGGLE_API_ENDPOINT, env_retry, env_timeout, normalize_endpoint

    endpoint = endpoint or os.environ.get(ENV_ENDPOINT) or None
    timeout, retry = env_timeout(), env_retry()
    if local:
        if endpoint:
            raise ConfigError(
                f"--local and --endpoint ({endpoint}) were both given.",
                f"Use one: --local starts the embedded emulator; --endpoint (or {ENV_ENDPOINT}) names a server.",
            )
        url = _local_emulator_url()
        return KaggleApiClient(demo_credentials(), endpoint=url, timeout=timeout, retry=retry,
                               verbose=verbose, notify=_notice, web_base=url)
    base = normalize_endpoint(endpoint) if endpoint else KAGGLE_API_ENDPOINT
    credentials = find_credentials()
    for warning in credentials.warnings:
        _notice(f"Warning: {warning}")
    if _plain_http_to_remote(base):
        _notice(f"Warning: {base} is plain HTTP on a non-local host; your Kaggle credentials travel unencrypted.")
    return KaggleApiClient(credentials, endpoint=base, timeout=timeout, retry=retry, verbose=verbose,
                           notify=_notice)


def _local_emulator_url() -> str:
    from kagglekit import local

    running = local.status()
    if running is None:
        running = local.start()
        _notice(f"Started the local Kaggle emulator at {running.url} (data in {running.data_dir}); "
                "stop it with: kagglekit emulator stop")
    return running.url


def _plain_http_to_remote(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _notice(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def account_hint(local: bool = False, endpoint: str | None = None) -> str | None:
    """The ledger account these options would use, without any network call (None if unknown).

    For ``report``, which reads saved quota readings and never needs to reach Kaggle.
    """
    from kagglekit.constants import DEMO_USERNAME
    from kagglekit.credentials import ledger_account
    from kagglekit.errors import KagglekitError

    if local:
        return f"{DEMO_USERNAME}@local"
    base = endpoint or os.environ.get(ENV_ENDPOINT) or "https://api.kaggle.com"
    try:
        username = find_credentials().username
    except KagglekitError:
        return None
    return ledger_account(username, base) if username else None
