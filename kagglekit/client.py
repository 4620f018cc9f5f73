"""The Kaggle API client adapter: the ONLY kagglekit module that imports ``kagglesdk``.

It drives kagglesdk's own transport and service clients (the same code ``kaggle``
2.2.5 runs, see kaggle-wire.md) but never imports the ``kaggle`` package, whose
import authenticates and may print help text. On top of kagglesdk it adds what the
official client lacks:

- **endpoint override**: any Kaggle-compatible base URL (the emulator, a proxy);
  RPCs go to ``{endpoint}/v1/<service>/<Method>`` exactly as against api.kaggle.com;
- **timeouts** on every request (connect, read), never an endless hang;
- **retries** with exponential backoff + jitter on 429 (honouring ``Retry-After``),
  5xx (HTML error pages included), connection resets and read timeouts, done by
  urllib3's ``Retry`` on the session's adapter. urllib3 knows whether request bytes
  were sent, so a push (SaveKernel) is retried only when it provably never reached
  the server (connection refused / connect timeout) or was refused with 429;
  never after a reset, a read timeout or a 5xx, when it may have been accepted;
- **typed errors** (kagglekit/errors.py) for Kaggle's quirks: a push refused as
  HTTP 200 + ``error``, ``{"code": >=400}`` bodies under HTTP 200, 401/403/404 with
  the hints users need, statuses by name (missing = QUEUED);
- **log streaming** with reconnects and no duplicated records;
- **secret hygiene**: ``-vv`` tracing redacts Authorization headers, keys, tokens
  and URL signatures, and goes to stderr.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import urllib3
from kagglesdk.kaggle_env import KaggleEnv
from kagglesdk.kaggle_http_client import KaggleHttpClient
from kagglesdk.kernels.services.kernels_api_service import KernelsApiClient
from kagglesdk.kernels.types.kernels_api_service import (
    ApiDeleteKernelRequest,
    ApiGetAcceleratorQuotaStatisticsRequest,
    ApiGetKernelRequest,
    ApiGetKernelSessionStatusRequest,
    ApiListKernelSessionOutputRequest,
    ApiListKernelsRequest,
    ApiSaveKernelRequest,
)
from kagglesdk.kernels.types.kernels_enums import KernelExecutionType, KernelsListViewType
from kagglesdk.security.services.oauth_service import OAuthClient
from kagglesdk.security.types.oauth_service import IntrospectTokenRequest
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from kagglekit.constants import (
    FINAL_STATUSES,
    MIN_SLUG_LENGTH,
    MIN_TITLE_LENGTH,
    RETIRED_SHAPES,
    STATUS_QUEUED,
)
from kagglekit.credentials import Credentials
from kagglekit.errors import (
    ApiError,
    ConfigError,
    CredentialsError,
    KagglekitError,
    KaggleRefusedError,
    NotFoundError,
)
from kagglekit.logs import LogRecord, parse_log

__all__ = [
    "DEFAULT_TIMEOUT",
    "KAGGLE_API_ENDPOINT",
    "AcceleratorQuota",
    "KaggleApiClient",
    "KernelInfo",
    "KernelRef",
    "KernelStatus",
    "LogRecord",
    "OutputFile",
    "OutputListing",
    "PushResult",
    "QuotaInfo",
    "RetryPolicy",
]

KAGGLE_API_ENDPOINT = "https://api.kaggle.com"
KERNELS_SERVICE = "kernels.KernelsApiService"
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
STREAM_READ_TIMEOUT = 300.0  # a quiet training run may print nothing for minutes
METADATA_FILE = "kernel-metadata.json"
VALID_LANGUAGES = ("python", "r", "rmarkdown")
VALID_KERNEL_TYPES = ("script", "notebook")
VALID_PINNING_TYPES = ("original", "latest")
LOG_STREAM_END = "END_OF_LOG"
RPC_USER_AGENT = ""  # what kaggle 2.2.5 sends (kaggle-wire.md §2.2)


# ---------------------------------------------------------------------------
# Typed results
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KernelRef:
    """``owner/slug[/version]``: one kernel, optionally one of its versions."""

    owner: str
    slug: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str, default_owner: str | None = None) -> KernelRef:
        """Parse ``owner/slug``, ``owner/slug/N`` (or ``/vN``), a kernel URL, or a bare ``slug``.

        A bare slug gets ``default_owner`` (the signed-in user), as the official CLI does.
        """
        raw = (text or "").strip()
        if not raw:
            raise ConfigError("No kernel given.", "Pass a kernel as OWNER/SLUG (optionally /VERSION).")
        url_match = re.match(r"^https?://[^/]+/code/(.+?)/*$", raw)
        if url_match:
            raw = url_match.group(1)
        parts = raw.split("/")
        form_hint = "Write it as OWNER/SLUG or OWNER/SLUG/VERSION, e.g. alice/my-model/3."
        if len(parts) == 1:
            if not default_owner:
                raise ConfigError(f"Kernel '{text}' has no owner.", form_hint)
            owner, slug, version_text = default_owner, parts[0], None
        elif len(parts) == 2 and default_owner and re.fullmatch(r"[vV]?\d+", parts[1]):
            owner, slug, version_text = default_owner, parts[0], parts[1]  # "slug/3": a version of my kernel
        elif len(parts) in (2, 3):
            owner, slug = parts[0], parts[1]
            version_text = parts[2] if len(parts) == 3 else None
        else:
            raise ConfigError(f"Kernel '{text}' has too many parts.", form_hint)
        shown = _shown_ref(text)
        if not owner or not slug:
            raise ConfigError(f"Kernel {shown} has an empty owner or slug.", form_hint)
        if not _REF_OWNER.fullmatch(owner):
            raise ConfigError(f"Kernel {shown}: the owner {_shown_ref(owner)} is not a Kaggle username (letters, "
                              "digits, '-' and '_').", form_hint)
        if not _REF_SLUG.fullmatch(slug):
            raise ConfigError(f"Kernel {shown}: the slug {_shown_ref(slug)} is not a Kaggle slug (letters, digits "
                              "and '-', as in the kernel's URL).", form_hint)
        if len(slug) < MIN_SLUG_LENGTH:
            raise ConfigError(
                f"Kernel slug '{slug}' is shorter than {MIN_SLUG_LENGTH} characters; Kaggle rejects it.",
                form_hint,
            )
        version: int | None = None
        if version_text is not None:
            digits = version_text[1:] if version_text[:1] in ("v", "V") else version_text
            # ASCII digits only ('\u00b2'.isdigit() is True, int() refuses it) and a sane length.
            if not re.fullmatch(r"[0-9]{1,9}", digits) or int(digits) < 1:
                raise ConfigError(f"Kernel version {_shown_ref(version_text)} in {shown} is not a version number "
                                  "(a whole number from 1, in ASCII digits).", form_hint)
            version = int(digits)
        return cls(owner, slug, version)

    @property
    def version_label(self) -> str | None:
        """The API's form of the version, ``v<N>`` (a bare number gets 404 from Kaggle)."""
        return None if self.version is None else f"v{self.version}"

    def without_version(self) -> KernelRef:
        return KernelRef(self.owner, self.slug)

    def with_version(self, version: int | None) -> KernelRef:
        return KernelRef(self.owner, self.slug, version)

    @property
    def url(self) -> str:
        return f"https://www.kaggle.com/code/{self.owner}/{self.slug}"

    def __str__(self) -> str:
        base = f"{self.owner}/{self.slug}"
        return base if self.version is None else f"{base}/{self.version}"


