"""``pull-outputs``: download a kernel version's output files robustly.

What the official client (2.2.5) does badly and this module does instead:

- one folder per version (``outputs/<slug>/v<N>/``), so versions never overwrite each other;
- every page of the listing, then N files at once (a thread pool, one HTTP session per thread);
- each file streamed in chunks straight to disk as a partial file and renamed to its final name
  only when complete and size-checked: no half file ever sits under a final name;
- the target folder holds the run's outputs and nothing else: kagglekit's bookkeeping (pull state,
  partial files named by a hash of the output name, the lock) lives beside it in
  ``.<target>.kagglekit/``, where no output name can reach (an output may be called
  ``.model.bin.part`` or ``.kagglekit-manifest.json`` and is pulled like any other);
- two pulls into one folder at once take turns (a file lock): the second finds the files complete;
- retries with backoff on 429 (honouring ``Retry-After``), 5xx, HTML error pages and dropped
  connections; a partial file resumes with ``Range`` (+ ``If-Range`` on the ETag), so an
  interrupted pull is finished by running it again;
- a pull state file (``pull-state.json`` in the bookkeeping folder; earlier releases kept it in the
  target as ``.kagglekit-manifest.json`` and it moves out: name -> size,
  ETag, Last-Modified, sha256, and whether the run had finished) so a second pull of a finished run
  sends no file request at all, not even a HEAD; files pulled while the run was still going are
  always fetched again (they may have changed), and those the finished run no longer lists are removed;
  each file is also journaled (``pull-journal.jsonl``) the moment it lands, so a pull killed between
  two saves of the state does not fetch what it had finished again;
- names that would land outside the target (absolute, ``..``, through a symlink) are refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import fnmatch
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from kagglekit import display, paths
from kagglekit.api.transport import RetryPolicy, retry_after_seconds
from kagglekit.constants import (
    ACTIVE_STATUSES,
    DEFAULT_CHECKPOINT_PATTERNS,
    FINAL_STATUSES,
    RUN_MANIFEST_RELPATH,
    STATUS_CANCEL_REQUESTED,
    STATUS_QUEUED,
    STATUS_RUNNING,
)
from kagglekit.errors import (
    DownloadError,
    KagglekitError,
    NotFoundError,
    RunNotFinishedError,
    UnsafePathError,
)
from kagglekit.kernel_ref import KernelRef
from kagglekit.waiting import Deadline, not_started_reason, short

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.ledger import Ledger

PULL_STATE_FILE = "pull-state.json"  # in the bookkeeping folder beside the target (bookkeeping_dir)
LEGACY_PULL_STATE_FILE = ".kagglekit-manifest.json"  # inside the target, in earlier releases
BOOKKEEPING_SUFFIX = ".kagglekit"
LOCK_NAME = "pull.lock"
# One JSON line per file the moment it lands (the pull state is rewritten only every few seconds): a pull
# killed in between still knows what it finished. Folded into the pull state, then removed, by a durable save.
JOURNAL_FILE = "pull-journal.jsonl"
PULL_STATE_FORMAT = 2  # 2: entries say whether the run was final when pulled
CHUNK_SIZE = 1024 * 1024
PART_SUFFIX = ".part"
META_SUFFIX = ".part.meta"
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 120.0
PULL_STATE_SAVE_INTERVAL_S = 2.0


@dataclasses.dataclass(frozen=True)
class FailedFile:
    name: str
    error: str


@dataclasses.dataclass
class PullSummary:
    """What a pull did: counts, bytes moved this time, what failed and what was refused."""

    kernel: str
    version: int | None
    target: Path
    status: str | None = None  # the version's status when the listing was taken (None: unknown)
    files: int = 0  # downloaded this time
    bytes: int = 0  # transferred this time (resumed parts count only the new bytes)
    seconds: float = 0.0
    skipped: int = 0  # already complete on disk (pull state)
    listed: int = 0
    selected: int = 0
    total_bytes: int | None = None  # size of the whole listing, when every size is known
    failed: list[FailedFile] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)  # pulled mid-run, gone from the final output
    warnings: list[str] = dataclasses.field(default_factory=list)
    log_path: Path | None = None
    log_text_path: Path | None = None
    run_json: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused

    def describe(self) -> str:
        """One human line: the end-of-pull summary."""
        rate = self.bytes / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"{self.files} downloaded ({display.size(self.bytes)} in {self.seconds:.1f}s, {display.size(rate)}/s)",
            f"{self.skipped} already complete",
        ]
        if self.removed:
            parts.append(f"{len(self.removed)} removed (no longer in the output)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        version = f"v{self.version}" if self.version is not None else "latest"
        return f"{self.kernel} {version} -> {self.target}: " + ", ".join(parts)

    def raise_for_failures(self) -> None:
        """Raise the error the CLI exits with: refused names first (12), then failed files (10)."""
        if self.refused:
            raise UnsafePathError(
                f"Refused {len(self.refused)} output file name(s) that would land outside {self.target}: "
                + ", ".join(repr(n) for n in self.refused[:10]) + ("" if len(self.refused) <= 10 else ", ..."),
                hint="Nothing was written for them; the other files were downloaded. Such names come from "
                     "the kernel's own output: rename them in the kernel.",
            )
        if self.failed:
            listed = "; ".join(f"{f.name}: {f.error}" for f in self.failed[:5])
            raise DownloadError(
                f"{len(self.failed)} of {self.selected} file(s) could not be downloaded ({listed}"
                + ("" if len(self.failed) <= 5 else "; ...") + ").",
                hint="The other files are kept; run the same pull-outputs again to resume the rest.",
            )


def safe_destination(target: Path, name: str) -> Path | None:
    """Where ``name`` lands under ``target``; None when it would land outside (or through a link)."""
    if not name or "\x00" in name:
        return None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    dest = target.joinpath(*parts)
    # A symlink anywhere under the target (existing folder or file) could point outside it.
    node = target
    for part in parts:
        node = node / part
        if node.is_symlink():
            return None
        if not node.exists():
            break
    try:
        resolved_target = target.resolve()
        if not dest.resolve().is_relative_to(resolved_target):
            return None
    except (OSError, RuntimeError):
        return None
    return dest


def _path_suffixes(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts))] or [name]


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Glob match on the whole name or any trailing part of it (``*.pt`` matches ``ckpt/e1.pt``,
    ``checkpoint*`` matches ``out/checkpoints/x.bin``)."""
    suffixes = _path_suffixes(name)
    for pattern in patterns:
        pattern = pattern.strip().lstrip("/")
        if not pattern:
            continue
        if any(fnmatch.fnmatchcase(s, pattern) for s in suffixes):
            return True
        # A pattern naming a folder selects what is inside it.
        if any(fnmatch.fnmatchcase(s, pattern.rstrip("/") + "/*") for s in suffixes):
            return True
    return False


