"""Kaggle datasets through kagglesdk: blob uploads (resumable, streamed), create/version, status, files.

The second channel into a kernel (docs/kaggle-prod-behaviour.md §8). What it adds over ``kaggle datasets``:

- **resumable, streamed uploads**: one ``PUT`` per file from disk (memory stays flat whatever the size);
  after a cut, a 5xx or a 429 it asks the session what arrived (``Content-Range: bytes */N`` -> 308
  ``Range``) and sends only the rest; an expired session (404) starts a new one. The official client's
  urllib3 retry instead rewinds and re-sends the whole file.
- **parallel uploads** (a pool of sessions), so per-request latency is paid once per wave, not per file;
- **content addressing**: a folder's digest travels as a marker file name in the version
  (``kagglekit-content-<digest>.json``); an unchanged folder uploads nothing and creates no version;
- **waiting for READY**, since Kaggle processes a new version for a while and reading (or mounting) it
  too early fails.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests
from kagglesdk.blobs.services.blob_api_service import BlobApiClient
from kagglesdk.blobs.types.blob_api_service import ApiBlobType, ApiStartBlobUploadRequest
from kagglesdk.datasets.services.dataset_api_service import DatasetApiClient
from kagglesdk.datasets.types.dataset_api_service import (
    ApiCreateDatasetRequest,
    ApiCreateDatasetVersionRequest,
    ApiCreateDatasetVersionRequestBody,
    ApiDatasetNewFile,
    ApiGetDatasetStatusRequest,
    ApiListDatasetFilesRequest,
    ApiUploadDirectoryInfo,
)

from kagglekit.api.client import KaggleApiClient
from kagglekit.errors import ApiError, KaggleRefusedError, NotFoundError

MARKER_PREFIX = "kagglekit-content-"
MAX_FILES_PER_VERSION = 1000  # reported limit (docs/kaggle-prod-behaviour.md §8)
UPLOAD_ATTEMPTS = 8
HASH_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class LocalFile:
    rel: str  # posix path inside the dataset
    path: Path
    size: int
    sha256: str


@dataclasses.dataclass
class UploadStats:
    files: int = 0
    bytes_sent: int = 0
    resumed: int = 0  # uploads continued from an offset instead of from zero (this run's or an earlier one's)
    restarted: int = 0  # expired sessions started again


@dataclasses.dataclass(frozen=True)
class SyncResult:
    ref: str
    digest: str
    changed: bool  # False: the dataset already held exactly this content; nothing was uploaded
    created: bool  # True: a new dataset (else a new version, or nothing)
    stats: UploadStats
    seconds: float


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan(root: Path, rels: Iterable[str] | None = None) -> list[LocalFile]:
    """The files to upload (all regular files under ``root`` unless ``rels`` names them), hashed."""
    names = sorted(rels) if rels is not None else sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    out = []
    for rel in names:
        p = root / rel
        out.append(LocalFile(rel, p, p.stat().st_size, file_digest(p)))
    return out


def content_digest(files: Iterable[LocalFile]) -> str:
    """One digest for a folder's content: names, sizes and bytes (never mtimes)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda x: x.rel):
        h.update(f"{f.rel}\t{f.size}\t{f.sha256}\n".encode())
    return h.hexdigest()


def marker_name(digest: str) -> str:
    return f"{MARKER_PREFIX}{digest[:32]}.json"


