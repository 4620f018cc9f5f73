"""Following a run's log: ``GET {endpoint}/v1/kernels/logs/stream/{owner}/{slug}`` (SSE or JSON).

The stream is reopened when it drops; the server replays from the start and records already
yielded are skipped, so every record comes out once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import requests
import urllib3

from kagglekit.api.transport import STREAM_READ_TIMEOUT, error_fields, message_of, short_reason
from kagglekit.errors import CLI, ApiError
from kagglekit.kernel_ref import KernelRef
from kagglekit.logs import LogRecord, parse_log

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient

LOG_STREAM_END = "END_OF_LOG"


def follow_log(client: KaggleApiClient, ref: KernelRef, *, max_failures: int = 5, reconnect_delay: float = 1.0,
               read_timeout: float = STREAM_READ_TIMEOUT) -> Iterator[LogRecord]:
    """Follow a run's log: ``GET {endpoint}/v1/kernels/logs/stream/{owner}/{slug}``.

    While the run is live the server sends SSE ``data:`` records ending with
    ``END_OF_LOG``; afterwards it sends the persisted JSON log. A dropped stream is
    reopened (the server replays from the start) and records already yielded are
    skipped, so every record comes out once. Gives up with ``ApiError`` after
    ``max_failures`` reconnects in a row without a new record.
    """
    session = client.rpc_session()
    url = f"{client.endpoint}/v1/kernels/logs/stream/{quote(ref.owner, safe='')}/{quote(ref.slug, safe='')}"
    params = {"versionLabel": ref.version_label} if ref.version_label else None
    headers = {"Accept": "text/event-stream, */*", "Content-Type": None}
    replay = _Replay()
    failures = 0
    last_problem = ""
    while True:
        replay.reconnected()
        quiet = False
        response: requests.Response | None = None
        try:
            response = session.get(url, params=params, headers=headers, stream=True,
                                    timeout=(client.timeout[0], read_timeout))
            if response.status_code >= 400:
                _raise_stream_status(client, response, ref)
            if (yield from replay.read(response)):
                return
            last_problem = "the stream closed before END_OF_LOG"
        except _RetryableStatus as exc:
            last_problem = str(exc)
            if exc.wait is not None:
                time.sleep(min(exc.wait, client.retry.max_retry_after))
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError) as exc:
            last_problem = short_reason(exc)
            # A read timeout on an open stream is a quiet run, not a failure: reconnect and keep waiting.
            quiet = response is not None and isinstance(
                exc, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError)
        finally:
            if response is not None:
                response.close()
        if replay.progressed:
            failures = 0
        elif not quiet:
            failures += 1
        if failures >= max_failures:
            raise ApiError(
                f"Lost the log stream of {ref} {failures} times in a row ({last_problem}).",
                f"The run goes on regardless: check it with `{CLI} status`, or follow the log again later.",
            )
        if client.notify is not None:
            client.notify(f"log stream of {ref}: {last_problem}; reconnecting")
        time.sleep(reconnect_delay * (1 + random.random() * 0.5))


class _Replay:
    """The records yielded so far, so that a reopened stream (which replays from the start) yields only new ones."""

    def __init__(self) -> None:
        self.seen: list[int] = []  # hashes of the records yielded so far, in order
        self.index = 0  # position in this connection's replay
        self.diverged = False  # the server resumed instead of replaying
        self.progressed = False  # this connection yielded a new record

    def reconnected(self) -> None:
        self.index, self.diverged, self.progressed = 0, False, False

    def read(self, response: requests.Response) -> Generator[LogRecord, None, bool]:
        """Yield the new records of one connection; its return value says whether the log ended."""
        live = (response.headers.get("Content-Type") or "").lower().startswith("text/event-stream")
        payloads = _sse_payloads(response) if live else iter([response.content.decode("utf-8", "replace")])
        for payload in payloads:
            if live and payload == LOG_STREAM_END:
                return True
            for record in parse_log(payload):
                key = hash((record.stream, record.time, record.data))
                if not self.diverged and self.index < len(self.seen):
                    self.index += 1
                    if self.seen[self.index - 1] == key:
                        continue  # replayed: already yielded
                    self.diverged = True
                self.seen.append(key)
                self.progressed = True
                yield record
        return not live


def _raise_stream_status(client: KaggleApiClient, response: requests.Response, ref: KernelRef) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        retry_after = response.headers.get("Retry-After")
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        raise _RetryableStatus(f"HTTP {status}", wait)
    try:
        _, api_status, message = error_fields(response.json())
    except ValueError:
        api_status, message = None, ""
    raise client.error_for(status, message or message_of(response), "GetKernelSessionLogsStream", ref=ref,
                           api_status=api_status)


class _RetryableStatus(Exception):
    """HTTP 429 / 5xx on the stream: worth reconnecting, after ``wait`` s if the server said so."""

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