def select(
    names: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (),
    checkpoint_patterns: Sequence[str] | None = None,
) -> list[str]:
    """Names to download: those matching an include (or checkpoint) pattern, if any is given, minus excludes."""
    wanted = list(include) + list(checkpoint_patterns or ())
    out = []
    for name in names:
        if wanted and not matches_any(name, wanted):
            continue
        if exclude and matches_any(name, exclude):
            continue
        out.append(name)
    return out


def project_checkpoint_patterns(start: Path | None = None) -> tuple[str, ...]:
    """The project's checkpoint patterns (``checkpoints`` setting), else the defaults."""
    try:
        from kagglekit.settings import load_project
    except ImportError:  # pragma: no cover - settings ships with kagglekit
        return tuple(DEFAULT_CHECKPOINT_PATTERNS)
    patterns = getattr(load_project(start), "checkpoints", None)
    return tuple(str(p) for p in patterns) if patterns else tuple(DEFAULT_CHECKPOINT_PATTERNS)


def bookkeeping_dir(target: Path) -> Path:
    """``<parent>/.<target name>.kagglekit/``: beside the target, so no output name can land in it."""
    target = Path(os.path.abspath(target))
    if not target.name:
        from kagglekit.errors import ConfigError

        raise ConfigError(f"{target} cannot be a pull-outputs target (a root folder has no place beside it).",
                          hint="Pull into a folder of its own, e.g. -o outputs/run.")
    return target.parent / f".{target.name}{BOOKKEEPING_SUFFIX}"


def pull_state_path(target: Path) -> Path:
    return bookkeeping_dir(target) / PULL_STATE_FILE


def _read_pull_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "format" not in data:
        return None
    return data


def journal_path(target: Path) -> Path:
    return bookkeeping_dir(target) / JOURNAL_FILE


def load_pull_state(target: Path) -> dict[str, Any]:
    """The target's pull state, with the files a killed pull journaled (``JOURNAL_FILE``) folded in."""
    data = _read_pull_state(pull_state_path(target))
    if data is None:
        # A folder pulled by an earlier release keeps its state inside; it moves out on the next save.
        data = _read_pull_state(target / LEGACY_PULL_STATE_FILE)
        if data is not None:
            data["legacy_state"] = True
    if data is None:
        data = {"format": PULL_STATE_FORMAT, "files": {}}
    _replay_journal(target, data)
    return data


def _replay_journal(target: Path, state: dict[str, Any]) -> None:
    """Fold in the journaled files of the version the state is about (or of the one version journaled, when
    the state names none yet); a torn last line (killed mid-write) is skipped."""
    try:
        lines = journal_path(target).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("entry"), dict) or not isinstance(rec.get("name"), str):
            continue
        run = (rec.get("kernel"), rec.get("version"))
        if state.get("kernel") is None and not state["files"]:
            state.update(kernel=run[0], version=run[1])
        if (state.get("kernel"), state.get("version")) == run:
            state["files"][rec["name"]] = rec["entry"]