_REF_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_REF_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _shown_ref(text: str, limit: int = 80) -> str:
    """A user-typed reference, quoted and cut short (a 5,000-digit version must not fill the screen)."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:50]}...{shown[-15:]} ({len(text)} characters)"


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What SaveKernel answered: the new version and anything Kaggle dropped from the request."""

    ref: KernelRef  # with the version Kaggle created
    version: int | None
    url: str
    kernel_id: int | None
    invalid_tags: list[str] = dataclasses.field(default_factory=list)
    invalid_dataset_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_competition_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_kernel_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_model_sources: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class KernelStatus:
    """A run's state by KernelWorkerStatus name (QUEUED when Kaggle omits it)."""

    ref: KernelRef
    status: str
    failure_message: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclasses.dataclass(frozen=True)
class OutputFile:
    """One output file: its relative name (from Kaggle, untrusted) and a signed download URL."""

    name: str
    url: str


@dataclasses.dataclass(frozen=True)
class OutputListing:
    ref: KernelRef
    files: list[OutputFile]
    log: str


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """A kernel's metadata (GetKernel / ListKernels); ``source`` only from GetKernel."""

    ref: KernelRef
    id: int | None
    title: str
    author: str
    language: str
    kernel_type: str
    is_private: bool
    enable_gpu: bool
    enable_tpu: bool
    enable_internet: bool
    machine_shape: str
    docker_image: str
    current_version: int | None
    last_run_time: datetime | None
    dataset_sources: list[str]
    competition_sources: list[str]
    kernel_sources: list[str]
    model_sources: list[str]
    keywords: list[str]
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class AcceleratorQuota:
    """One accelerator's weekly allowance, in seconds. ``reported`` is False when Kaggle sent none."""

    used_seconds: float
    total_seconds: float
    reserved_seconds: float = 0.0
    minimum_seconds: float = 0.0
    has_ever_run: bool = False
    pay_to_scale: bool = False
    reported: bool = True

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.total_seconds - self.used_seconds)


@dataclasses.dataclass(frozen=True)
class QuotaInfo:
    gpu: AcceleratorQuota
    tpu: AcceleratorQuota
    refresh_time: datetime | None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Waits grow as ``backoff_factor * 2**n`` (capped) plus up to ``jitter`` s."""

    status_retries: int = 5  # on 429 and 5xx
    connect_retries: int = 3  # the request never left: safe for every call
    read_retries: int = 2  # resets / read timeouts: idempotent calls only
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0  # a longer Retry-After is not waited for: the call fails with it
    status_forcelist: tuple[int, ...] = (429, 500, 502, 503, 504)


# ---------------------------------------------------------------------------
# Transport: kagglesdk's KaggleHttpClient with our endpoint, auth, timeouts, retries
# ---------------------------------------------------------------------------


class _KaggleRetry(Retry):
    """urllib3 Retry that caps Retry-After and tells the user what it is waiting for."""

    max_retry_after: float = 120.0
    notify: Callable[[str], None] | None = None

    def new(self, **kw: Any) -> _KaggleRetry:
        fresh = super().new(**kw)
        fresh.max_retry_after = self.max_retry_after
        fresh.notify = self.notify
        return fresh

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds or an HTTP date as urllib3 reads them, plus fractional seconds; never negative."""
        try:
            return max(0.0, float(retry_after.strip()))
        except ValueError:
            return super().parse_retry_after(retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # a malformed header: fall back to backoff

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> _KaggleRetry:
        if response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after is not None and retry_after > self.max_retry_after:
                raise MaxRetryError(_pool, url or "", None)  # give up now; the caller sees the 429
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        """Wait before the next attempt (Retry-After if the server sent one, else backoff + jitter)."""
        wait: float | None = None
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response) or None
        if wait is None:
            wait = self.get_backoff_time()
        if self.notify is not None and self.history:
            last = self.history[-1]
            why = f"HTTP {last.status}" if last.status else _short_reason(last.error)
            name = urlsplit(last.url or "").path.rsplit("/", 1)[-1] or "request"
            self.notify(f"{name}: {why}; retrying in {wait:.1f} s (retry {len(self.history)})")
        if wait > 0:
            time.sleep(wait)


def _short_reason(error: Exception | None) -> str:
    if error is None:
        return "no answer"
    text = str(error)
    for marker in ("Read timed out", "Connection refused", "Connection reset", "Connection aborted",
                   "RemoteDisconnected", "timed out"):
        if marker in text:
            return marker.lower()
    return type(error).__name__


def _make_retry(policy: RetryPolicy, *, push: bool, notify: Callable[[str], None] | None) -> _KaggleRetry:
    retry = _KaggleRetry(
        total=None,
        connect=policy.connect_retries,
        read=False if push else policy.read_retries,
        status=policy.status_retries,
        other=0,
        redirect=5,
        # urllib3 retries only the methods listed here on a read error or a status;
        # every RPC is a POST, so POST is listed, and a push gets read=False and 429 only.
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),
        status_forcelist=(429,) if push else policy.status_forcelist,
        backoff_factor=policy.backoff_factor,
        backoff_max=policy.backoff_max,
        backoff_jitter=policy.jitter,
        raise_on_status=False,  # hand back the last answer: we turn it into a typed error
        respect_retry_after_header=True,
    )
    retry.max_retry_after = policy.max_retry_after
    retry.notify = notify
    return retry


class _TimeoutAdapter(HTTPAdapter):
    """An HTTPAdapter with retries that applies a default (connect, read) timeout to every request."""

    def __init__(self, retry: Retry, timeout: tuple[float, float], pool_maxsize: int = 10) -> None:
        super().__init__(max_retries=retry, pool_maxsize=pool_maxsize)
        self._default_timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        return super().send(request, stream=stream, timeout=self._default_timeout if timeout is None else timeout,
                            verify=verify, cert=cert, proxies=proxies)


