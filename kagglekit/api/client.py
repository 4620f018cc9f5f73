"""The Kaggle API client: kagglesdk's service clients behind typed methods and one error mapping.

It drives kagglesdk's own transport and service clients (the same code ``kaggle``
2.2.5 runs, see docs/kaggle-wire.md) but never imports the ``kaggle`` package, whose
import authenticates and may print help text. On top of kagglesdk it adds what the
official client lacks:

- **endpoint override**: any Kaggle-compatible base URL (the emulator, a proxy);
  RPCs go to ``{endpoint}/v1/<service>/<Method>`` exactly as against api.kaggle.com;
- **timeouts and retries** (``kagglekit.api.transport``): a push (SaveKernel) is retried only
  when it provably never reached the server or was refused with 429;
- **typed errors** (kagglekit/errors.py) for Kaggle's quirks: a push refused as
  HTTP 200 + ``error``, ``{"code": >=400}`` bodies under HTTP 200, 401/403/404 with
  the hints users need, statuses by name (missing = QUEUED);
- **log streaming** with reconnects and no duplicated records (``kagglekit.api.logstream``);
- **secret hygiene**: ``-vv`` tracing redacts Authorization headers, keys, tokens
  and URL signatures, and goes to stderr.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import urllib3
from kagglesdk.kernels.services.kernels_api_service import KernelsApiClient
from kagglesdk.kernels.types.kernels_api_service import (
    ApiCancelKernelSessionRequest,
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

from kagglekit.api.logstream import follow_log
from kagglekit.api.transport import (
    DEFAULT_TIMEOUT,
    KAGGLE_API_ENDPOINT,
    STREAM_READ_TIMEOUT,
    HtmlAnswer,
    Redactor,
    RetryPolicy,
    Transport,
    error_fields,
    message_of,
    normalize_endpoint,
    short_reason,
    signed_url_session,
    trace_to_stderr,
)
from kagglekit.api.types import (
    AcceleratorQuota,
    KernelInfo,
    KernelStatus,
    OutputFile,
    OutputListing,
    PushOutcomeUnknown,
    PushResult,
    QuotaInfo,
)
from kagglekit.constants import STATUS_QUEUED
from kagglekit.credentials import Credentials
from kagglekit.errors import (
    ApiError,
    CancelDeniedError,
    ConfigError,
    CredentialsError,
    KagglekitError,
    KaggleRefusedError,
    NotFoundError,
)
from kagglekit.kernel_metadata import read_metadata
from kagglekit.kernel_ref import KernelRef
from kagglekit.logs import LogRecord

T = TypeVar("T")


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
        web_base: str | None = None,
    ) -> None:
        self.credentials = credentials
        # Where people look at a kernel: kaggle.com (None), or the emulator's own pages under --local.
        self.web_base = web_base.rstrip("/") if web_base else None
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.notify = notify
        self._redact = Redactor(credentials)
        self._transport = Transport(self.endpoint, credentials, timeout, self.retry,
                                     trace if trace is not None else (trace_to_stderr if verbose else None), notify)
        self._kernels = KernelsApiClient(self._transport)
        self._oauth = OAuthClient(self._transport)
        self._username: str | None = credentials.username if credentials.auth_kind == "key" else None

    def web_url(self, ref: KernelRef) -> str:
        """The page of a kernel people can open: kaggle.com/code/..., or the emulator's /code/... page."""
        if self.web_base is None:
            return ref.url
        return f"{self.web_base}/code/{ref.owner}/{ref.slug}"

    # --- lifecycle ---------------------------------------------------------

    def rpc_session(self) -> requests.Session:
        """The authenticated session the RPCs use (the log stream shares it)."""
        session: requests.Session = self._transport._init_session()
        return session

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

    def push(self, folder: Path, *, session_timeout: int | None = None, accelerator: str | None = None,
             no_run: bool = False) -> PushResult:
        """Push ``folder`` (kernel-metadata.json + code file) as ``kaggle kernels push -p folder`` does.

        Validation mirrors kaggle 2.2.5 (docs/kaggle-wire.md §6) and happens before any network call.
        A 200 answer carrying ``error`` raises ``KaggleRefusedError`` with Kaggle's message.
        """
        request, warnings, slug_ref = build_save_request(
            folder, session_timeout=session_timeout, accelerator=accelerator, no_run=no_run)
        what = f"the push of {slug_ref or folder}"
        # A lost answer raises PushOutcomeUnknown (``_failed``); never sent, or a clear refusal: another error.
        response = self._call("SaveKernel", lambda: self._kernels.save_kernel(request), what=what)
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
            return KernelRef.from_id(ref_text)
        if slug_ref:  # kernel-metadata.json's id, checked when the request was built
            return KernelRef.from_id(slug_ref) if "/" in slug_ref else KernelRef(self.username, slug_ref)
        raise ApiError("Kaggle accepted the push but did not say which kernel it went to.",
                       "Check your kernels with `kagglekit --json runs` or on kaggle.com/code.")

    def status(self, ref: KernelRef) -> KernelStatus:
        request = ApiGetKernelSessionStatusRequest()
        _aim(request, ref)
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
            _aim(request, ref)
            request.page_size = page_size
            request.page_token = token
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
        _aim(request, ref)
        response = self._call("ListKernelSessionOutput",
                              lambda: self._kernels.list_kernel_session_output(request), ref=ref)
        return str(response.log or "")

    def stream_log(self, ref: KernelRef, *, max_failures: int = 5, reconnect_delay: float = 1.0,
                   read_timeout: float = STREAM_READ_TIMEOUT) -> Iterator[LogRecord]:
        """Follow a run's log live, every record once (see ``kagglekit.api.logstream``)."""
        return follow_log(self, ref, max_failures=max_failures, reconnect_delay=reconnect_delay,
                          read_timeout=read_timeout)

    def get_kernel(self, ref: KernelRef) -> KernelInfo:
        request = ApiGetKernelRequest()
        _aim(request, ref)
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
        _aim(request, ref)  # never a version: checked above
        response = self._call("DeleteKernel", lambda: self._kernels.delete_kernel(request), ref=ref)
        if response is not None and response.error_message:
            raise KaggleRefusedError(f"Kaggle did not delete {ref}: {response.error_message}",
                                     "Check that the kernel belongs to you.")

    def cancel_session(self, session_id: int) -> None:
        """Ask Kaggle to stop a running session (CancelKernelSession), by its *session* id.

        No read returns that id; the kernel runtime prints it (kaggle-prod-behaviour §9). Kaggle
        answers 403 ``kernelSessions.cancel`` to any other account than the one that started the
        session, and to many accounts even then (§6): that is ``CancelDeniedError``.
        """
        request = ApiCancelKernelSessionRequest()
        request.kernel_session_id = int(session_id)
        response = self._call("CancelKernelSession", lambda: self._kernels.cancel_kernel_session(request),
                              what=f"the cancel of session {session_id}")
        if response is not None and response.error_message:
            raise CancelDeniedError(f"Kaggle did not cancel session {session_id}: {response.error_message}",
                                    "Stop it in the web UI (Stop Session), or delete the kernel.")

    def quota(self) -> QuotaInfo:
        """The live weekly GPU/TPU allowance (GetAcceleratorQuotaStatistics)."""
        request = ApiGetAcceleratorQuotaStatisticsRequest()
        response = self._call("GetAcceleratorQuotaStatistics",
                              lambda: self._kernels.get_accelerator_quota_statistics(request))
        refresh = response.quota_refresh_time
        return QuotaInfo(_quota(response.gpu_quota), _quota(response.tpu_quota),
                         refresh if isinstance(refresh, datetime) else None)

    def http_session(self, pool_maxsize: int = 16) -> requests.Session:
        """A session for signed-URL file GETs (this client's timeouts, no Kaggle auth; the caller retries)."""
        return signed_url_session(self.timeout, pool_maxsize=pool_maxsize)

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
            raise ApiError(f"Could not download {file.name}: {short_reason(exc)}.",
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
                wait = self.retry.backoff(truncated)
                if self.notify is not None:
                    self.notify(f"{method}: the answer was cut short; retrying in {wait:.1f} s (retry {truncated})")
                self.retry.sleep(wait)
            except HtmlAnswer as exc:
                attempt += 1
                if method == "SaveKernel" or attempt > self.retry.status_retries:
                    tries = f" (tried {attempt} times)" if attempt > 1 else ""
                    raise self._failed(
                        method, f"{self._host()} answered {method} with an HTML page instead of JSON{tries}: "
                        f"{self._redact(exc.snippet)[:120]!r}. A proxy, captive portal or outage page is in the way.",
                        "Check the network (and --endpoint); try again later.",
                    ) from None
                wait = self.retry.backoff(attempt)
                if self.notify is not None:
                    self.notify(f"{method}: HTML page instead of JSON; retrying in {wait:.1f} s (retry {attempt})")
                self.retry.sleep(wait)

    def _call_once(self, method: str, fn: Callable[[], T], *, ref: KernelRef | None = None,
                   what: str | None = None) -> T:
        try:
            return fn()
        except (KagglekitError, HtmlAnswer):
            raise
        except requests.HTTPError as exc:
            response = exc.response
            status, api_status, message = _status_and_message(exc)
            attempts = _attempts(response)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            raise self.error_for(status, message, method, ref=ref, what=what, attempts=attempts,
                                  retry_after=retry_after, api_status=api_status) from None
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            reason = short_reason(exc)
            if "timed out" in reason or isinstance(exc, requests.Timeout):
                kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
                limit = self.timeout[0] if kind == "connect" else self.timeout[1]
                raise self._failed(
                    method, f"{self._host()} did not answer {method} within {limit:g} s ({kind} timeout).",
                    "Check the network or try again later; Kaggle may be slow.",
                ) from None
            never_sent = "refused" in reason or "NewConnectionError" in str(exc) or "resolve" in str(exc)
            unreached = f"Could not reach {self._host()} for {method}: {reason}."
            hint = "Check the network connection (and --endpoint) and try again."
            raise (ApiError(unreached, hint) if never_sent else self._failed(method, unreached, hint)) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            if method != "SaveKernel":
                raise _TruncatedAnswer(exc) from None
            raise self._failed(method, f"{method} failed: {self._redact(str(exc))}", None) from None
        except requests.RequestException as exc:  # anything else requests raises about the exchange
            raise self._failed(method, f"{method} failed: {self._redact(str(exc))}",
                               "Try again; if it persists run with -vv and report it.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # kagglesdk could not parse the answer: an HTML page, a truncated body, an unknown enum.
            raise self._failed(
                method, f"{self._host()} answered {method} with something kagglekit cannot read "
                f"({type(exc).__name__}: {self._redact(str(exc))[:200]}). A proxy or an outage page may be in the way.",
                "Try again later; run with -vv to see the raw answer.",
            ) from None

    def _host(self) -> str:
        return "Kaggle" if self.endpoint == KAGGLE_API_ENDPOINT else self.endpoint

    def _failed(self, method: str, message: str, hint: str | None) -> ApiError:
        """The error for a call that failed after its request may have left: for SaveKernel a
        ``PushOutcomeUnknown`` (Kaggle may have created the version), so callers test its type, not its words."""
        if method != "SaveKernel":
            return ApiError(message, hint)
        return PushOutcomeUnknown(message, "The push may or may not have been accepted, so kagglekit did not repeat "
                                  "it. Check the kernel's latest version (kagglekit status / kaggle.com) before "
                                  "pushing again.")

    def error_for(self, status: int | None, message: str, method: str, *, ref: KernelRef | None = None,
                  what: str | None = None, attempts: int = 1, retry_after: str | None = None,
                  api_status: str | None = None) -> KagglekitError:
        """The typed error for an HTTP failure; it keeps the status, Kaggle's status name and message."""
        error = self._error_for(status, message, method, ref=ref, what=what, attempts=attempts,
                                retry_after=retry_after, api_status=api_status)
        error.http_status, error.api_status, error.api_message = status, api_status, message or None
        return error

    def _error_for(self, status: int | None, message: str, method: str, *, ref: KernelRef | None,
                   what: str | None, attempts: int, retry_after: str | None,
                   api_status: str | None) -> KagglekitError:
        subject = what or (f"kernel {ref}" if ref is not None else method)
        code = f"HTTP {status} {api_status}" if api_status else f"HTTP {status}"
        detail = f"{code}: {message}" if message else code
        if status == 401:
            return CredentialsError(
                f"{self._host()} rejected the credentials: {self.credentials.describe()} ({detail}).",
                "Check that the key/token there is current: create a new API token at "
                "https://www.kaggle.com/settings and replace the old one"
                + ("" if self.endpoint == KAGGLE_API_ENDPOINT else ", or check that --endpoint is right")
                + ". Use --local to try kagglekit without an account.",
            )
        if method == "CancelKernelSession" and status == 403:
            return CancelDeniedError(f"{self._host()} refused {subject} ({detail})",
                                     "Stop it in the web UI (Stop Session), or delete the kernel.")
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
            return self._failed(method, f"{self._host()} kept rate-limiting {method}{tries} ({detail}).",
                                f"Kaggle limits how fast a client may call it: {wait}run the command again.")
        if status is not None and status >= 500:
            return self._failed(method, f"{self._host()} failed on {method}{tries} ({detail}).",
                                "This is a problem on Kaggle's side, not with your command; try again later.")
        return KaggleRefusedError(f"{self._host()} refused {subject} ({detail}).",
                                  "Read Kaggle's message above; fix the request and try again.")


def _status_and_message(exc: requests.HTTPError) -> tuple[int | None, str | None, str]:
    """The effective status (a JSON ``code`` >= 400 wins over HTTP 200), Kaggle's status name
    (``NOT_FOUND``...) and Kaggle's message, from the nested envelope or a flat body."""
    response = exc.response
    status = response.status_code if response is not None else None
    api_status: str | None = None
    message = ""
    if response is not None:
        try:
            body = json.loads(response.text) if response.text else None
        except ValueError:
            body = None
        code, api_status, message = error_fields(body)
        if code is not None and code >= 400:
            status = code
        if not message:
            message = message_of(response)
    return status, api_status, message


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
    if "projected to exceed" in lowered:
        return ("Not used up: running sessions reserve the rest of the week's quota. When one of them ends or is "
                "stopped its reservation is freed; push again then (`kagglekit quota` shows the reservation).")
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


def build_save_request(folder: Path, *, session_timeout: int | None = None, accelerator: str | None = None,
                       no_run: bool = False) -> tuple[ApiSaveKernelRequest, list[str], str | None]:
    """``folder``'s SaveKernel request, as ``kaggle kernels push`` builds it (validation: ``kernel_metadata``).

    Returns (request, warnings, the metadata ``id``). No network is touched.
    """
    meta = read_metadata(folder, accelerator=accelerator)
    request = ApiSaveKernelRequest()
    request.id = meta.id_no
    request.slug = meta.slug
    request.new_title = meta.title
    request.text = meta.text
    request.language = meta.language
    request.kernel_type = meta.kernel_type
    request.is_private = meta.is_private
    request.enable_gpu = meta.enable_gpu
    request.enable_tpu = meta.enable_tpu
    request.enable_internet = meta.enable_internet
    request.dataset_data_sources = meta.dataset_sources
    request.competition_data_sources = meta.competition_sources
    request.kernel_data_sources = meta.kernel_sources
    request.model_data_sources = meta.model_sources
    request.category_ids = meta.keywords
    request.docker_image_pinning_type = meta.docker_image_pinning_type
    request.docker_image = meta.docker_image
    if session_timeout:
        request.session_timeout_seconds = int(session_timeout)
    request.machine_shape = meta.machine_shape
    if no_run:
        request.kernel_execution_type = KernelExecutionType.QUICK_SAVE
    return request, list(meta.warnings), meta.slug


def _aim(request: Any, ref: KernelRef) -> None:
    """Point a kernels request at ``ref``: owner, slug and, when given, the version (as ``v<N>``)."""
    request.user_name = ref.owner
    request.kernel_slug = ref.slug
    if ref.version_label:
        request.version_label = ref.version_label


class _TruncatedAnswer(Exception):
    """The answer's body ended before its Content-Length (or chunked framing): a read worth repeating."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