def is_complete(target: Path, name: str, entry: Any) -> bool:
    """Already here: in the pull state, pulled once the run had finished, and the file on disk has the
    recorded size (no request needed). A file pulled while the run was going may have changed since."""
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry.get("final") is not True:
        return False
    dest = safe_destination(target, name)
    if dest is None:
        return False
    try:
        st = dest.lstat()
    except OSError:
        return False
    return not dest.is_symlink() and dest.is_file() and st.st_size == entry["size"]


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(
        self, reason: str, delay: float | None = None, progressed: bool = False, transferred: int = 0
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.progressed = progressed
        self.transferred = transferred


class _Fail(Exception):
    """One file failed for good (404, too many retries, ...)."""


class _Expired(Exception):
    """403 on a signed URL: it may have expired; a fresh listing gives a new one."""


@dataclasses.dataclass(frozen=True)
class FileJob:
    name: str
    url: str
    dest: Path
    part: Path  # in the bookkeeping folder (part_paths): never under a name an output could have
    meta: Path


@dataclasses.dataclass(frozen=True)
class FileResult:
    name: str
    size: int
    transferred: int
    etag: str | None
    last_modified: str | None
    sha256: str
    seconds: float


def part_paths(target: Path, name: str) -> tuple[Path, Path]:
    """The partial file and its validators for output ``name``: in the bookkeeping folder, named by a
    hash of the name (a 250-character name still fits the file system's 255-byte limit)."""
    key = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    folder = bookkeeping_dir(target) / "partial"
    return folder / f"{key}{PART_SUFFIX}", folder / f"{key}{META_SUFFIX}"


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class Fetcher:
    """Downloads files: streaming, resumable, retried; thread-safe (one session per thread)."""

    def __init__(
        self,
        session_factory: Callable[[], requests.Session],
        *,
        policy: RetryPolicy | None = None,
        on_bytes: Callable[[int], None] | None = None,
        url_refresher: Callable[[str, str], str | None] | None = None,
        fsync: bool = False,
        on_done: Callable[[FileJob, FileResult], None] | None = None,
    ) -> None:
        self._factory = session_factory
        self._on_done = on_done
        self._local = threading.local()
        self.policy = policy or RetryPolicy()
        self._on_bytes = on_bytes or (lambda n: None)
        self._refresh = url_refresher
        self.fsync = fsync
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.cancelled = threading.Event()

    def session(self) -> requests.Session:
        sess: requests.Session | None = getattr(self._local, "session", None)
        if sess is None:
            sess = self._factory()
            self._local.session = sess
            with self._sessions_lock:
                self._sessions.append(sess)
        return sess

    def close(self) -> None:
        with self._sessions_lock:
            for sess in self._sessions:
                with contextlib.suppress(Exception):
                    sess.close()
            self._sessions.clear()

    def fetch(self, job: FileJob) -> FileResult:
        """Download one file to ``job.dest``; raise ``_Fail`` when it cannot be done."""
        started = time.monotonic()
        url = job.url
        refreshes = 0  # in a row without progress
        failures = 0
        waited = 0.0  # without progress
        transferred = 0
        last_reason = ""
        while True:
            if self.cancelled.is_set():
                raise _Fail("cancelled")
            try:
                result = self._attempt(job, url)
            except _Retry as exc:
                last_reason = exc.reason
                transferred += exc.transferred
                if exc.progressed:
                    failures, waited, refreshes = 0, 0.0, 0
                else:
                    failures += 1
                if failures >= self.policy.file_attempts:
                    raise _Fail(f"{last_reason} (gave up after {failures} attempts)") from None
                delay = exc.delay if exc.delay is not None else self.policy.backoff(failures or 1)
                if delay > self.policy.max_retry_after:
                    raise _Fail(f"{last_reason}; the server asks to wait {delay:.0f}s") from None
                if delay > 0 and not exc.progressed:
                    if waited + delay > self.policy.file_max_wait:
                        raise _Fail(f"{last_reason} (gave up after {failures} attempts and {waited:.0f} s of "
                                    "waiting)") from None
                    waited += delay
                    self.policy.sleep(delay)
                continue
            except _Expired as exc:
                # A slow link outlives any URL's expiry: refresh whenever needed; only a fresh URL that
                # is refused again and again, with no byte in between, means the file is really forbidden.
                refreshes += 1
                new_url = self._refresh(job.name, url) if (self._refresh and refreshes <= self.policy.file_refreshes) \
                    else None
                if not new_url:
                    raise _Fail(str(exc)) from None
                url = new_url
                continue
            result = dataclasses.replace(result, transferred=result.transferred + transferred,
                                         seconds=time.monotonic() - started)
            if self._on_done is not None:
                self._on_done(job, result)
            return result

    def _attempt(self, job: FileJob, url: str) -> FileResult:
        dest = job.dest
        part, meta_path = job.part, job.meta
        part.parent.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        meta = _read_meta(meta_path) if offset else None
        headers = {"Accept-Encoding": "identity"}  # sizes must be the bytes on the wire
        if offset and meta is not None:
            headers["Range"] = f"bytes={offset}-"
            etag = meta.get("etag")
            # If-Range needs a strong validator: a weak ETag would always get the whole file back.
            validator = etag if etag and not str(etag).startswith("W/") else meta.get("last_modified")
            if validator:
                headers["If-Range"] = str(validator)
        elif offset:
            offset = 0  # a part without its validators cannot be trusted: start again
        try:
            resp = self.session().get(url, headers=headers, stream=True,
                                      timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(f"connection failed: {type(exc).__name__}") from None
        with resp:
            return self._handle(job, resp, part, meta_path, offset)

    def _handle(
        self, job: FileJob, resp: requests.Response, part: Path, meta_path: Path, offset: int
    ) -> FileResult:
        _check_answer(job, resp, part, meta_path)
        status = resp.status_code
        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        total: int | None
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != offset:
                _unlink(part, meta_path)
                raise _Retry("a range answer that does not continue the partial file", delay=0)
            total = int(m.group(3)) if m.group(3) != "*" else None
            hasher = _hash_file(part)
            mode = "ab"
        else:
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            hasher = hashlib.sha256()
            mode = "wb"
            _write_meta(meta_path, {"etag": etag, "last_modified": last_modified, "size": total})

        written = 0
        with open(part, mode) as fh:
            try:
                for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
                    if self.cancelled.is_set():
                        raise _Fail("cancelled")
                    if not chunk:
                        continue
                    fh.write(chunk)
                    hasher.update(chunk)
                    written += len(chunk)
                    self._on_bytes(len(chunk))
            except requests.RequestException as exc:  # dropped connection, read timeout, bad chunking
                raise _Retry(f"connection dropped after {offset + written} bytes ({type(exc).__name__})",
                             progressed=written > 0, transferred=written) from None
            except OSError as exc:  # the disk: full, read-only, ...
                raise _Fail(f"cannot write {part}: {exc}") from None
            size = offset + written
            if total is not None and size != total:
                if size > total:
                    fh.close()
                    _unlink(part, meta_path)
                raise _Retry(f"got {size} of {total} bytes", progressed=written > 0, transferred=written)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(part, job.dest)
        with contextlib.suppress(FileNotFoundError):
            meta_path.unlink()
        _set_mtime(job.dest, last_modified)
        return FileResult(job.name, size, written, etag, last_modified, hasher.hexdigest(), 0.0)


def _check_answer(job: FileJob, resp: requests.Response, part: Path, meta_path: Path) -> None:
    """Raise what an answer other than the file's bytes means: retry, refresh the URL, or give up."""
    status = resp.status_code
    if status == 429:
        raise _Retry("HTTP 429 (rate limited)", retry_after_seconds(resp.headers.get("Retry-After")))
    if status >= 500:
        raise _Retry(f"HTTP {status}", retry_after_seconds(resp.headers.get("Retry-After")))
    if status == 416:
        _unlink(part, meta_path)
        raise _Retry("HTTP 416 (partial file no longer matches)", delay=0)
    if status == 403:
        raise _Expired("HTTP 403 (forbidden: the signed URL may have expired)")
    if status in (401, 404, 410) or 400 <= status < 500:
        raise _Fail(f"HTTP {status}")
    if status not in (200, 206):
        raise _Retry(f"unexpected HTTP {status}")
    ctype = resp.headers.get("Content-Type", "").lower()
    if "text/html" in ctype and not job.name.lower().endswith((".html", ".htm")):
        raise _Retry("an HTML error page instead of the file")


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_meta(path: Path, data: dict[str, Any]) -> None:
    # Advisory (a missing or torn one only means starting that file over): no fsync, no rename.
    path.write_text(json.dumps(data), encoding="utf-8")


def _unlink(*items: Path) -> None:
    for item in items:
        with contextlib.suppress(FileNotFoundError):
            item.unlink()


def _hash_file(path: Path) -> Any:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_SIZE):
            hasher.update(block)
    return hasher


def _set_mtime(path: Path, last_modified: str | None) -> None:
    if not last_modified:
        return
    try:
        when = email.utils.parsedate_to_datetime(last_modified).timestamp()
    except (TypeError, ValueError, IndexError):
        return
    with contextlib.suppress(OSError):
        os.utime(path, (when, when))


def readable_log(raw: str) -> str:
    """Kaggle's raw JSON log as readable text (progress bars collapsed, stderr marked)."""
    try:
        from kagglekit.logs import format_log
    except ImportError:  # pragma: no cover - logs.py ships with kagglekit
        return _fallback_readable_log(raw)
    return format_log(raw)


def _fallback_readable_log(raw: str) -> str:
    try:
        items = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    lines: list[str] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            continue
        mark = "! " if item.get("stream_name") == "stderr" else ""
        for line in item["data"].replace("\r\n", "\n").split("\n"):
            line = line.rstrip("\r").rsplit("\r", 1)[-1]
            if line:
                lines.append(mark + line)
    return "\n".join(lines) + ("\n" if lines else "")


def _version_of(info: Any) -> int | None:
    for attr in ("current_version", "current_version_number", "version_number", "version"):
        value = getattr(info, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _status_name(status: Any) -> str:
    value = getattr(status, "status", status)
    name = getattr(value, "name", value)
    return str(name).rsplit(".", 1)[-1].upper()


DEFAULT_CANCEL_WAIT_S = 600.0
CANCEL_POLL_S = 2.0


def _status_of(client: KaggleApiClient, ref: KernelRef, label: str, cli: str) -> str | None:
    """The version's status; None when it cannot be told. A run that has not started yet raises."""
    try:
        return _status_name(client.status(ref))
    except NotFoundError as exc:
        said = not_started_reason(exc)
        if said is not None:
            raise RunNotFinishedError(
                f"{label} has no run yet: Kaggle answers {said!r} until the pushed run's session exists, and lists "
                "outputs only after the run and its save end.",
                f"Wait for it ({cli} status --watch {ref}), then pull again.") from None
        return None
    except KagglekitError:
        return None


def _settled_status(client: KaggleApiClient, ref: KernelRef, label: str, *, max_wait_s: float | None,
                    info: Callable[[str], None] | None, sleep: Callable[[float], None], cli: str) -> str | None:
    """The status to pull at: after a cancel, wait (up to ``max_wait_s``) for CANCEL_ACKNOWLEDGED, since
    Kaggle is still saving the stopped run's files until then and a pull would miss some."""
    status = _status_of(client, ref, label, cli)
    if status != STATUS_CANCEL_REQUESTED:
        return status
    limit = DEFAULT_CANCEL_WAIT_S if max_wait_s is None else max_wait_s
    deadline = Deadline(limit)
    if info is not None:
        info(f"{label} is CANCEL_REQUESTED: waiting for Kaggle to finish saving the stopped run's files (they appear "
             f"bit by bit until CANCEL_ACKNOWLEDGED; up to {short(limit)}) ...")
    while status == STATUS_CANCEL_REQUESTED:
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise RunNotFinishedError(
                f"{label} is still CANCEL_REQUESTED after {short(limit)}: Kaggle is still saving the stopped run's "
                "output (its files appear bit by bit until CANCEL_ACKNOWLEDGED), so pulling now would miss some.",
                f"Pull again later ({cli} pull-outputs {ref}), or give a longer --max-wait.")
        sleep(deadline.sleep_for(CANCEL_POLL_S))
        status = _status_of(client, ref, label, cli)
    return status


def _not_finished(client: KaggleApiClient, kernel: str, version: int | None, label: str, state: str,
                  cli: str) -> RunNotFinishedError:
    """Kaggle lists nothing for a running version: say so, and name the newest finished one to pull instead."""
    offer = " No earlier version has finished."
    if version is not None:
        for older in range(version - 1, max(0, version - 6), -1):
            older_ref = KernelRef.from_id(kernel, older)
            with contextlib.suppress(KagglekitError):
                older_status = _status_name(client.status(older_ref))
                if older_status in FINAL_STATUSES:
                    offer = (f" The newest finished version is v{older} ({older_status}): "
                             f"{cli} pull-outputs {kernel}/{older} (or --version {older}).")
                    break
    where = f"{kernel}/{version}" if version is not None else kernel
    return RunNotFinishedError(
        f"{label} is still {state}: Kaggle lists a version's outputs only after the run and its save end.{offer}",
        f"Or wait for this one: {cli} status --watch {where}, then pull again.")


def default_target(slug: str, version: int | None, base: Path | None = None) -> Path:
    root = base if base is not None else Path.cwd()
    return root / "outputs" / slug / (f"v{version}" if version is not None else "latest")


def pull_outputs(
    client: KaggleApiClient,
    ref: KernelRef | str | None,
    *,
    target: Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    checkpoints: bool = False,
    checkpoint_patterns: Sequence[str] | None = None,
    jobs: int = 4,
    force: bool = False,
    progress: bool | None = None,
    ledger: Ledger | None = None,
    policy: RetryPolicy | None = None,
    raise_on_failure: bool = True,
    fsync: bool = False,
    warn: Callable[[str], None] | None = None,
    info: Callable[[str], None] | None = None,
    max_wait_s: float | None = None,
    cli: str = "kagglekit",
    sleep: Callable[[float], None] = time.sleep,
) -> PullSummary:
    """Download the outputs of ``ref`` (``owner/slug[/version]`` text or a ``KernelRef``).

    The target defaults to ``outputs/<slug>/v<N>/`` with N the version the listing belongs to.
    ``progress=None`` shows a bar only on a terminal. With ``raise_on_failure`` a failed or
    refused file raises (after everything else was downloaded); otherwise read ``summary.ok``.

    Phases: which run -> list -> choose -> compare with the pull state -> download -> record
    (a third of its length is its keyword parameters; each phase is a function below).

    Kaggle lists a version's outputs only after the run and its save end: a version still
    running (or not started) raises ``RunNotFinishedError`` naming the newest finished version;
    a cancelled one (CANCEL_REQUESTED, its files appearing bit by bit) is waited for until
    CANCEL_ACKNOWLEDGED, up to ``max_wait_s`` (10 min by default).
    """
    started = time.monotonic()
    if isinstance(ref, str) or ref is None:
        ref = KernelRef.parse(ref or "", client.username)
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    listing_ref, status = _which_run(client, ref, max_wait_s=max_wait_s, info=info, sleep=sleep, cli=cli)
    if status in ACTIVE_STATUSES:  # Kaggle lists nothing until the run and its save end: said before writing
        _running_listing(client, listing_ref, status, bool(client.list_outputs(listing_ref).files), note, cli)
    target = Path(target) if target is not None else default_target(listing_ref.slug, listing_ref.version)
    target.mkdir(parents=True, exist_ok=True)
    with _target_lock(target, warn):  # two pulls into one folder take turns: never two writers of a file
        summary = _pull_locked(client, listing_ref, status, target, include, exclude, checkpoints,
                               checkpoint_patterns, jobs, force, progress, ledger, policy, fsync, note, warnings)
    summary.seconds = time.monotonic() - started
    if raise_on_failure:
        summary.raise_for_failures()
    return summary


def _pull_locked(client: KaggleApiClient, listing_ref: KernelRef, status: str | None, target: Path,
                 include: Sequence[str], exclude: Sequence[str], checkpoints: bool,
                 checkpoint_patterns: Sequence[str] | None, jobs: int, force: bool, progress: bool | None,
                 ledger: Ledger | None, policy: RetryPolicy | None, fsync: bool, note: Callable[[str], None],
                 warnings: list[str]) -> PullSummary:
    """The pull proper, under the target's lock: list -> choose -> pull state -> download -> record."""
    kernel, version = listing_ref.kernel_id, listing_ref.version
    final = status in FINAL_STATUSES
    listing = client.list_outputs(listing_ref)
    if status is None:
        label = f"{kernel} v{version}" if version is not None else kernel
        note(f"Could not tell whether {label} has finished: the files pulled now are fetched again next time.")
    summary = PullSummary(kernel=kernel, version=version, target=target, status=status, warnings=warnings)
    urls = {str(f.name): str(f.url) for f in listing.files}
    names = list(urls)
    summary.listed = len(names)
    chosen = _choose(listing_ref, names, include, exclude,
                     checkpoint_patterns=(checkpoint_patterns if checkpoint_patterns is not None
                                          else project_checkpoint_patterns()) if checkpoints else None, note=note)
    summary.selected = len(chosen)
    state = _open_pull_state(target, listing_ref, status, names if final else [], summary, note)
    entries: dict[str, Any] = state["files"]
    todo = _jobs(target, chosen, urls, entries, summary, force=force)
    if listing.log:
        summary.log_path, summary.log_text_path = _save_log(target, listing_ref.slug, listing.log, set(names), note)
    if todo:
        _download_all(client, listing_ref, todo, summary, entries, state, target, jobs=max(1, int(jobs)),
                      progress=progress, policy=policy, fsync=fsync, final=final)
    _save_pull_state(target, state)
    _summarize(summary, names, entries)
    if ledger is not None and version is not None:
        _update_ledger(ledger, client, listing_ref, summary, listing.log, note)
    return summary


def _target_lock(target: Path, warn: Callable[[str], None] | None) -> Any:
    """The lock of one target folder (filelock: works across processes; released if the holder dies)."""
    from filelock import FileLock, Timeout

    folder = bookkeeping_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME))
    try:
        return lock.acquire(timeout=0.2)  # filelock's proxy: a context manager that releases it
    except Timeout:
        if warn is not None:
            warn(f"another pull-outputs is writing {target}; waiting for it to finish (then only what is "
                 "still missing is downloaded)")
        return lock.acquire()