class _Redactor:
    """Removes credentials and URL signatures from any text that might be printed."""

    _HEADER = re.compile(r"(?im)^((?:proxy-)?authorization|cookie|set-cookie)\s*:.*$")
    _QUERY = re.compile(r"(?i)([?&](?:[\w-]*signature|sig|token|key|x-goog-credential)=)[^&\s\"']+")
    _JSON = re.compile(r'(?i)("(?:token|key|access_?token|refresh_?token|api_?key)"\s*:\s*")[^"]*(")')

    def __init__(self, credentials: Credentials) -> None:
        secret = credentials.secret.reveal()
        self._values = [secret]
        if credentials.auth_kind == "key" and credentials.username:
            self._values.append(base64.b64encode(f"{credentials.username}:{secret}".encode()).decode())
        self._values = [v for v in self._values if len(v) >= 4]

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "<redacted>")
        text = self._HEADER.sub(lambda m: f"{m.group(1)}: <redacted>", text)
        text = self._QUERY.sub(r"\1<redacted>", text)
        return self._JSON.sub(r"\1<redacted>\2", text)


class _Transport(KaggleHttpClient):  # type: ignore[misc]
    """kagglesdk's HTTP client, pointed at ``endpoint``, with our session (auth, retries, timeouts).

    kagglesdk 0.1.38 has no endpoint setting: ``KaggleEnv.PROD`` builds
    ``{self._endpoint}/v1/<service>/<Method>``, so we set ``_endpoint``. ``_check_wiring``
    (run at construction) and tests/test_client.py fail if a kagglesdk upgrade changes that.
    """

    _session: requests.Session | None

    def __init__(self, endpoint: str, credentials: Credentials, timeout: tuple[float, float],
                 policy: RetryPolicy, trace: Callable[[str], None] | None,
                 notify: Callable[[str], None] | None) -> None:
        super().__init__(env=KaggleEnv.PROD, verbose=trace is not None, user_agent=RPC_USER_AGENT)
        self._endpoint = endpoint
        self._kk_credentials = credentials
        self._kk_timeout = timeout
        self._kk_policy = policy
        self._kk_trace = trace
        self._kk_notify = notify
        self._kk_redact = _Redactor(credentials)
        self._check_wiring()

    def _check_wiring(self) -> None:
        url = self._get_request_url(KERNELS_SERVICE, "SaveKernel")
        expected = f"{self._endpoint}/v1/{KERNELS_SERVICE}/SaveKernel"
        if url != expected:  # never send credentials somewhere the user did not choose
            raise ApiError(
                f"kagglesdk builds '{url}' instead of '{expected}': the installed kagglesdk is not the "
                "version kagglekit supports (0.1.38).",
                "Reinstall kagglekit's pinned dependencies: pip install 'kagglesdk==0.1.38'.",
            )

    def _init_session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session = requests.Session()
        session.headers.update({"User-Agent": self._user_agent, "Content-Type": "application/json"})
        creds = self._kk_credentials
        if creds.auth_kind == "token":
            session.auth = KaggleHttpClient.BearerAuth(creds.secret.reveal())
        else:
            session.auth = (creds.username or "", creds.secret.reveal())
        default = _TimeoutAdapter(_make_retry(self._kk_policy, push=False, notify=self._kk_notify),
                                  self._kk_timeout)
        session.mount("http://", default)
        session.mount("https://", default)
        # requests picks the adapter with the longest matching prefix: pushes get the careful policy.
        session.mount(f"{self._endpoint}/v1/{KERNELS_SERVICE}/SaveKernel",
                      _TimeoutAdapter(_make_retry(self._kk_policy, push=True, notify=self._kk_notify),
                                      self._kk_timeout))
        self._session = session
        self._signed_in = True
        return session

    def _prepare_response(self, response_type: Any, http_response: requests.Response) -> Any:
        content_type = http_response.headers.get("Content-Type") or ""
        if response_type is not None and http_response.ok and "html" in content_type.lower():
            self._print_response(http_response)
            raise _HtmlAnswer(http_response.status_code, _message_of(http_response))
        return super()._prepare_response(response_type, http_response)

    def _print(self, message: str) -> None:
        if self._kk_trace is None:
            return
        text = self._kk_redact(str(message))
        if len(text) > 4000:
            text = text[:4000] + f"\n... ({len(text) - 4000} more characters not shown)"
        self._kk_trace(text)


