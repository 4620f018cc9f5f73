"""The HTTP layer under the Kaggle API client: timeouts, the one retry policy, redaction, sessions.

kagglesdk's ``KaggleHttpClient`` is reused with our endpoint, auth, timeouts and urllib3 retries
(``Transport``); ``signed_url_session`` is the session for signed-URL file GETs (output downloads),
with the same policy and never a Kaggle auth header.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from kagglesdk.kaggle_env import KaggleEnv
from kagglesdk.kaggle_http_client import KaggleHttpClient
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from kagglekit.credentials import Credentials
from kagglekit.errors import ApiError, ConfigError

KAGGLE_API_ENDPOINT = "https://api.kaggle.com"
KERNELS_SERVICE = "kernels.KernelsApiService"
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
STREAM_READ_TIMEOUT = 300.0  # a quiet training run may print nothing for minutes
RPC_USER_AGENT = ""  # what kaggle 2.2.5 sends (docs/kaggle-wire.md §2.2)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try, for RPCs and output downloads alike.

    Waits grow as ``backoff_factor * 2**n`` (capped at ``backoff_max``) plus up to ``jitter`` s;
    a ``Retry-After`` longer than ``max_retry_after`` is not waited for (the call fails with it).
    """

    status_retries: int = 5  # on 429 and 5xx
    connect_retries: int = 3  # the request never left: safe for every call
    read_retries: int = 2  # resets / read timeouts: idempotent calls only
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    status_forcelist: tuple[int, ...] = (429, 500, 502, 503, 504)
    file_attempts: int = 8  # one output file: attempts in a row that bring no new byte
    file_max_wait: float = 300.0  # one output file: seconds of waiting, all attempts without progress together
    file_refreshes: int = 3  # one output file: signed-URL refreshes in a row without a new byte
    sleep: Callable[[float], None] = time.sleep  # injectable, so tests need no real waits

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based), jitter included."""
        delay = min(self.backoff_max, self.backoff_factor * float(2 ** max(0, attempt - 1)))
        return delay + random.random() * self.jitter  # jitter: parallel workers do not retry in lockstep


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
            why = f"HTTP {last.status}" if last.status else short_reason(last.error)
            name = urlsplit(last.url or "").path.rsplit("/", 1)[-1] or "request"
            self.notify(f"{name}: {why}; retrying in {wait:.1f} s (retry {len(self.history)})")
        if wait > 0:
            time.sleep(wait)


def short_reason(error: Exception | None) -> str:
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


class Redactor:
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


class Transport(KaggleHttpClient):  # type: ignore[misc]
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
        self._kk_redact = Redactor(credentials)
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
            raise HtmlAnswer(http_response.status_code, message_of(http_response))
        return super()._prepare_response(response_type, http_response)

    def _print(self, message: str) -> None:
        if self._kk_trace is None:
            return
        text = self._kk_redact(str(message))
        if len(text) > 4000:
            text = text[:4000] + f"\n... ({len(text) - 4000} more characters not shown)"
        self._kk_trace(text)


def trace_to_stderr(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def signed_url_session(timeout: tuple[float, float], pool_maxsize: int = 16) -> requests.Session:
    """A session for signed-URL file GETs and blob PUTs: timeouts, never a Kaggle auth header, NO retries.

    The caller (the downloader, the uploader) owns the one retry budget of a file, from its RetryPolicy:
    retries here too would nest (the adapter's 5 x the downloader's 8: a file answering 503 forever
    took ~170 s to fail).
    """
    session = requests.Session()
    adapter = _TimeoutAdapter(Retry(0, read=False, redirect=5, raise_on_status=False), timeout,
                              pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HtmlAnswer(Exception):
    """A 2xx answer that is an HTML page (a proxy, captive portal or outage page), not the API's JSON."""

    def __init__(self, status: int, snippet: str) -> None:
        super().__init__(f"HTTP {status} with an HTML page: {snippet[:120]}")
        self.status = status
        self.snippet = snippet


def error_fields(body: object) -> tuple[int | None, str | None, str]:
    """(code, status name, message) of a JSON error body: Kaggle's nested envelope
    ``{"error": {"code", "message", "status"}}`` or the flat ``{"code", "message"}``; empty when neither."""
    if not isinstance(body, dict):
        return None, None, ""
    inner = body.get("error")
    if isinstance(inner, dict):
        body = inner
    code = body.get("code")
    status = body.get("status")
    message = ""
    for key in ("message", "error", "errorMessage"):
        if isinstance(body.get(key), str) and body[key]:
            message = str(body[key])
            break
    return (code if isinstance(code, int) and not isinstance(code, bool) else None,
            status if isinstance(status, str) and status else None, message)


def message_of(response: requests.Response) -> str:
    """A short, printable message from an error body (Kaggle's message, or text with tags stripped)."""
    try:
        text = response.text or ""
    except Exception:
        return ""
    try:
        _, _, message = error_fields(json.loads(text))
        if message:
            return message
    except ValueError:
        pass
    stripped = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    stripped = re.sub(r"<[^>]+>", " ", stripped)
    stripped = re.sub(r"\s+", " ", stripped).strip()
    return stripped[:200]


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


def env_retry(environ: Mapping[str, str] | None = None) -> RetryPolicy:
    """The retry policy, with ``KAGGLEKIT_RETRY_BACKOFF`` (seconds) as the first wait and jitter ceiling.

    For tests that exhaust a retry budget over the CLI: the same retries, without 15 s of real waits.
    """
    env = os.environ if environ is None else environ
    raw = (env.get("KAGGLEKIT_RETRY_BACKOFF") or "").strip()
    if not raw:
        return RetryPolicy()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= RetryPolicy.backoff_max:
        raise ConfigError(f"KAGGLEKIT_RETRY_BACKOFF={raw!r} is not a wait.",
                          f"Use seconds from 0 to {RetryPolicy.backoff_max:g}, e.g. 0.5 (the default).")
    return RetryPolicy(backoff_factor=value, jitter=min(RetryPolicy.jitter, value))


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
