"""Datasets and blob uploads: Kaggle's second channel into a kernel (state, rules and the upload/download HTTP).

The flow the official client (kaggle 2.2.5) drives, see kaggle-prod-behaviour.md §8:

1. ``blobs.BlobApiService/StartBlobUpload`` ``{type, name, contentLength, lastModifiedEpochSeconds}``
   -> ``{token, createUrl}``; ``createUrl`` is a GCS-style resumable session URL (``PUT``).
2. ``PUT createUrl`` with the bytes (200 when complete). Resume: ``PUT`` with ``Content-Length: 0`` and
   ``Content-Range: bytes */N`` -> ``308`` + ``Range: bytes=0-K`` (or no Range when nothing arrived), then
   ``PUT`` with ``Content-Range: bytes (K+1)-(N-1)/N``; an expired or unknown session answers ``404``.
3. ``datasets.DatasetApiService/CreateDataset`` / ``CreateDatasetVersion[ById]`` referencing the files by
   ``{token}`` (and ``directories`` trees) -> ``{ref, url, status: "ok" | "error", error}``.
4. The new version *processes* for ``dataset_processing_seconds``: ``GetDatasetStatus`` walks through
   ``BLOBS_RECEIVED`` ... to ``READY``. Until then Kaggle is unkind, and so is this emulator: a dataset
   whose first version still processes answers 403 to reads and to a new version; an explicit read of a
   processing version number answers 404; a kernel mounts the latest READY version (none: the source is
   reported invalid and nothing is mounted).

Rules: at most ``dataset_max_files`` files per version (1,000 reported), upload sessions expire after
``upload_url_expiry_seconds``, a blob token is used once, uploaded ``.zip``/``.tar`` files are extracted
(as Kaggle does). Fault targets: ``upload`` / ``upload:<name>`` for the PUTs, ``datasetfiles`` for the
signed download GETs, RPC names as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import hmac
import mimetypes
import os
import re
import secrets
import shutil
import sqlite3
import tarfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kagglekit.emulator.models import KAGGLE_URL_BASE, Backend, WireError, file_chunks

if TYPE_CHECKING:
    from kagglekit.emulator.responses import Ctx
    from kagglekit.emulator.server import Handler

CHUNK = 1024 * 1024
STAGES = ("BLOBS_RECEIVED", "BLOBS_DECOMPRESSED", "BLOBS_COPIED_TO_SDS", "INDIVIDUAL_BLOBS_COMPRESSED")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_uploads(token TEXT PRIMARY KEY, owner TEXT NOT NULL, type TEXT NOT NULL,
    name TEXT NOT NULL, content_length INTEGER NOT NULL, created REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS datasets(id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, slug TEXT NOT NULL,
    title TEXT NOT NULL, license TEXT NOT NULL, is_private INTEGER NOT NULL, subtitle TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '', created REAL NOT NULL, UNIQUE(owner, slug));
CREATE TABLE IF NOT EXISTS dataset_versions(id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id INTEGER NOT NULL,
    number INTEGER NOT NULL, notes TEXT NOT NULL, created REAL NOT NULL, ready_at REAL NOT NULL,
    delete_old INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, UNIQUE(dataset_id, number));
"""


@dataclasses.dataclass(frozen=True)
class Dataset:
    id: int
    owner: str
    slug: str
    title: str
    license: str
    is_private: bool
    subtitle: str
    description: str
    created: float

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"


@dataclasses.dataclass(frozen=True)
class DatasetVersion:
    id: int
    dataset_id: int
    number: int
    notes: str
    created: float
    ready_at: float
    deleted: bool


@dataclasses.dataclass(frozen=True)
class Upload:
    token: str
    owner: str
    name: str
    content_length: int
    created: float
    used: bool