def _stderr(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


T = TypeVar("T")


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


class KaggleApiClient:
    """Typed access to Kaggle's kernels API (or any server that speaks it).

    Build it with ``kagglekit.connection.open_client``; construct it directly in tests.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str = KAGGLE_API_ENDPOINT,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verbose: bool = False,
        trace: Callable[[str], None] | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._notify = notify
        self._redact = _Redactor(credentials)
        self._transport = _Transport(self.endpoint, credentials, timeout, self.retry,
                                     trace if trace is not None else (_stderr if verbose else None), notify)
        self._kernels = KernelsApiClient(self._transport)
        self._oauth = OAuthClient(self._transport)
        self._username: str | None = credentials.username if credentials.auth_kind == "key" else None

    # --- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        session = self._transport._session
        if session is not None:
            session.close()

    def __enter__(self) -> KaggleApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KaggleApiClient(endpoint={self.endpoint!r}, credentials={self.credentials!r})"

    # --- identity ----------------------------------------------------------

    @property
    def username(self) -> str:
        """The signed-in account: from the key, or (for a token) asked from Kaggle once."""
        if self._username is None:
            self._username = self._introspect()
        return self._username

    @property
    def account(self) -> str:
        """The key the ledger and quota readings use: the username, qualified by the server unless it is Kaggle.

        ``alice`` on Kaggle's production API, ``alice@local`` on a loopback endpoint (the emulator, on
        whatever port), ``alice@<host>`` on any other endpoint: a demo account's runs and quota never
        mix with a real account's, and a real user named ``demo`` stays apart from the emulator's.
        """
        from kagglekit.credentials import ledger_account

        return ledger_account(self.username, self.endpoint)

    def _introspect(self) -> str:
        request = IntrospectTokenRequest()
        request.token = self.credentials.secret.reveal()
        try:
            response = self._call("IntrospectToken", lambda: self._oauth.introspect_token(request))
        except NotFoundError:
            response = None  # a server without token introspection: fall back to the configured name
        if response is not None:
            if not response.active:
                raise CredentialsError(
                    f"Kaggle says the access token from {self.credentials.source} is not active "
                    "(expired or revoked).",
                    "Create a new token at https://www.kaggle.com/settings and replace the old one there.",
                )
            if response.username:
                return str(response.username)
        if self.credentials.username:
            return self.credentials.username
        raise CredentialsError(
            f"Cannot tell which account the access token from {self.credentials.source} belongs to.",
            "Set KAGGLE_USERNAME to your Kaggle user name.",
        )

    def ref(self, text: str) -> KernelRef:
        """Parse a kernel reference; a bare slug belongs to the signed-in user."""
        if "/" not in text.strip():
            return KernelRef.parse(text, default_owner=self.username)
        return KernelRef.parse(text)

    # --- push --------------------------------------------------------------

    def push(self, folder: Path, *, session_timeout: int | None = None, accelerator: str | None = None,
             no_run: bool = False) -> PushResult:
        """Push ``folder`` (kernel-metadata.json + code file) as ``kaggle kernels push -p folder`` does.

        Validation mirrors kaggle 2.2.5 (kaggle-wire.md §6) and happens before any network call.
        A 200 answer carrying ``error`` raises ``KaggleRefusedError`` with Kaggle's message.
        """
        request, warnings, slug_ref = build_save_request(
            folder, session_timeout=session_timeout, accelerator=accelerator, no_run=no_run)
        what = f"the push of {slug_ref or folder}"
        try:
            response = self._call("SaveKernel", lambda: self._kernels.save_kernel(request), what=what)
        except ApiError as exc:
            if exc.hint != self._ambiguous_hint("SaveKernel"):
                raise  # never sent, or a clear refusal: nothing was created
            raise PushOutcomeUnknown(exc.message, exc.hint) from exc
        if response.error:
            raise KaggleRefusedError(
                f"Kaggle refused the push of {slug_ref or folder}: {response.error}",
                _refusal_hint(str(response.error)),
            )
        version = int(response.version_number) if response.version_number else None
        ref = self._pushed_ref(str(response.ref or ""), str(response.url or ""), slug_ref).with_version(version)
        return PushResult(
            ref=ref,
            version=version,
            url=str(response.url or ref.without_version().url),
            kernel_id=int(response.kernel_id) if response.kernel_id else None,
            invalid_tags=list(response.invalid_tags or []),
            invalid_dataset_sources=list(response.invalid_dataset_sources or []),
            invalid_competition_sources=list(response.invalid_competition_sources or []),
            invalid_kernel_sources=list(response.invalid_kernel_sources or []),
            invalid_model_sources=list(response.invalid_model_sources or []),
            warnings=warnings,
        )

    def _pushed_ref(self, ref_text: str, url: str, slug_ref: str | None) -> KernelRef:
        for candidate in (url, ref_text):
            match = re.search(r"(?:^|/)code/([^/?#]+)/([^/?#]+)/*$", candidate)
            if match:
                return KernelRef(match.group(1), match.group(2))
        if ref_text.count("/") == 1 and not ref_text.startswith("/"):
            owner, slug = ref_text.split("/")
            return KernelRef(owner, slug)
        if slug_ref and "/" in slug_ref:
            owner, slug = slug_ref.split("/")[:2]
            return KernelRef(owner, slug)
        if slug_ref:
            return KernelRef(self.username, slug_ref)
        raise ApiError("Kaggle accepted the push but did not say which kernel it went to.",
                       "Check your kernels with `kagglekit --json runs` or on kaggle.com/code.")

    # --- runs --------------------------------------------------------------

    def status(self, ref: KernelRef) -> KernelStatus:
        request = ApiGetKernelSessionStatusRequest()
        request.user_name = ref.owner
        request.kernel_slug = ref.slug
        if ref.version_label:
            request.version_label = ref.version_label
        response = self._call("GetKernelSessionStatus",
                              lambda: self._kernels.get_kernel_session_status(request), ref=ref)
        status = response.status
        name = getattr(status, "name", None) or STATUS_QUEUED
        return KernelStatus(ref, str(name), str(response.failure_message) if response.failure_message else None)

    def list_outputs(self, ref: KernelRef, page_size: int = 100) -> OutputListing:
        """All output files of a version (every page) and its log, as ListKernelSessionOutput gives them."""
        files: list[OutputFile] = []
        log = ""
        token = ""
        seen_tokens: set[str] = set()
        first = True
        while True:
            request = ApiListKernelSessionOutputRequest()
            request.user_name = ref.owner
            request.kernel_slug = ref.slug
            request.page_size = page_size
            request.page_token = token
            if ref.version_label:
                request.version_label = ref.version_label
            response = self._call("ListKernelSessionOutput",
                                  functools.partial(self._kernels.list_kernel_session_output, request), ref=ref)
            for item in response.files or []:
                if item is not None and item.file_name:
                    files.append(OutputFile(str(item.file_name), str(item.url or "")))
            if first:
                log = str(response.log or "")
                first = False
            token = str(response.next_page_token or "")
            if not token:
                break
            if token in seen_tokens:
                raise ApiError(f"Kaggle repeated the page token '{token}' while listing the outputs of {ref}.",
                               "Try again later; if it persists, report it.")
            seen_tokens.add(token)
        return OutputListing(ref, files, log)

    def get_log(self, ref: KernelRef) -> str:
        """The persisted log text of a version (``kaggle kernels logs``): a JSON array of records."""
        request = ApiListKernelSessionOutputRequest()
        request.user_name = ref.owner
        request.kernel_slug = ref.slug
        if ref.version_label:
            request.version_label = ref.version_label
        response = self._call("ListKernelSessionOutput",
                              lambda: self._kernels.list_kernel_session_output(request), ref=ref)
        return str(response.log or "")

    def stream_log(self, ref: KernelRef, *, max_failures: int = 5, reconnect_delay: float = 1.0,
                   read_timeout: float = STREAM_READ_TIMEOUT) -> Iterator[LogRecord]:
        """Follow a run's log: ``GET {endpoint}/v1/kernels/logs/stream/{owner}/{slug}``.

        While the run is live the server sends SSE ``data:`` records ending with
        ``END_OF_LOG``; afterwards it sends the persisted JSON log. A dropped stream is
        reopened (the server replays from the start) and records already yielded are
        skipped, so every record comes out once. Gives up with ``ApiError`` after
        ``max_failures`` reconnects in a row without a new record.
        """
        session = self._transport._init_session()
        url = f"{self.endpoint}/v1/kernels/logs/stream/{quote(ref.owner, safe='')}/{quote(ref.slug, safe='')}"
        params = {"versionLabel": ref.version_label} if ref.version_label else None
        headers = {"Accept": "text/event-stream, */*", "Content-Type": None}
        seen: list[int] = []  # hashes of the records yielded so far, in order
        failures = 0
        last_problem = ""
        while True:
            index = 0  # position in this connection's replay
            diverged = False
            quiet = False
            progressed = False
            response: requests.Response | None = None
            try:
                response = session.get(url, params=params, headers=headers, stream=True,
                                        timeout=(self.timeout[0], read_timeout))
                if response.status_code >= 400:
                    self._raise_stream_status(response, ref)
                content_type = (response.headers.get("Content-Type") or "").lower()
                live = content_type.startswith("text/event-stream")
                payloads = _sse_payloads(response) if live else iter([response.content.decode("utf-8", "replace")])
                ended = not live
                for payload in payloads:
                    if live and payload == LOG_STREAM_END:
                        ended = True
                        break
                    for record in parse_log(payload):
                        key = hash((record.stream, record.time, record.data))
                        if not diverged and index < len(seen):
                            index += 1
                            if seen[index - 1] == key:
                                continue  # replayed: already yielded
                            diverged = True  # the server resumed instead of replaying
                        seen.append(key)
                        progressed = True
                        failures = 0
                        yield record
                if ended:
                    return
                last_problem = "the stream closed before END_OF_LOG"
            except _RetryableStatus as exc:
                last_problem = str(exc)
                if exc.wait is not None:
                    time.sleep(min(exc.wait, self.retry.max_retry_after))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError) as exc:
                last_problem = _short_reason(exc)
                # A read timeout on an open stream is a quiet run, not a failure: reconnect and keep waiting.
                quiet = response is not None and isinstance(
                    exc, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError)
            finally:
                if response is not None:
                    response.close()
            if not progressed and not quiet:
                failures += 1
            if failures >= max_failures:
                raise ApiError(
                    f"Lost the log stream of {ref} {failures} times in a row ({last_problem}).",
                    "The run goes on regardless: check it with `kagglekit status`, or follow the log again later.",
                )
            if self._notify is not None:
                self._notify(f"log stream of {ref}: {last_problem}; reconnecting")
            time.sleep(reconnect_delay * (1 + random.random() * 0.5))

    def _raise_stream_status(self, response: requests.Response, ref: KernelRef) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _RetryableStatus(f"HTTP {status}", wait)
        raise self._error_for(status, _message_of(response), "GetKernelSessionLogsStream", ref=ref)

    # --- kernels -----------------------------------------------------------

    def get_kernel(self, ref: KernelRef) -> KernelInfo:
        request = ApiGetKernelRequest()
        request.user_name = ref.owner
        request.kernel_slug = ref.slug
        if ref.version_label:
            request.version_label = ref.version_label
        response = self._call("GetKernel", lambda: self._kernels.get_kernel(request), ref=ref)
        if response.metadata is None:
            raise NotFoundError(f"Kaggle returned no metadata for kernel {ref}.", _not_found_hint(ref, self))
        blob = response.blob
        return _kernel_info(response.metadata, ref, source=str(blob.source) if blob is not None else None)

    def list_mine(self, page_size: int = 100) -> list[KernelInfo]:
        """Every kernel of the signed-in account (ListKernels, group PROFILE), all pages."""
        out: list[KernelInfo] = []
        seen_refs: set[str] = set()
        seen_tokens: set[str] = set()
        token = ""
        page = 1
        for _ in range(10_000):
            request = ApiListKernelsRequest()
            request.competition = ""
            request.dataset = ""
            request.parent_kernel = ""
            request.group = KernelsListViewType.PROFILE
            request.kernel_type = "all"
            request.language = "all"
            request.output_type = "all"
            request.search = ""
            request.user = ""
            request.page_size = page_size
            request.page_token = token
            if not token:
                request.page = page
            response = self._call("ListKernels", functools.partial(self._kernels.list_kernels, request))
            kernels = [k for k in (response.kernels or []) if k is not None]
            new = 0
            for meta in kernels:
                info = _kernel_info(meta, None, default_owner=lambda: self.username)
                key = str(info.ref)
                if key not in seen_refs:
                    seen_refs.add(key)
                    out.append(info)
                    new += 1
            next_token = str(response.next_page_token or "")
            if next_token:
                if next_token in seen_tokens:
                    break
                seen_tokens.add(next_token)
                token = next_token
                continue
            # No token: a server that pages by number; stop on a short, empty or repeated page.
            if token or len(kernels) < page_size or new == 0:
                break
            page += 1
        return out

    def delete(self, ref: KernelRef) -> None:
        if ref.version is not None:
            raise ConfigError(f"Cannot delete one version ({ref}): Kaggle deletes whole kernels.",
                              f"Pass {ref.without_version()} to delete the kernel with all its versions.")
        request = ApiDeleteKernelRequest()
        request.user_name = ref.owner
        request.kernel_slug = ref.slug
        response = self._call("DeleteKernel", lambda: self._kernels.delete_kernel(request), ref=ref)
        if response is not None and response.error_message:
            raise KaggleRefusedError(f"Kaggle did not delete {ref}: {response.error_message}",
                                     "Check that the kernel belongs to you.")

    def quota(self) -> QuotaInfo:
        """The live weekly GPU/TPU allowance (GetAcceleratorQuotaStatistics)."""
        request = ApiGetAcceleratorQuotaStatisticsRequest()
        response = self._call("GetAcceleratorQuotaStatistics",
                              lambda: self._kernels.get_accelerator_quota_statistics(request))
        refresh = response.quota_refresh_time
        return QuotaInfo(_quota(response.gpu_quota), _quota(response.tpu_quota),
                         refresh if isinstance(refresh, datetime) else None)

    # --- files ---------------------------------------------------------------

    def http_session(self, pool_maxsize: int = 16) -> requests.Session:
        """A session for signed-URL file GETs: timeouts, never a Kaggle auth header, and NO retries.

        The caller (download.Fetcher) owns the one retry budget of a file: retries here too would
        nest (the adapter's 5 x the downloader's 8: a file answering 503 forever took ~170 s to fail).
        """
        session = requests.Session()
        adapter = _TimeoutAdapter(Retry(0, read=False, redirect=5, raise_on_status=False), self.timeout,
                                  pool_maxsize=pool_maxsize)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def open_output(self, file: OutputFile, *, session: requests.Session | None = None,
                    offset: int = 0) -> requests.Response:
        """Start streaming one output file (from byte ``offset``); 403/404 become ``NotFoundError``.

        The caller must close the response. An expired signed URL answers 403: list the
        outputs again for fresh URLs.
        """
        sess = session or self.http_session()
        headers = {"Range": f"bytes={offset}-"} if offset else None
        try:
            response = sess.get(file.url, stream=True, headers=headers)
        except requests.RequestException as exc:
            raise ApiError(f"Could not download {file.name}: {_short_reason(exc)}.",
                           "Check the network and run the command again; finished files are kept.") from None
        if response.status_code in (401, 403):
            response.close()
            raise NotFoundError(
                f"The download link for {file.name} was refused (HTTP {response.status_code}): signed output "
                "URLs expire after a while.",
                "List the outputs again to get fresh links (kagglekit pull-outputs does this when you rerun it).",
            )
        if response.status_code == 404:
            response.close()
            raise NotFoundError(f"Output file {file.name} is gone (HTTP 404).",
                                "List the outputs again; the version may have been replaced or deleted.")
        if response.status_code >= 400:
            response.close()
            raise ApiError(f"Downloading {file.name} failed: HTTP {response.status_code}.",
                           "Run the command again later; finished files are kept.")
        return response

    # --- the one place that calls kagglesdk and maps its failures -----------------

    def _call(self, method: str, fn: Callable[[], T], *, ref: KernelRef | None = None,
              what: str | None = None) -> T:
        """Run one kagglesdk call; retry HTML pages under HTTP 200 (idempotent calls); map failures."""
        attempt = 0
        truncated = 0
        while True:
            try:
                return self._call_once(method, fn, ref=ref, what=what)
            except _TruncatedAnswer as exc:
                # The body was cut after the headers (IncompleteRead): urllib3's Retry never sees that.
                # A read is idempotent: try again, within the same read budget the transport uses.
                truncated += 1
                if truncated > self.retry.read_retries:
                    raise ApiError(
                        f"{self._host()} cut its answer to {method} short {truncated} times in a row "
                        f"({self._redact(str(exc.error))[:160]}).",
                        "Check the network connection (and --endpoint) and try again.",
                    ) from None
                wait = min(self.retry.backoff_max, self.retry.backoff_factor * 2 ** (truncated - 1))
                wait += random.random() * self.retry.jitter
                if self._notify is not None:
                    self._notify(f"{method}: the answer was cut short; retrying in {wait:.1f} s (retry {truncated})")
                time.sleep(wait)
            except _HtmlAnswer as exc:
                attempt += 1
                if method == "SaveKernel" or attempt > self.retry.status_retries:
                    tries = f" (tried {attempt} times)" if attempt > 1 else ""
                    raise ApiError(
                        f"{self._host()} answered {method} with an HTML page instead of JSON{tries}: "
                        f"{self._redact(exc.snippet)[:120]!r}. A proxy, captive portal or outage page is in the way.",
                        self._ambiguous_hint(method) or "Check the network (and --endpoint); try again later.",
                    ) from None
                wait = min(self.retry.backoff_max, self.retry.backoff_factor * 2 ** (attempt - 1))
                wait += random.random() * self.retry.jitter
                if self._notify is not None:
                    self._notify(f"{method}: HTML page instead of JSON; retrying in {wait:.1f} s (retry {attempt})")
                time.sleep(wait)

    def _call_once(self, method: str, fn: Callable[[], T], *, ref: KernelRef | None = None,
                   what: str | None = None) -> T:
        try:
            return fn()
        except (KagglekitError, _HtmlAnswer):
            raise
        except requests.HTTPError as exc:
            response = exc.response
            status, message = _status_and_message(exc)
            attempts = _attempts(response)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            raise self._error_for(status, message, method, ref=ref, what=what, attempts=attempts,
                                  retry_after=retry_after) from None
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            reason = _short_reason(exc)
            if "timed out" in reason or isinstance(exc, requests.Timeout):
                kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
                limit = self.timeout[0] if kind == "connect" else self.timeout[1]
                raise ApiError(
                    f"{self._host()} did not answer {method} within {limit:g} s ({kind} timeout).",
                    self._ambiguous_hint(method) or "Check the network or try again later; Kaggle may be slow.",
                ) from None
            never_sent = "refused" in reason or "NewConnectionError" in str(exc) or "resolve" in str(exc)
            raise ApiError(
                f"Could not reach {self._host()} for {method}: {reason}.",
                (None if never_sent else self._ambiguous_hint(method))
                or "Check the network connection (and --endpoint) and try again.",
            ) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            if method != "SaveKernel":
                raise _TruncatedAnswer(exc) from None
            raise ApiError(f"{method} failed: {self._redact(str(exc))}",
                           self._ambiguous_hint(method)) from None
        except requests.RequestException as exc:  # anything else requests raises about the exchange
            raise ApiError(f"{method} failed: {self._redact(str(exc))}",
                           self._ambiguous_hint(method)
                           or "Try again; if it persists run with -vv and report it.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # kagglesdk could not parse the answer: an HTML page, a truncated body, an unknown enum.
            raise ApiError(
                f"{self._host()} answered {method} with something kagglekit cannot read "
                f"({type(exc).__name__}: {self._redact(str(exc))[:200]}). A proxy or an outage page may be in the way.",
                self._ambiguous_hint(method) or "Try again later; run with -vv to see the raw answer.",
            ) from None

    def _host(self) -> str:
        return "Kaggle" if self.endpoint == KAGGLE_API_ENDPOINT else self.endpoint

    def _ambiguous_hint(self, method: str) -> str | None:
        if method != "SaveKernel":
            return None
        return ("The push may or may not have been accepted, so kagglekit did not repeat it. Check the kernel's "
                "latest version (kagglekit status / kaggle.com) before pushing again.")

    def _error_for(self, status: int | None, message: str, method: str, *, ref: KernelRef | None = None,
                   what: str | None = None, attempts: int = 1, retry_after: str | None = None) -> KagglekitError:
        subject = what or (f"kernel {ref}" if ref is not None else method)
        detail = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        if status == 401:
            return CredentialsError(
                f"{self._host()} rejected the credentials: {self.credentials.describe()} ({detail}).",
                "Check that the key/token there is current: create a new API token at "
                "https://www.kaggle.com/settings and replace the old one"
                + ("" if self.endpoint == KAGGLE_API_ENDPOINT else ", or check that --endpoint is right")
                + ". Use --local to try kagglekit without an account.",
            )
        if status in (403, 404):
            word = "was refused access to" if status == 403 else "could not find"
            hint = _not_found_hint(ref, self)
            if method == "SaveKernel":
                hint = (f"The id in kernel-metadata.json must be YOUR-USER/SLUG (you are "
                        f"{self._username or self.credentials.username or 'signed in'}); a kernel of another "
                        "account cannot be pushed to.")
            return NotFoundError(f"{self._host()} {word} {subject} ({detail}).", hint)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if status == 429:
            wait = f"it asked to wait {retry_after} s, then " if retry_after else ""
            return ApiError(f"{self._host()} kept rate-limiting {method}{tries} ({detail}).",
                            self._ambiguous_hint(method)
                            or f"Kaggle limits how fast a client may call it: {wait}run the command again.")
        if status is not None and status >= 500:
            return ApiError(f"{self._host()} failed on {method}{tries} ({detail}).",
                            self._ambiguous_hint(method)
                            or "This is a problem on Kaggle's side, not with your command; try again later.")
        return KaggleRefusedError(f"{self._host()} refused {subject} ({detail}).",
                                  "Read Kaggle's message above; fix the request and try again.")


class PushOutcomeUnknown(ApiError):
    """SaveKernel was sent but its answer was lost (cut, dropped, timed out): the push may have been accepted.

    An ``ApiError`` (exit 7), not a new error class: never retried blindly (that could create a second
    version); ``push.find_accepted_push`` looks for the version instead.
    """


class _TruncatedAnswer(Exception):
    """The answer's body ended before its Content-Length (or chunked framing): a read worth repeating."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _HtmlAnswer(Exception):
    """A 2xx answer that is an HTML page (a proxy, captive portal or outage page), not the API's JSON."""

    def __init__(self, status: int, snippet: str) -> None:
        super().__init__(f"HTTP {status} with an HTML page: {snippet[:120]}")
        self.status = status
        self.snippet = snippet