def _jobs(target: Path, chosen: list[str], urls: dict[str, str], entries: dict[str, Any], summary: PullSummary,
          *, force: bool) -> list[FileJob]:
    """The files to fetch: not refused (unsafe name), not already complete on disk (unless ``force``)."""
    todo: list[FileJob] = []
    for name in chosen:
        dest = safe_destination(target, name)
        if dest is None:
            summary.refused.append(name)
        elif not force and is_complete(target, name, entries.get(name)):
            summary.skipped += 1
        else:
            todo.append(FileJob(name, urls[name], dest, *part_paths(target, name)))
    return todo


def _which_run(client: KaggleApiClient, ref: KernelRef, *, max_wait_s: float | None,
               info: Callable[[str], None] | None, sleep: Callable[[float], None],
               cli: str) -> tuple[KernelRef, str | None]:
    """The version to list (the newest when none is given) and its status (None: could not tell).

    Asked before the listing: files listed while the run is going may still change, so the pull
    state marks them and the next pull fetches them again. After a cancel it waits for
    CANCEL_ACKNOWLEDGED (``_settled_status``).
    """
    base_ref = ref.without_version()
    version = ref.version if ref.version is not None else _version_of(client.get_kernel(base_ref))
    listing_ref = base_ref.with_version(version)
    label = f"{listing_ref.kernel_id} v{version}" if version is not None else listing_ref.kernel_id
    status = _settled_status(client, listing_ref, label, max_wait_s=max_wait_s, info=info, sleep=sleep, cli=cli)
    return listing_ref, status