class DatasetStore:
    """Datasets, their versions and blob uploads, kept in the backend's SQLite file and data dir."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.root = backend.data_dir / "datasets"
        self.blobs = backend.data_dir / "blobs"
        with backend.lock:
            backend.db.executescript(_SCHEMA)
        self.root.mkdir(exist_ok=True)
        self.blobs.mkdir(exist_ok=True)
        backend.dataset_source = self.mount_path  # what kernels mount for a dataset_sources entry

    def reset(self) -> None:
        with self.b.lock:
            for table in ("blob_uploads", "datasets", "dataset_versions"):
                self.b.db.execute(f"DELETE FROM {table}")
        for d in (self.root, self.blobs):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(exist_ok=True)

    def _cfg(self, key: str) -> Any:
        return self.b.setting(key)

    # --- blob uploads ---------------------------------------------------------------
    def start_upload(self, user: str, name: str, content_length: int, blob_type: str) -> Upload:
        if not name or "/" in name or name in (".", ".."):
            raise WireError(400, f"Invalid blob name {name!r}")
        if content_length < 0:
            raise WireError(400, "contentLength must not be negative")
        token = secrets.token_urlsafe(24)
        now = self.b.now()
        with self.b.lock:
            self.b.db.execute("INSERT INTO blob_uploads(token, owner, type, name, content_length, created) "
                              "VALUES (?,?,?,?,?,?)", (token, user, blob_type, name, content_length, now))
        self._part(token).touch()
        return Upload(token, user, name, content_length, now, False)

    def upload(self, token: str) -> Upload | None:
        with self.b.lock:
            row = self.b.db.execute("SELECT * FROM blob_uploads WHERE token=?", (token,)).fetchone()
        if row is None:
            return None
        return Upload(row["token"], row["owner"], row["name"], row["content_length"], row["created"],
                      bool(row["used"]))

    def expired(self, up: Upload) -> bool:
        return self.b.now() > up.created + float(self._cfg("upload_url_expiry_seconds"))

    def _part(self, token: str) -> Path:
        return self.blobs / f"{token}.part"

    def _done(self, token: str) -> Path:
        return self.blobs / token

    def received(self, token: str) -> int:
        done = self._done(token)
        if done.exists():
            return done.stat().st_size
        part = self._part(token)
        return part.stat().st_size if part.exists() else 0

    def complete(self, up: Upload) -> bool:
        return self._done(up.token).exists()

    def upload_url(self, ctx_base: str, token: str) -> str:
        return f"{ctx_base}/__upload/{urllib.parse.quote(token)}?upload_id={token[:12]}"

    # --- datasets -------------------------------------------------------------------
    @staticmethod
    def _dataset(row: sqlite3.Row) -> Dataset:
        return Dataset(row["id"], row["owner"], row["slug"], row["title"], row["license"], bool(row["is_private"]),
                       row["subtitle"], row["description"], row["created"])

    @staticmethod
    def _version(row: sqlite3.Row) -> DatasetVersion:
        return DatasetVersion(row["id"], row["dataset_id"], row["number"], row["notes"], row["created"],
                              row["ready_at"], bool(row["deleted"]))

    def find(self, owner: str, slug: str) -> Dataset | None:
        with self.b.lock:
            row = self.b.db.execute("SELECT * FROM datasets WHERE owner=? AND slug=?",
                                    (owner.lower(), slug.lower())).fetchone()
        return self._dataset(row) if row else None

    def by_id(self, dataset_id: int) -> Dataset | None:
        with self.b.lock:
            row = self.b.db.execute("SELECT * FROM datasets WHERE id=?", (dataset_id,)).fetchone()
        return self._dataset(row) if row else None

    def versions(self, ds: Dataset) -> list[DatasetVersion]:
        with self.b.lock:
            rows = self.b.db.execute("SELECT * FROM dataset_versions WHERE dataset_id=? ORDER BY number",
                                     (ds.id,)).fetchall()
        return [self._version(r) for r in rows]

    def version_by_id(self, vid: int) -> DatasetVersion | None:
        with self.b.lock:
            row = self.b.db.execute("SELECT * FROM dataset_versions WHERE id=?", (vid,)).fetchone()
        return self._version(row) if row else None

    def is_ready(self, v: DatasetVersion) -> bool:
        return not v.deleted and self.b.now() >= v.ready_at

    def stage(self, v: DatasetVersion) -> str:
        if v.deleted:
            return "DELETED"
        now = self.b.now()
        if now >= v.ready_at:
            return "READY"
        span = max(v.ready_at - v.created, 1e-9)
        return STAGES[min(len(STAGES) - 1, int((now - v.created) / span * len(STAGES)))]

    def latest_ready(self, ds: Dataset) -> DatasetVersion | None:
        self._collect_old(ds)
        ready = [v for v in self.versions(ds) if self.is_ready(v)]
        return ready[-1] if ready else None

    def files_dir(self, v: DatasetVersion) -> Path:
        return self.root / str(v.dataset_id) / f"v{v.number}" / "files"

    def mount_path(self, ref: str) -> Path | None:
        """The folder a kernel mounts for ``owner/slug[/N]``: that version if READY, else the latest READY one."""
        parts = ref.split("/")
        if len(parts) < 2:
            return None
        ds = self.find(parts[0], parts[1])
        if ds is None:
            return None
        if len(parts) > 2 and parts[2].isdigit():
            match = [v for v in self.versions(ds) if v.number == int(parts[2]) and self.is_ready(v)]
            return self.files_dir(match[0]) if match else None
        v = self.latest_ready(ds)
        return self.files_dir(v) if v else None

    def visible(self, user: str | None, ds: Dataset) -> bool:
        return not ds.is_private or (user is not None and user.lower() == ds.owner)

    def readable(self, user: str | None, owner: str, slug: str, number: int | None = None
                 ) -> tuple[Dataset, DatasetVersion]:
        """The dataset and version a read may see, with Kaggle's refusals while it processes."""
        ds = self.find(owner, slug)
        if ds is None or not self.visible(user, ds):
            raise WireError(404, f"Dataset {owner}/{slug} was not found.")
        versions = [v for v in self.versions(ds) if not v.deleted]
        if number is not None:
            match = [v for v in versions if v.number == number]
            if not match:
                raise WireError(404, f"Dataset {owner}/{slug} has no version {number}.")
            if not self.is_ready(match[0]):
                raise WireError(404, f"Dataset {owner}/{slug} version {number} was not found.")
            return ds, match[0]
        v = self.latest_ready(ds)
        if v is None:
            raise WireError(403, f"Permission 'datasets.get' was denied: dataset {owner}/{slug} is still being "
                                "processed.")
        return ds, v

    def create(self, user: str, owner: str, slug: str, title: str, license_name: str, is_private: bool,
               subtitle: str, description: str, files: list[Any], directories: list[Any],
               base_url: str) -> dict[str, Any]:
        owner = (owner or user).lower()
        if owner != user.lower():
            raise WireError(403, f"You cannot create a dataset under {owner!r}.")
        slug = slug.lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{2,48}[a-z0-9]", slug):
            return {"status": "error", "error": f"Invalid dataset slug {slug!r}: 4-50 characters, a-z, 0-9, '-'."}
        if len(title) < 6 or len(title) > 50:
            return {"status": "error", "error": "The dataset title must be between 6 and 50 characters."}
        if self.find(owner, slug) is not None:
            return {"status": "error",
                    "error": f'The requested slug "{slug}" is already in use by a dataset. Please choose another slug.'}
        entries = self._entries(user, files, directories)
        if isinstance(entries, str):
            return {"status": "error", "error": entries}
        with self.b.tx() as db:
            cur = db.execute("INSERT INTO datasets(owner, slug, title, license, is_private, subtitle, description, "
                             "created) VALUES (?,?,?,?,?,?,?,?)", (owner, slug, title, license_name or "unknown",
                                                                  int(is_private), subtitle, description,
                                                                  self.b.now()))
            dataset_id = int(cur.lastrowid or 0)
        ds = self.by_id(dataset_id)
        assert ds is not None
        self._new_version(ds, "Initial release", entries, delete_old=False)
        return {"ref": ds.ref, "url": f"{KAGGLE_URL_BASE}/datasets/{ds.ref}", "status": "ok"}

    def create_version(self, user: str, ds: Dataset | None, body: dict[str, Any]) -> dict[str, Any]:
        if ds is None or not self.visible(user, ds):
            raise WireError(404, "Dataset not found.")
        if ds.owner != user.lower():
            raise WireError(403, f"Permission 'datasets.update' was denied for {ds.ref}.")
        versions = self.versions(ds)
        if versions and not any(self.is_ready(v) for v in versions):
            raise WireError(403, f"Permission 'datasets.update' was denied: the first version of {ds.ref} is "
                                "still being processed.")
        entries = self._entries(user, list(body.get("files") or []), list(body.get("directories") or []))
        if isinstance(entries, str):
            return {"status": "error", "error": entries}
        notes = str(body.get("versionNotes") or "")
        self._new_version(ds, notes, entries, delete_old=bool(body.get("deleteOldVersions")))
        return {"ref": ds.ref, "url": f"{KAGGLE_URL_BASE}/datasets/{ds.ref}", "status": "ok"}

    def _entries(self, user: str, files: list[Any], directories: list[Any]) -> list[tuple[str, Upload]] | str:
        """(relative path, upload) for every referenced token, or Kaggle's error text."""
        out: list[tuple[str, Upload]] = []

        def walk(prefix: str, file_list: list[Any], dirs: list[Any]) -> str | None:
            for f in file_list:
                token = str((f or {}).get("token") or "") if isinstance(f, dict) else ""
                up = self.upload(token) if token else None
                if up is None or up.owner != user:
                    return f"Unknown blob token {token[:12]!r}: upload the file with StartBlobUpload first."
                if up.used:
                    return f"The upload of {up.name} (token {token[:12]}...) was already used by another version."
                if not self.complete(up):
                    return f"The upload of {up.name} is incomplete ({self.received(up.token)} of " \
                           f"{up.content_length} bytes)."
                out.append((f"{prefix}{up.name}", up))
            for d in dirs:
                if not isinstance(d, dict):
                    return "directories must be objects"
                name = str(d.get("name") or "")
                if not name or "/" in name or name in (".", ".."):
                    return f"Invalid directory name {name!r}"
                err = walk(f"{prefix}{name}/", list(d.get("files") or []), list(d.get("directories") or []))
                if err:
                    return err
            return None

        err = walk("", files, directories)
        if err:
            return err
        if not out:
            return "A dataset version needs at least one file."
        limit = int(self._cfg("dataset_max_files"))
        if len(out) > limit:
            return f"A dataset version can have at most {limit} files; this one has {len(out)}."
        names = [p for p, _ in out]
        if len(set(names)) != len(names):
            return "Two files have the same name."
        return out

    def _new_version(self, ds: Dataset, notes: str, entries: list[tuple[str, Upload]], delete_old: bool) -> None:
        now = self.b.now()
        with self.b.tx() as db:
            row = db.execute("SELECT MAX(number) FROM dataset_versions WHERE dataset_id=?", (ds.id,)).fetchone()
            number = int(row[0] or 0) + 1
            ready_at = now + float(self._cfg("dataset_processing_seconds"))
            cur = db.execute("INSERT INTO dataset_versions(dataset_id, number, notes, created, ready_at, delete_old) "
                             "VALUES (?,?,?,?,?,?)", (ds.id, number, notes, now, ready_at, int(delete_old)))
            for _, up in entries:
                db.execute("UPDATE blob_uploads SET used=1 WHERE token=?", (up.token,))
            vid = int(cur.lastrowid or 0)
        v = self.version_by_id(vid)
        assert v is not None
        dest = self.files_dir(v)
        dest.mkdir(parents=True, exist_ok=True)
        for rel, up in entries:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._done(up.token), target)
            _extract_if_archive(target)

    def _collect_old(self, ds: Dataset) -> None:
        """``deleteOldVersions``: once the version that asked for it is READY, older versions go."""
        with self.b.lock:
            rows = self.b.db.execute("SELECT number, ready_at FROM dataset_versions WHERE dataset_id=? "
                                     "AND delete_old=1 AND deleted=0", (ds.id,)).fetchall()
        now = self.b.now()
        keep_from = max((r["number"] for r in rows if now >= r["ready_at"]), default=None)
        if keep_from is None:
            return
        with self.b.lock:
            old = self.b.db.execute("SELECT * FROM dataset_versions WHERE dataset_id=? AND number<? AND deleted=0",
                                    (ds.id, keep_from)).fetchall()
            self.b.db.execute("UPDATE dataset_versions SET deleted=1 WHERE dataset_id=? AND number<?",
                              (ds.id, keep_from))
        for r in old:
            shutil.rmtree(self.files_dir(self._version(r)).parent, ignore_errors=True)

    def list_files(self, v: DatasetVersion) -> list[tuple[str, int, float]]:
        root = self.files_dir(v)
        out = []
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime))
        return out

    def archive(self, ds: Dataset, v: DatasetVersion) -> Path:
        """The whole version as one zip (what DownloadDataset serves), built once."""
        path = self.files_dir(v).parent / f"{ds.slug}.zip"
        if not path.exists():
            tmp = path.with_suffix(".zip.tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                for rel, _, _ in self.list_files(v):
                    zf.write(self.files_dir(v) / rel, rel)
            os.replace(tmp, path)
        return path

    # --- signed download URLs ----------------------------------------------------------
    def sign(self, vid: int, name: str, expires: int) -> str:
        return hmac.new(self.b.secret, f"ds:{vid}:{name}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def file_url(self, base: str, vid: int, name: str) -> str:
        expires = int(self.b.now() + float(self._cfg("url_expiry_seconds")))
        return (f"{base}/__datasets/{vid}/{urllib.parse.quote(name)}?expires={expires}"
                f"&sig={self.sign(vid, name, expires)}")

    def signed_path(self, vid: int, name: str, query: str) -> Path | str:
        """The file behind a signed URL, or the XML error code (SignatureDoesNotMatch / ExpiredToken / NoSuchKey)."""
        params = urllib.parse.parse_qs(query)
        expires = (params.get("expires") or ["0"])[0]
        sig = (params.get("sig") or [""])[0]
        if not expires.isdigit() or not hmac.compare_digest(self.sign(vid, name, int(expires)), sig):
            return "SignatureDoesNotMatch"
        if self.b.now() > int(expires):
            return "ExpiredToken"
        v = self.version_by_id(vid)
        if v is None or v.deleted:
            return "NoSuchKey"
        ds = self.by_id(v.dataset_id)
        root = self.files_dir(v).parent
        path = root / f"{ds.slug}.zip" if ds and name == f"{ds.slug}.zip" else self.files_dir(v) / name
        try:
            path.resolve().relative_to(root.resolve())
        except ValueError:
            return "NoSuchKey"
        return path if path.is_file() else "NoSuchKey"

    def summary(self) -> dict[str, Any]:
        out = {}
        with self.b.lock:
            rows = self.b.db.execute("SELECT * FROM datasets ORDER BY id").fetchall()
        for r in rows:
            ds = self._dataset(r)
            out[ds.ref] = [{"version": v.number, "status": self.stage(v), "files": str(self.files_dir(v))}
                           for v in self.versions(ds)]
        return out


def _extract_if_archive(path: Path) -> None:
    """Kaggle extracts uploaded archives: ``x.zip`` becomes the folder ``x/``."""
    name = path.name
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        return
    dest = path.with_name(name[: -len(suffix)])
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    rel = PurePosixPath(info.filename)
                    if rel.is_absolute() or ".." in rel.parts:
                        continue
                    zf.extract(info, dest)
        else:
            with tarfile.open(path) as tf:
                tf.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError):
        return  # not a readable archive: kept as the file it is
    path.unlink()


# --- RPCs ------------------------------------------------------------------------------------
def _store(ctx: Ctx) -> DatasetStore:
    store = ctx.backend.datasets
    assert isinstance(store, DatasetStore)
    return store


def _user(ctx: Ctx) -> str:
    assert ctx.user is not None
    return ctx.user


def _int(body: dict[str, Any], key: str) -> int | None:
    v = body.get(key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise WireError(400, f"{key} must be an integer") from None


def start_blob_upload(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    length = _int(body, "contentLength") or 0
    up = _store(ctx).start_upload(_user(ctx), str(body.get("name") or ""), length,
                                  str(body.get("type") or "API_BLOB_TYPE_UNSPECIFIED"))
    return {"token": up.token, "createUrl": _store(ctx).upload_url(ctx.base_url, up.token)}


def create_dataset(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    user = _user(ctx)
    return _store(ctx).create(user, str(body.get("ownerSlug") or user), str(body.get("slug") or ""),
                              str(body.get("title") or ""), str(body.get("licenseName") or ""),
                              bool(body.get("isPrivate", False)), str(body.get("subtitle") or ""),
                              str(body.get("description") or ""), list(body.get("files") or []),
                              list(body.get("directories") or []), ctx.base_url)


def create_dataset_version(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    ds = store.find(str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or ""))
    return store.create_version(_user(ctx), ds, dict(body.get("body") or {}))


def create_dataset_version_by_id(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    ds = store.by_id(_int(body, "id") or 0)
    return store.create_version(_user(ctx), ds, dict(body.get("body") or {}))


def get_dataset_status(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    owner, slug = str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or "")
    ds = store.find(owner, slug)
    if ds is None or not store.visible(ctx.user, ds):
        raise WireError(404, f"Dataset {owner}/{slug} was not found.")
    store.latest_ready(ds)  # applies deleteOldVersions
    live = [v for v in store.versions(ds) if not v.deleted]
    if not live:
        return {"status": "DELETED"}
    return {"status": store.stage(live[-1])}


def _iso(ts: float) -> str:
    from kagglekit.emulator.responses import iso

    return iso(ts) or ""


def get_dataset(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    ds, v = store.readable(ctx.user, str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or ""))
    files = store.list_files(v)
    versions = [{"versionNumber": x.number, "creationDate": _iso(x.created), "versionNotes": x.notes,
                 "creatorName": ds.owner, "creatorRef": ds.owner, "status": store.stage(x)}
                for x in store.versions(ds) if not x.deleted]
    return {"id": ds.id, "ref": ds.ref, "title": ds.title, "subtitle": ds.subtitle, "description": ds.description,
            "url": f"{KAGGLE_URL_BASE}/datasets/{ds.ref}", "isPrivate": ds.is_private, "licenseName": ds.license,
            "ownerName": ds.owner, "ownerRef": ds.owner, "creatorName": ds.owner,
            "totalBytes": sum(size for _, size, _ in files), "lastUpdated": _iso(v.created),
            "currentVersionNumber": v.number, "versions": versions}


def get_dataset_metadata(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    ds, v = store.readable(ctx.user, str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or ""))
    return {"info": {"datasetId": ds.id, "datasetSlug": ds.slug, "ownerUser": ds.owner, "title": ds.title,
                     "subtitle": ds.subtitle, "description": ds.description, "isPrivate": ds.is_private,
                     "licenses": [{"name": ds.license}],
                     "data": [{"name": name, "totalBytes": size} for name, size, _ in store.list_files(v)]}}


def list_dataset_files(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    ds, v = store.readable(ctx.user, str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or ""),
                           _int(body, "datasetVersionNumber"))
    size = _int(body, "pageSize") or 20
    if size > 200:
        raise WireError(400, "pageSize must be at most 200")
    token = str(body.get("pageToken") or "")
    start = int(token) if token.isdigit() else 0
    files = store.list_files(v)
    page = files[start:start + size]
    out: dict[str, Any] = {"datasetFiles": [
        {"ref": f"{ds.ref}/{name}", "datasetRef": ds.ref, "ownerRef": ds.owner, "name": name,
         "creationDate": _iso(mtime), "totalBytes": size_b} for name, size_b, mtime in page]}
    if start + size < len(files):
        out["nextPageToken"] = str(start + size)
    return out


def download_dataset(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    from kagglekit.emulator.responses import Redirect

    store = _store(ctx)
    ds, v = store.readable(ctx.user, str(body.get("ownerSlug") or ""), str(body.get("datasetSlug") or ""),
                           _int(body, "datasetVersionNumber"))
    name = str(body.get("fileName") or "")
    if name:
        if not (store.files_dir(v) / name).is_file():
            raise WireError(404, f"File {name} not found in {ds.ref} version {v.number}.")
    else:
        name = store.archive(ds, v).name
    raise Redirect(store.file_url(ctx.base_url, v.id, name))


RPCS: dict[str, Callable[[Ctx, dict[str, Any]], dict[str, Any]]] = {
    "blobs.BlobApiService/StartBlobUpload": start_blob_upload,
    "datasets.DatasetApiService/CreateDataset": create_dataset,
    "datasets.DatasetApiService/CreateDatasetVersion": create_dataset_version,
    "datasets.DatasetApiService/CreateDatasetVersionById": create_dataset_version_by_id,
    "datasets.DatasetApiService/GetDatasetStatus": get_dataset_status,
    "datasets.DatasetApiService/GetDataset": get_dataset,
    "datasets.DatasetApiService/GetDatasetMetadata": get_dataset_metadata,
    "datasets.DatasetApiService/ListDatasetFiles": list_dataset_files,
    "datasets.DatasetApiService/DownloadDataset": download_dataset,
}


# --- HTTP: the upload PUT and the signed download GET ------------------------------------------
_QUERY_RANGE = re.compile(r"bytes \*/(\d+)")
_CHUNK_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _drain(h: Handler, length: int) -> None:
    left = length
    while left > 0:
        data = h.rfile.read(min(CHUNK, left))
        if not data:
            return
        left -= len(data)


def _progress(h: Handler, status: int, received: int) -> None:
    headers = {"Content-Length": "0"}
    if received > 0:
        headers["Range"] = f"bytes=0-{received - 1}"
    h._send_response(status, headers)


def handle_upload(h: Handler, token: str) -> None:
    """One PUT to an upload session URL, streamed to disk (memory stays flat whatever the size)."""
    store: DatasetStore = h.app.backend.datasets
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        h.close_connection = True
        raise WireError(411, "Send the upload with a Content-Length.")
    length = int(h.headers.get("Content-Length") or 0)
    up = store.upload(token)
    if up is None or store.expired(up) or up.used:
        _drain(h, length)
        h._send_bytes(404, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchUpload</Code><Message>"
                           b"The upload session does not exist or has expired.</Message></Error>",
                      {"Content-Type": "application/xml; charset=UTF-8"})
        return
    fault = h.app.faults.take(["upload", f"upload:{up.name}"])
    if fault is not None and fault.latency_ms:
        time.sleep(fault.latency_ms / 1000)
    if fault is not None and fault.drop:
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(2)
        return
    if fault is not None and fault.error_status is not None:
        _drain(h, length)  # the bytes are lost: the client must ask what arrived and resume
        h._send_error(fault.error_status, fault.message or f"Injected fault: HTTP {fault.error_status}",
                      {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {})
        return
    content_range = h.headers.get("Content-Range") or ""
    received = store.received(token)
    total = up.content_length
    m = _QUERY_RANGE.fullmatch(content_range.strip())
    if m and length == 0:
        if int(m.group(1)) != total:
            raise WireError(400, f"Content-Range total {m.group(1)} does not match the upload's {total} bytes.")
        if store.complete(up):
            h._send_json(200, {"name": up.name, "size": str(total)})
        else:
            _progress(h, 308, received)
        return
    if store.complete(up):
        _drain(h, length)
        h._send_json(200, {"name": up.name, "size": str(total)})
        return
    start = 0
    if content_range:
        mc = _CHUNK_RANGE.fullmatch(content_range.strip())
        if not mc or (mc.group(3) != "*" and int(mc.group(3)) != total):
            _drain(h, length)
            raise WireError(400, f"Bad Content-Range {content_range!r} for a {total}-byte upload.")
        start = int(mc.group(1))
        if start > received:
            _drain(h, length)
            _progress(h, 308, received)  # a gap: tell the client what arrived
            return
    part = store._part(token)
    skip = received - start if start else 0
    mode = "r+b" if start else "wb"
    cut = fault.cut_after_bytes if fault is not None else None
    rate = fault.bandwidth_bytes_per_s if fault is not None else None
    t0 = time.monotonic()
    got = 0
    entry = h._entry  # the request log records how many bytes this PUT stored
    with part.open(mode) as out:
        out.seek(received if start else 0)
        left = length
        while left > 0:
            data = h.rfile.read(min(CHUNK, left))
            if not data:
                break  # the client went away: keep what arrived
            left -= len(data)
            got += len(data)
            if skip:
                drop = min(skip, len(data))
                data, skip = data[drop:], skip - drop
            if cut is not None and got > cut:
                data = data[: max(0, len(data) - (got - cut))]
            out.write(data)
            if entry is not None:
                entry["stored"] = entry.get("stored", 0) + len(data)
            if rate:
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if cut is not None and got >= cut:
                out.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(2)
                return
    size = part.stat().st_size
    if size > total:
        with part.open("r+b") as out:
            out.truncate(total)
        raise WireError(400, f"More bytes than announced ({size} > {total}).")
    if size == total:
        os.replace(part, store._done(token))
        h._send_json(200, {"name": up.name, "size": str(total)})
    else:
        _progress(h, 308, size)


def handle_file(h: Handler, vid: int, name: str, query: str, head: bool) -> None:
    """A signed dataset download URL: the file (or the version's zip) with Range support."""
    store: DatasetStore = h.app.backend.datasets
    xml = {"Content-Type": "application/xml; charset=UTF-8"}
    found = store.signed_path(vid, name, query)
    if isinstance(found, str):
        status = 404 if found == "NoSuchKey" else 403
        h._send_bytes(status, f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{found}</Code></Error>".encode(),
                      xml, head=head)
        return
    fault = h.app.faults.take(["datasetfiles", f"datasetfile:{name}"])
    if h._apply_fault(fault):
        return
    st = found.stat()
    size = st.st_size
    headers = {"Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
               "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True), "Accept-Ranges": "bytes",
               "ETag": '"' + hashlib.md5(f"{vid}:{name}:{size}:{st.st_mtime_ns}".encode()).hexdigest() + '"'}
    start, end, status = 0, size - 1, 200
    m = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", h.headers.get("Range") or "")
    if m:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or start > end:
            h._send_bytes(416, b"", {"Content-Range": f"bytes */{size}", **headers}, head=True)
            return
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    h._send_response(status, headers)
    if head or length == 0:
        return


    h._write_body(file_chunks(found, start, length, CHUNK), fault)