class _RetryableStatus(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


def _sse_payloads(response: requests.Response) -> Iterator[str]:
    """The ``data:`` payloads of an SSE response, as soon as each line arrives."""
    raw = response.raw
    buffer = b""
    while True:
        chunk = raw.read1(65536, decode_content=True)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if text.startswith("data:"):
                yield text[5:].lstrip()
    # A last line without its newline is a cut stream: drop it; the reconnect replays it whole.


def _status_and_message(exc: requests.HTTPError) -> tuple[int | None, str]:
    """The effective status (a JSON ``code`` >= 400 wins over HTTP 200) and Kaggle's message."""
    response = exc.response
    status = response.status_code if response is not None else None
    message = ""
    if response is not None:
        try:
            body = json.loads(response.text) if response.text else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get("code")
            if isinstance(code, int) and code >= 400:
                status = code
            if isinstance(body.get("message"), str):
                message = body["message"]
        if not message:
            message = _message_of(response)
    return status, message


def _message_of(response: requests.Response) -> str:
    """A short, printable message from an error body (JSON message, or text with tags stripped)."""
    try:
        text = response.text or ""
    except Exception:
        return ""
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            for key in ("message", "error", "errorMessage"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])
    except ValueError:
        pass
    stripped = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    stripped = re.sub(r"<[^>]+>", " ", stripped)
    stripped = re.sub(r"\s+", " ", stripped).strip()
    return stripped[:200]