def _running_listing(client: KaggleApiClient, listing_ref: KernelRef, status: str, listed: bool,
                     note: Callable[[str], None], cli: str) -> None:
    """A version still going: Kaggle lists nothing for it (raise, naming the newest finished one); a server
    that lists files during the run (the emulator's ``list_outputs_while_running``) gets a warning."""
    version = listing_ref.version
    label = f"{listing_ref.kernel_id} v{version}" if version is not None else listing_ref.kernel_id
    state = "queued" if status == STATUS_QUEUED else ("running" if status == STATUS_RUNNING else status.lower())
    if not listed:
        raise _not_finished(client, listing_ref.kernel_id, version, label, state, cli)
    note(f"{label} is still {state}: this server lists its outputs before the run ends, so files may still "
         "change. Pull again once it has finished (what was pulled now is fetched again then).")


def _choose(listing_ref: KernelRef, names: list[str], include: Sequence[str], exclude: Sequence[str], *,
            checkpoint_patterns: Sequence[str] | None, note: Callable[[str], None]) -> list[str]:
    """The listed files to pull (plus run.json, always); says so when the filters match nothing."""
    chosen = select(names, include, exclude, checkpoint_patterns)
    if names and not chosen and (include or exclude or checkpoint_patterns):
        given = [*(f"--include {p}" for p in include), *(f"--exclude {p}" for p in exclude),
                 *([f"--checkpoints ({', '.join(checkpoint_patterns)})"] if checkpoint_patterns else [])]
        note(f"No output file of {listing_ref.kernel_id} v{listing_ref.version} matches {' '.join(given)} "
             f"({len(names)} file(s) listed, e.g. {', '.join(names[:3])}).")
    if RUN_MANIFEST_RELPATH in names and RUN_MANIFEST_RELPATH not in chosen:
        chosen.append(RUN_MANIFEST_RELPATH)  # tiny, and it is what the ledger learns the run's times from
    return chosen