class UploadJournal:
    """Upload sessions that outlive the process: a rerun after a crash or Ctrl-C resumes, never resends.

    One small JSON file per (endpoint, file path and content) under kagglekit's data dir, written atomically;
    entries older than the official client's 6-day resumable-upload expiry are ignored.
    """

    EXPIRY_S = 6 * 24 * 3600

    def __init__(self, folder: Path, endpoint: str) -> None:
        self.folder = folder
        self.endpoint = endpoint

    def _path(self, f: LocalFile) -> Path:
        # the path is part of the key: two files with the same bytes are two uploads (each blob has its name)
        key = hashlib.sha256(f"{self.endpoint}|{f.rel}|{f.sha256}|{f.size}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.json"

    def get(self, f: LocalFile) -> tuple[str, str] | None:
        try:
            entry = json.loads(self._path(f).read_text())
            if time.time() - float(entry["created"]) < self.EXPIRY_S:
                return str(entry["token"]), str(entry["url"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def put(self, f: LocalFile, token: str, url: str) -> None:
        from kagglekit.paths import write_text_atomic

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self._path(f), json.dumps({"token": token, "url": url, "created": time.time(),
                                                         "name": f.rel}))
        except OSError:
            pass  # resuming across runs is a bonus; the upload itself goes on

    def drop(self, f: LocalFile) -> None:
        self._path(f).unlink(missing_ok=True)


class DatasetsApi:
    """Datasets RPCs and blob uploads on top of a ``KaggleApiClient`` (its transport, retries and errors)."""

    def __init__(self, client: KaggleApiClient, *, workers: int = 8,
                 notify: Callable[[str], None] | None = None) -> None:
        self.client = client
        self._datasets = DatasetApiClient(client._transport)
        self._blobs = BlobApiClient(client._transport)
        self.workers = max(1, workers)
        self._notify = notify or (lambda message: None)
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        from kagglekit.paths import data_dir

        self.journal = UploadJournal(data_dir() / "uploads", client.endpoint)

    def status(self, owner: str, slug: str) -> str | None:
        """The latest version's processing stage (``READY``, ``BLOBS_RECEIVED``...), or None if no such dataset."""
        request = ApiGetDatasetStatusRequest()
        request.owner_slug = owner
        request.dataset_slug = slug
        try:
            response = self.client._call("GetDatasetStatus", lambda: self._datasets.get_dataset_status(request),
                                         what=f"dataset {owner}/{slug}")
        except NotFoundError:
            return None
        return str(getattr(response.status, "name", response.status) or "NOT_YET_PERSISTED")

    def list_files(self, owner: str, slug: str, version: int | None = None) -> list[tuple[str, int]]:
        """(name, bytes) of every file of the latest READY version (or ``version``), all pages."""
        out: list[tuple[str, int]] = []
        token = ""
        while True:
            request = ApiListDatasetFilesRequest()
            request.owner_slug = owner
            request.dataset_slug = slug
            request.dataset_version_number = version
            request.page_size = 200
            request.page_token = token
            response = self.client._call("ListDatasetFiles", functools.partial(self._datasets.list_dataset_files,
                                                                                request), what=f"dataset {owner}/{slug}")
            if response.error_message:
                raise ApiError(f"Kaggle could not list {owner}/{slug}: {response.error_message}",
                               "Try again in a minute; a new version may still be processing.")
            out += [(str(f.name), int(f.total_bytes or 0)) for f in response.dataset_files]
            token = str(response.next_page_token or "")
            if not token:
                return out

    def wait_ready(self, owner: str, slug: str, *, timeout: float = 1800.0, poll: float = 1.0) -> float:
        """Poll until the latest version is READY; the seconds waited. FAILED or a timeout is an error."""
        t0 = time.monotonic()
        missing_since: float | None = None
        delay = poll
        last = ""
        while True:
            stage = self.status(owner, slug)
            if stage == "READY":
                return time.monotonic() - t0
            if stage == "FAILED":
                raise KaggleRefusedError(f"Kaggle failed to process dataset {owner}/{slug}.",
                                         "Open it on kaggle.com to see why, then run the command again.")
            if stage is None:  # a new dataset may answer 404 for a few seconds
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since > 120:
                    raise NotFoundError(f"Dataset {owner}/{slug} did not appear after it was created.",
                                        "Check your private-dataset quota on kaggle.com; then run it again.")
            elif stage != last:
                self._notify(f"dataset {owner}/{slug}: {stage.lower()} (waiting until it is ready)")
                last = stage
            if time.monotonic() - t0 > timeout:
                raise ApiError(f"Dataset {owner}/{slug} was still {last or 'processing'} after {timeout:.0f} s.",
                               "Kaggle is slow to process it; run the command again later.")
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def _put_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                # urllib3 retries a PUT only when the connection failed before sending (never re-sends bytes)
                self._session = self.client.http_session(pool_maxsize=self.workers + 2)
            return self._session

    def _start(self, f: LocalFile) -> tuple[str, str]:
        request = ApiStartBlobUploadRequest()
        request.type = ApiBlobType.DATASET
        request.name = f.rel.rsplit("/", 1)[-1]
        request.content_length = f.size
        request.last_modified_epoch_seconds = int(f.path.stat().st_mtime)
        response = self.client._call("StartBlobUpload", lambda: self._blobs.start_blob_upload(request),
                                     what=f"the upload of {f.rel}")
        if not response.token or not response.create_url:
            raise ApiError(f"Kaggle did not open an upload for {f.rel}.", "Try again later.")
        return str(response.token), str(response.create_url)

    def _offset(self, session: requests.Session, url: str, size: int) -> int | None:
        """Bytes the session already holds (GCS resumable query); None when the session expired (404)."""
        response = session.put(url, data=b"", headers={"Content-Range": f"bytes */{size}"})
        response.close()
        if response.status_code in (200, 201):
            return size
        if response.status_code == 404:
            return None
        if response.status_code == 308:
            rng = response.headers.get("Range")
            m = re.fullmatch(r"bytes=0-(\d+)", (rng or "").strip())
            return int(m.group(1)) + 1 if m else 0
        raise _Retryable(f"HTTP {response.status_code} asking what arrived", _retry_after(response))

    def upload(self, f: LocalFile, stats: UploadStats) -> str:
        """Upload one file; its token. Resumes from what arrived; never sends a byte twice unless lost."""
        session = self._put_session()
        offset = 0
        failures = 0
        known = self.journal.get(f)
        got: int | None = None
        if known is not None:  # an earlier run started this upload: ask what arrived
            try:
                got = self._offset(session, known[1], f.size)
            except (_Retryable, requests.RequestException):
                got = None
        if known is not None and got is not None:
            token, url = known
            offset = got
        else:
            token, url = self._start(f)
            self.journal.put(f, token, url)
        while True:
            try:
                if 0 < offset < f.size:
                    with self._lock:
                        stats.resumed += 1
                sent = self._send(session, url, f, offset)
                with self._lock:
                    stats.bytes_sent += sent
                offset = f.size
            except _Retryable as exc:
                failures += 1
                if failures >= UPLOAD_ATTEMPTS:
                    raise ApiError(f"Uploading {f.rel} kept failing ({exc}).",
                                   "Check the network and run the command again; finished files are not "
                                   "uploaded again.") from None
                policy = self.client.retry
                wait = policy.backoff(failures) if exc.wait is None else exc.wait + random.random() * policy.jitter
                self._notify(f"upload of {f.rel}: {exc}; resuming in {wait:.1f} s")
                policy.sleep(wait)
                try:
                    got = self._offset(session, url, f.size)
                except (_Retryable, requests.RequestException):
                    continue
                if got is None:  # the session expired: a new one, from zero
                    with self._lock:
                        stats.restarted += 1
                    token, url = self._start(f)
                    self.journal.put(f, token, url)
                    offset = 0
                else:
                    offset = got
                continue
            with self._lock:
                stats.files += 1
            return token

    def _send(self, session: requests.Session, url: str, f: LocalFile, offset: int) -> int:
        """One PUT of the file from ``offset``; the bytes sent. 200/201 done, anything else ``_Retryable``."""
        if offset >= f.size and f.size > 0:
            return 0
        headers = {}
        if offset:
            headers["Content-Range"] = f"bytes {offset}-{f.size - 1}/{f.size}"
        try:
            with f.path.open("rb") as fh:
                fh.seek(offset)
                body = _Body(fh, f.size - offset) if f.size else b""
                response = session.put(url, data=body, headers=headers)
                response.close()
        except requests.RequestException as exc:
            raise _Retryable(type(exc).__name__, None) from None
        if response.status_code in (200, 201):
            return f.size - offset
        if response.status_code == 404:
            raise _Retryable("upload session expired (HTTP 404)", 0.0)
        if response.status_code in (308, 408, 429) or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        raise ApiError(f"The upload of {f.rel} was refused: HTTP {response.status_code}.",
                       "Run the command again; if it persists, run with -vv and report it.")

    def upload_all(self, files: list[LocalFile], stats: UploadStats) -> dict[str, str]:
        """rel -> token for every file, uploaded in parallel."""
        self.client.rpc_session()  # build the RPC session once, before the threads share it
        tokens: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                   thread_name_prefix="kagglekit-upload") as pool:
            futures = {pool.submit(self.upload, f, stats): f for f in files}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    tokens[futures[fut].rel] = fut.result()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return tokens

    @staticmethod
    def _tree(tokens: dict[str, str]) -> tuple[list[ApiDatasetNewFile], list[ApiUploadDirectoryInfo]]:
        root: dict[str, Any] = {"files": [], "dirs": {}}
        for rel, token in sorted(tokens.items()):
            node = root
            for part in rel.split("/")[:-1]:
                node = node["dirs"].setdefault(part, {"files": [], "dirs": {}})
            nf = ApiDatasetNewFile()
            nf.token = token
            node["files"].append(nf)

        def dirs(node: dict[str, Any]) -> list[ApiUploadDirectoryInfo]:
            out = []
            for name, child in sorted(node["dirs"].items()):
                d = ApiUploadDirectoryInfo()
                d.name = name
                d.files = child["files"]
                d.directories = dirs(child)
                out.append(d)
            return out

        return root["files"], dirs(root)

    def create(self, owner: str, slug: str, title: str, tokens: dict[str, str], *, private: bool = True) -> None:
        files, directories = self._tree(tokens)
        request = ApiCreateDatasetRequest()
        request.owner_slug = owner
        request.slug = slug
        request.title = title
        request.license_name = "unknown"
        request.is_private = private
        request.files = files
        request.directories = directories
        response = self.client._call("CreateDataset", lambda: self._datasets.create_dataset(request),
                                     what=f"creating dataset {owner}/{slug}")
        self._check(response, f"create dataset {owner}/{slug}")

    def create_version(self, owner: str, slug: str, notes: str, tokens: dict[str, str], *,
                       delete_old: bool = False) -> None:
        files, directories = self._tree(tokens)
        body = ApiCreateDatasetVersionRequestBody()
        body.version_notes = notes
        body.files = files
        body.directories = directories
        body.delete_old_versions = delete_old
        request = ApiCreateDatasetVersionRequest()
        request.owner_slug = owner
        request.dataset_slug = slug
        request.body = body
        response = self.client._call("CreateDatasetVersion",
                                     lambda: self._datasets.create_dataset_version(request),
                                     what=f"a new version of dataset {owner}/{slug}")
        self._check(response, f"add a version to dataset {owner}/{slug}")

    @staticmethod
    def _check(response: Any, what: str) -> None:
        status = str(response.status or "").lower()
        if status != "ok":
            raise KaggleRefusedError(f"Kaggle refused to {what}: {response.error or status or 'no reason given'}.",
                                     "Read Kaggle's message; fix the files or the name and run it again.")

    def sync(self, ref: str, title: str, root: Path, files: list[LocalFile] | None = None, *,
             notes: str = "", wait: bool = True, private: bool = True, delete_old: bool = True,
             wait_timeout: float = 1800.0) -> SyncResult:
        """Make dataset ``ref`` hold exactly ``root``'s files (content-addressed), READY to mount.

        Unchanged content (the latest version carries this digest's marker) uploads nothing.
        """
        t0 = time.monotonic()
        owner, slug = ref.split("/", 1)
        files = scan(root) if files is None else files
        if len(files) + 1 > MAX_FILES_PER_VERSION:
            raise KaggleRefusedError(
                f"{len(files)} files are too many for one Kaggle dataset version (at most "
                f"{MAX_FILES_PER_VERSION - 1} plus kagglekit's marker).",
                "Zip part of the folder (Kaggle extracts uploaded archives) or leave files out.")
        digest = content_digest(files)
        marker = marker_name(digest)
        stats = UploadStats()
        stage = self.status(owner, slug)
        if stage is not None:
            if stage != "READY":
                self.wait_ready(owner, slug, timeout=wait_timeout)
            if any(name == marker for name, _ in self.list_files(owner, slug)):
                return SyncResult(ref, digest, False, False, stats, time.monotonic() - t0)
        with tempfile.TemporaryDirectory(prefix="kagglekit-marker-") as tmp:
            marker_path = Path(tmp) / marker
            marker_path.write_text(json.dumps({"digest": digest, "files": [
                {"name": f.rel, "size": f.size, "sha256": f.sha256} for f in files]}, indent=1))
            all_files = [*files, LocalFile(marker, marker_path, marker_path.stat().st_size,
                                           file_digest(marker_path))]
            tokens = self.upload_all(all_files, stats)
            for f in all_files:  # the tokens are about to be used: a rerun must not reuse them
                self.journal.drop(f)
        if stage is None:
            self.create(owner, slug, title, tokens, private=private)
        else:
            self.create_version(owner, slug, notes or f"kagglekit content {digest[:12]}", tokens,
                                delete_old=delete_old)
        if wait:
            self.wait_ready(owner, slug, timeout=wait_timeout)
        return SyncResult(ref, digest, True, stage is None, stats, time.monotonic() - t0)


class _Body:
    """A file from its current position, read in 1 MiB blocks (http.client asks for 16 kB at a time).

    ``__len__`` gives requests the Content-Length, so the body is sent as one plain PUT, never chunked.
    """

    BLOCK = 1024 * 1024

    def __init__(self, fh: Any, length: int) -> None:
        self._fh = fh
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._fh.read(max(n, self.BLOCK))
        return data


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(120.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def dataset_title(slug: str) -> str:
    """A title Kaggle accepts (6-50 characters) from a slug."""
    title = slug.replace("-", " ").strip().title()
    return (title + " data")[:50] if len(title) < 6 else title[:50]


def env_workers(default: int = 8) -> int:
    try:
        return max(1, int(os.environ.get("KAGGLEKIT_UPLOAD_WORKERS", default)))
    except ValueError:
        return default