def _attempts(response: requests.Response | None) -> int:
    retries = getattr(getattr(response, "raw", None), "retries", None)
    history = getattr(retries, "history", None)
    return len(history) + 1 if history else 1


def _not_found_hint(ref: KernelRef | None, client: KaggleApiClient) -> str:
    user = client._username or client.credentials.username or "this account"
    target = f"'{ref}'" if ref is not None else "the kernel"
    return (f"Check {target}: use the slug from the kernel's URL (kaggle.com/code/OWNER/SLUG) and a version "
            f"that exists. A private kernel of another account is invisible to {user}.")


def _refusal_hint(error: str) -> str:
    lowered = error.lower()
    if "session count" in lowered:
        return "Wait for one of your running sessions to finish (kagglekit status), then push again."
    if "quota" in lowered:
        return "Your weekly accelerator quota is used up: see `kagglekit quota`, or push without --gpu/--tpu."
    if "megabyte" in lowered or "size" in lowered:
        return "Make the kernel source smaller: move data or weights into a dataset and attach it."
    if "not found" in lowered:
        return "Check the kernel id in kernel-metadata.json; a new kernel also needs a title."
    return "Fix what Kaggle names above, then push again."


def _seconds(value: Any) -> float:
    return float(value.total_seconds()) if value is not None and hasattr(value, "total_seconds") else 0.0