def _open_pull_state(target: Path, listing_ref: KernelRef, status: str | None, final_names: list[str],
                     summary: PullSummary, note: Callable[[str], None]) -> dict[str, Any]:
    """The target's pull state for this version; with the final listing (``final_names``), stale files go."""
    kernel, version = listing_ref.kernel_id, listing_ref.version
    state = load_pull_state(target)
    if state.get("files") and (state.get("kernel"), state.get("version")) != (kernel, version):
        # Another version's files (an -o folder used twice): same names and sizes prove nothing.
        old = f"{state.get('kernel')} v{state.get('version')}"
        note(f"{target} holds the outputs of {old}; files there are replaced by those of {kernel} v{version}.")
        state = {"files": {}}
    entries: dict[str, Any] = state.setdefault("files", {})
    state.update(format=PULL_STATE_FORMAT, kernel=kernel, version=version, status=status)
    _replay_journal(target, state)  # (again: what a killed pull of this version finished, after a reset)
    if final_names:
        summary.removed = _remove_stale(target, entries, set(final_names))
        if summary.removed:
            note(f"Removed {len(summary.removed)} file(s) pulled while the run was going that its final output "
                 "no longer has: " + ", ".join(summary.removed[:5]) + ("" if len(summary.removed) <= 5 else ", ..."))
    return state