def _quota(raw: Any) -> AcceleratorQuota:
    if raw is None:
        return AcceleratorQuota(0.0, 0.0, reported=False)
    return AcceleratorQuota(
        used_seconds=_seconds(raw.time_used),
        total_seconds=_seconds(raw.total_time_allowed),
        reserved_seconds=_seconds(raw.time_reserved),
        minimum_seconds=_seconds(raw.minimum_time_allowed),
        has_ever_run=bool(raw.has_ever_run),
        pay_to_scale=bool(raw.is_pay_to_scale_enabled),
    )


def _kernel_info(meta: Any, ref: KernelRef | None, source: str | None = None,
                 default_owner: Callable[[], str] | None = None) -> KernelInfo:
    ref_text = str(meta.ref or "").strip("/")
    match = re.fullmatch(r"(?:code/)?([^/]+)/([^/]+)", ref_text)
    if match:
        kernel_ref = KernelRef(match.group(1), match.group(2))
    elif ref is not None:
        kernel_ref = ref.without_version()
    else:
        owner = default_owner() if default_owner is not None else str(meta.author or "")
        kernel_ref = KernelRef(owner, str(meta.slug or ref_text))
    last_run = meta.last_run_time
    return KernelInfo(
        ref=kernel_ref,
        id=int(meta.id) if meta.id else None,
        title=str(meta.title or ""),
        author=str(meta.author or ""),
        language=str(meta.language or ""),
        kernel_type=str(meta.kernel_type or ""),
        is_private=bool(meta.is_private),
        enable_gpu=bool(meta.enable_gpu),
        enable_tpu=bool(meta.enable_tpu),
        enable_internet=bool(meta.enable_internet),
        machine_shape=str(meta.machine_shape or ""),
        docker_image=str(meta.docker_image or ""),
        current_version=int(meta.current_version_number) if meta.current_version_number else None,
        last_run_time=last_run if isinstance(last_run, datetime) else None,
        dataset_sources=list(meta.dataset_data_sources or []),
        competition_sources=list(meta.competition_data_sources or []),
        kernel_sources=list(meta.kernel_data_sources or []),
        model_sources=list(meta.model_data_sources or []),
        keywords=list(meta.category_ids or []),
        source=source,
    )


# ---------------------------------------------------------------------------
# kernel-metadata.json -> ApiSaveKernelRequest, as `kaggle kernels push` builds it
# ---------------------------------------------------------------------------


def build_save_request(folder: Path, *, session_timeout: int | None = None, accelerator: str | None = None,
                       no_run: bool = False) -> tuple[Any, list[str], str | None]:
    """Validate ``folder`` like kaggle 2.2.5's ``kernels_push`` and build its SaveKernel request.

    Returns (request, warnings, the metadata ``id``). Raises ``ConfigError`` naming the
    file and field; no network is touched.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    hint = f"Fix {meta_path} (see `kaggle kernels init` for the format)."
    if not folder.is_dir():
        raise ConfigError(f"Kernel folder {folder} does not exist.", "Pass the folder that holds kernel-metadata.json.")
    if not meta_path.is_file():
        raise ConfigError(f"Metadata file not found: {meta_path}.", "Bundle the project first (kagglekit push does).")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{meta_path} is not valid JSON: {exc}.", hint) from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_path} must hold a JSON object.", hint)

    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"{meta_path}: field '{field}' {why}.", hint)

    def text_field(field: str, default: str | None) -> str | None:
        value = meta.get(field, default)
        if value is not None and not isinstance(value, str):
            raise bad(field, f"must be a string, not {type(value).__name__}")
        return value

    def list_field(field: str) -> list[str]:
        value = meta.get(field, [])
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(field, "must be a list of strings")
        return list(value)

    def bool_field(field: str, default: bool) -> bool:
        if field not in meta:
            return default
        value = meta[field]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad(field, f"must be true or false, not {value!r}")

    warnings: list[str] = []
    title = text_field("title", None)
    if title and len(title) < MIN_TITLE_LENGTH:
        raise bad("title", f"must be at least {MIN_TITLE_LENGTH} characters")
    code_path = text_field("code_file", "")
    if not code_path:
        raise bad("code_file", "is missing: a source file must be specified")
    code_file = folder / code_path
    if not code_file.is_file():
        raise bad("code_file", f"names {code_file}, which does not exist")
    slug = text_field("id", None)
    id_no = meta.get("id_no")
    if id_no is not None and (isinstance(id_no, bool) or not isinstance(id_no, int)):
        raise bad("id_no", f"must be an integer, not {id_no!r}")
    if not slug and not id_no:
        raise bad("id", "is missing: an id (OWNER/SLUG) or id_no must be specified")
    if slug:
        if "/" in slug:
            parts = slug.split("/")
            if len(parts) > 2:
                raise bad("id", "cannot contain a version" if len(parts) == 3 else "must be OWNER/SLUG")
            if not parts[0] or not parts[1]:
                raise bad("id", "must be OWNER/SLUG")
            if len(parts[1]) < MIN_SLUG_LENGTH:
                raise bad("id", f"has a slug shorter than {MIN_SLUG_LENGTH} characters")
            kernel_slug = parts[1]
        else:
            kernel_slug = slug
        if title:
            from slugify import slugify  # a dependency of kaggle; no kaggle import

            if kernel_slug.lower() != slugify(title):
                warnings.append(
                    f"The title '{title}' does not resolve to the slug '{kernel_slug}'; Kaggle may create a "
                    "kernel with a different URL. Make the title match the slug."
                )
    language = text_field("language", "") or ""
    if language not in VALID_LANGUAGES:
        raise bad("language", f"must be one of {', '.join(VALID_LANGUAGES)}, not {language!r}")
    kernel_type = text_field("kernel_type", "") or ""
    if kernel_type not in VALID_KERNEL_TYPES:
        raise bad("kernel_type", f"must be one of {', '.join(VALID_KERNEL_TYPES)}, not {kernel_type!r}")
    if kernel_type == "notebook" and language == "rmarkdown":
        language = "r"
    dataset_sources = list_field("dataset_sources")
    for source in dataset_sources:
        parts = source.split("/")
        if "/" not in source or not parts[0] or not parts[1] or len(parts) > 3:
            raise bad("dataset_sources", f"has '{source}'; use OWNER/DATASET-SLUG[/VERSION]")
    kernel_sources = list_field("kernel_sources")
    for source in kernel_sources:
        parts = source.split("/")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or len(parts[1]) < MIN_SLUG_LENGTH \
                or (len(parts) == 3 and not parts[2]):
            raise bad("kernel_sources", f"has '{source}'; use OWNER/KERNEL-SLUG[/VERSION]")
    model_sources = list_field("model_sources")
    for source in model_sources:
        parts = source.split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
            raise bad("model_sources", f"has '{source}'; use OWNER/MODEL/FRAMEWORK/VARIATION/VERSION")
    competition_sources = list_field("competition_sources")
    keywords = list_field("keywords")
    pinning = text_field("docker_image_pinning_type", None)
    if pinning is not None and pinning not in VALID_PINNING_TYPES:
        raise bad("docker_image_pinning_type", f"must be one of {', '.join(VALID_PINNING_TYPES)}")
    docker_image = text_field("docker_image", None)
    machine_shape = accelerator or text_field("machine_shape", None)
    if machine_shape and machine_shape.lower() in {s.lower() for s in RETIRED_SHAPES}:
        warnings.append(f"'{machine_shape}' is retired; Kaggle runs the session on a replacement accelerator.")
    is_private = bool_field("is_private", True)
    enable_gpu = bool_field("enable_gpu", False)
    enable_tpu = bool_field("enable_tpu", False)
    enable_internet = bool_field("enable_internet", True)

    try:
        body = code_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise bad("code_file", f"names {code_file}, which cannot be read as UTF-8 ({type(exc).__name__})") from None
    if kernel_type == "notebook":
        body = _normalize_notebook(body, code_file)

    request = ApiSaveKernelRequest()
    request.id = id_no
    request.slug = slug
    request.new_title = title
    request.text = body
    request.language = language
    request.kernel_type = kernel_type
    request.is_private = is_private
    request.enable_gpu = enable_gpu
    request.enable_tpu = enable_tpu
    request.enable_internet = enable_internet
    request.dataset_data_sources = dataset_sources
    request.competition_data_sources = competition_sources
    request.kernel_data_sources = kernel_sources
    request.model_data_sources = model_sources
    request.category_ids = keywords
    request.docker_image_pinning_type = pinning
    request.docker_image = docker_image
    if session_timeout:
        request.session_timeout_seconds = int(session_timeout)
    request.machine_shape = machine_shape
    if no_run:
        request.kernel_execution_type = KernelExecutionType.QUICK_SAVE
    return request, warnings, slug


def _normalize_notebook(body: str, path: Path) -> str:
    """Kaggle's push re-serialisation: code cells lose outputs, list sources are joined (wire doc §6.2)."""
    try:
        notebook = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Notebook {path} is not valid JSON: {exc}.",
                          "Save the notebook again from Jupyter.") from None
    if isinstance(notebook, dict) and isinstance(notebook.get("cells"), list):
        for cell in notebook["cells"]:
            if not isinstance(cell, dict):
                continue
            if "outputs" in cell and cell.get("cell_type") == "code":
                cell["outputs"] = []
            if "source" in cell and isinstance(cell["source"], list):
                cell["source"] = "".join(cell["source"])
    return json.dumps(notebook)


def normalize_endpoint(endpoint: str) -> str:
    """Check and tidy an API base URL: ``http(s)://host[:port][/path]`` without a trailing slash."""
    text = (endpoint or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"'{endpoint}' is not an API base URL.",
            "Give --endpoint / KAGGLEKIT_ENDPOINT as http(s)://HOST[:PORT][/PATH], e.g. http://127.0.0.1:8765.",
        )
    return text


def env_timeout(environ: Mapping[str, str] | None = None) -> tuple[float, float]:
    """``KAGGLEKIT_HTTP_TIMEOUT`` as ``READ`` or ``CONNECT,READ`` seconds (default 10,60)."""
    env = os.environ if environ is None else environ
    raw = (env.get("KAGGLEKIT_HTTP_TIMEOUT") or "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        values = [float(v) for v in raw.split(",")]
    except ValueError:
        values = []
    if len(values) == 1 and values[0] > 0:
        return (min(DEFAULT_TIMEOUT[0], values[0]), values[0])
    if len(values) == 2 and all(v > 0 for v in values):
        return (values[0], values[1])
    raise ConfigError(f"KAGGLEKIT_HTTP_TIMEOUT={raw!r} is not a timeout.",
                      "Use seconds: READ or CONNECT,READ, e.g. 10,60.")