def _summarize(summary: PullSummary, names: list[str], entries: dict[str, Any]) -> None:
    """The output's total size (when every listed file is known) and the pulled run.json, if any."""
    sizes = [entries.get(n, {}).get("size") for n in names]
    if names and all(isinstance(s, int) for s in sizes):
        summary.total_bytes = sum(int(s) for s in sizes if s is not None)
    run_json = summary.target.joinpath(*RUN_MANIFEST_RELPATH.split("/"))
    if RUN_MANIFEST_RELPATH in entries and run_json.is_file():
        summary.run_json = run_json


def _download_all(
    client: KaggleApiClient, listing_ref: KernelRef, todo: list[FileJob], summary: PullSummary, entries: dict[str, Any],
    state: dict[str, Any], target: Path, *, jobs: int, progress: bool | None,
    policy: RetryPolicy | None, fsync: bool, final: bool,
) -> None:
    bar = _progress_bar(progress, f"{listing_ref.slug}", len(todo))
    refresh_lock = threading.Lock()
    fresh: dict[str, str] = {}

    def refresher(name: str, old_url: str) -> str | None:
        """Re-list once when a signed URL expired; every worker then uses the new URLs."""
        with refresh_lock:
            if fresh.get(name) and fresh[name] != old_url:
                return fresh[name]
            try:
                listing = client.list_outputs(listing_ref)
            except KagglekitError:
                return None
            fresh.update({str(f.name): str(f.url) for f in listing.files})
            new = fresh.get(name)
            return new if new and new != old_url else None

    journal_lock = threading.Lock()
    journal: Any = None
    with contextlib.suppress(OSError):  # without it a kill costs re-fetching, as before: not worth failing for
        journal = journal_path(target).open("a", encoding="utf-8")

    def landed(job: FileJob, res: FileResult) -> None:
        """In the worker, right after the file took its final name: journaled before anything else can kill us."""
        if journal is None:
            return
        line = json.dumps({"kernel": listing_ref.kernel_id, "version": listing_ref.version, "name": job.name,
                           "entry": _entry(res, final)})
        with journal_lock, contextlib.suppress(OSError, ValueError):
            journal.write(line + "\n")
            journal.flush()  # in the OS's hands: survives a SIGKILL (a power cut may cost a re-fetch)

    fetcher = Fetcher(
        lambda: client.http_session(), policy=policy or client.retry, on_bytes=bar.update if bar is not None else None,
        url_refresher=refresher, fsync=fsync, on_done=landed,
    )
    last_save = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(todo)), thread_name_prefix="kagglekit-pull")
    futures: dict[Future[FileResult], FileJob] = {}
    try:
        futures = {pool.submit(fetcher.fetch, job): job for job in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                _record(fut, futures[fut], summary, entries, final=final)
                if bar is not None:
                    bar.set_postfix_str(f"{summary.files + len(summary.failed)}/{len(todo)} files", refresh=False)
            if time.monotonic() - last_save > PULL_STATE_SAVE_INTERVAL_S:
                _save_pull_state(target, state, durable=False)  # an interrupted pull keeps what it finished
                last_save = time.monotonic()
    except BaseException:
        fetcher.cancelled.set()
        for fut in futures:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
        fetcher.close()
        if bar is not None:
            bar.close()
        if journal is not None:
            journal.close()
        _save_pull_state(target, state)


def _entry(res: FileResult, final: bool) -> dict[str, Any]:
    return {
        "size": res.size, "etag": res.etag, "last_modified": res.last_modified,
        "sha256": res.sha256, "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "final": final,  # False: taken from a run still going; never trusted by a later pull
    }


def _record(fut: Future[FileResult], job: FileJob, summary: PullSummary, entries: dict[str, Any], *,
            final: bool) -> None:
    """One finished download: counted in the summary, and in the pull state when it succeeded."""
    try:
        res = fut.result()
    except _Fail as exc:
        summary.failed.append(FailedFile(job.name, str(exc)))
        return
    except OSError as exc:
        summary.failed.append(FailedFile(job.name, f"{type(exc).__name__}: {exc}"))
        return
    summary.files += 1
    summary.bytes += res.transferred
    entries[job.name] = _entry(res, final)


def _remove_stale(target: Path, entries: dict[str, Any], listed: set[str]) -> list[str]:
    """Files a pull took while the run was going that its final output no longer lists: remove them
    (they are kagglekit's own copies, named in the pull state) so the folder is the run's output."""
    removed = []
    for name, entry in sorted(entries.items()):
        if name in listed or not isinstance(entry, dict) or entry.get("final") is True:
            continue
        dest = safe_destination(target, name)
        if dest is not None and dest.is_file() and not dest.is_symlink():
            with contextlib.suppress(OSError):
                dest.unlink()
                removed.append(name)
        if dest is None or not dest.exists():
            del entries[name]
    return removed


def _progress_bar(progress: bool | None, desc: str, count: int) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1000, desc=desc, leave=True,
                dynamic_ncols=True, postfix=f"0/{count} files")


def _save_pull_state(target: Path, state: dict[str, Any], durable: bool = True) -> None:
    """Atomically (temp file + rename). ``durable`` adds the fsync: at the end of a pull, not on
    the periodic saves in between (the journal has every landed file; a power cut may cost re-fetching a few,
    never a torn state file). A durable save holds the journal's files, so it removes the journal."""
    state["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps(state, indent=1, sort_keys=True)
    path = pull_state_path(target)
    paths.write_text_atomic(path, text, fsync=durable)
    if durable:
        with contextlib.suppress(OSError):  # every journaled file is in the state now
            journal_path(target).unlink()
    if state.pop("legacy_state", None):  # moved out of the target: the target is only outputs now
        with contextlib.suppress(OSError):
            (target / LEGACY_PULL_STATE_FILE).unlink()


def _save_log(
    target: Path, slug: str, raw: str, names: set[str], note: Callable[[str], None]
) -> tuple[Path, Path]:
    """``<slug>.log`` (raw, as the official client writes it) and ``log.txt`` (readable)."""
    raw_name, text_name = f"{slug}.log", "log.txt"
    folder = target
    if raw_name in names or text_name in names:
        folder = bookkeeping_dir(target)  # where no output name can reach
        note(f"The outputs contain a file named {raw_name} or {text_name}; the run's log went to {folder}/.")
    raw_path, text_path = folder / raw_name, folder / text_name
    for path, content in ((raw_path, raw), (text_path, readable_log(raw))):
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8") == content:
                continue
        paths.write_text_atomic(path, content)
    return raw_path, text_path


def _update_ledger(
    ledger: Ledger, client: KaggleApiClient, ref: KernelRef, summary: PullSummary, log_raw: str,
    note: Callable[[str], None],
) -> None:
    """What the pull learnt about the run: its status, output size, run.json, else times from the log."""
    from kagglekit.watch import ensure_times

    account = client.account
    kernel, version = ref.kernel_id, ref.version
    assert version is not None
    if summary.status is not None:
        ledger.record_status(account, kernel, version, summary.status)
    ledger.record_outputs(account, kernel, version, summary.total_bytes, summary.listed)
    if summary.run_json is not None:
        try:
            data = json.loads(summary.run_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            note(f"Could not read {summary.run_json}: {exc}")
            data = None
        if isinstance(data, dict):
            ledger.record_manifest(account, kernel, version, data)
    if summary.status in FINAL_STATUSES and log_raw:
        # No run.json (or a killed run's, without an end): the log's time offsets, already in hand.
        ensure_times(client, ledger, account, ref, log_text=log_raw)
