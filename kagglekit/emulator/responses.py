"""Parse requests and build responses exactly as kaggle-wire.md describes; the HTTP layer only writes them.

Each RPC handler takes a ``Ctx`` (backend, caller, the base URL the client used) and the
request JSON, calls the backend and returns the response JSON (camelCase proto names,
enums by name, datetimes as ISO with ``Z``, durations as ``"<seconds>s"``). Failures are
``WireError``, serialized by ``error_body`` (Kaggle's nested envelope by default).
The logs stream and output files are built here too, as a ``Reply`` (status, headers,
body chunks) that the server writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import mimetypes
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kagglekit import constants as C
from kagglekit.emulator.models import Backend, Kernel, Version, WireError, file_chunks

CHUNK = 1024 * 1024
# gRPC-style status names Kaggle puts in its error envelope (kaggle-prod-behaviour §2).
GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}


def error_body(status: int, message: str, nested: bool = True) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"}}`` as Kaggle sends it, or the flat ``{"code", "message"}``."""
    if not nested:
        return {"code": status, "message": message}
    name = GRPC_STATUS.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": name}}


@dataclasses.dataclass
class Reply:
    """A non-JSON answer for the server to write: ``stream`` bodies go out chunked, one chunk per item."""

    status: int
    headers: dict[str, str]
    body: Iterable[bytes] = ()
    stream: bool = False


class Redirect(Exception):
    """Answer with ``302 Location: <url>`` (``DownloadKernelOutput``)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclasses.dataclass
class Ctx:
    backend: Backend
    user: str | None
    base_url: str  # scheme://host[:port] the client used, for absolute file URLs
    cancel: Callable[[int], bool] = lambda vid: False
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)


# --- value formats ------------------------------------------------------------------
def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def duration(seconds: float) -> str:
    """Protobuf Duration JSON: ``"9000s"``, ``"3600.5s"``; always present, even ``"0s"``."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def human_date(ts: float) -> str:
    """The free-form ``creationDate`` of ListKernelFiles, e.g. ``4:41 pm, Wednesday 23 September 2026 UTC``."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return f"{d.hour % 12 or 12}:{d.minute:02d} {'am' if d.hour < 12 else 'pm'}, {d:%A} {d.day} {d:%B %Y} UTC"


def _str(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    return v if isinstance(v, str) else ""


def _int(body: dict[str, Any], key: str, default: int) -> int:
    v = body.get(key)
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return default


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise WireError(400, f"Invalid page token {token!r}")
    return int(token)


def _require_user(ctx: Ctx) -> str:
    if not ctx.user:
        raise WireError(401, "Unauthenticated: send Basic (username:key) or Bearer (token) credentials.")
    return ctx.user


# --- serializers ------------------------------------------------------------------------
def kernel_metadata(b: Backend, k: Kernel, version: Version | None = None) -> dict[str, Any]:
    meta = version.meta if version is not None else k.meta
    started = [v.started for v in b.versions_of(k.id) if v.started is not None]
    shape = str(meta.get("machineShape") or "None")
    out: dict[str, Any] = {
        "id": k.id,
        "ref": k.ref,
        "title": k.title,
        "author": k.owner,
        "slug": k.slug,
        "lastRunTime": iso(max(started) if started else k.created),
        "language": meta.get("language", "python"),
        "kernelType": meta.get("kernelType", "script"),
        "isPrivate": bool(meta.get("isPrivate", True)),
        "enableGpu": bool(meta.get("enableGpu", False)),
        "enableTpu": bool(meta.get("enableTpu", False)),
        "enableInternet": bool(meta.get("enableInternet", True)),
        "categoryIds": list(meta.get("categoryIds", [])),
        "datasetDataSources": list(meta.get("datasetDataSources", [])),
        "kernelDataSources": list(meta.get("kernelDataSources", [])),
        "competitionDataSources": list(meta.get("competitionDataSources", [])),
        "modelDataSources": list(meta.get("modelDataSources", [])),
        "totalVotes": 0,
        "currentVersionNumber": version.number if version is not None else k.current_version,
        "dockerImage": meta.get("dockerImage", ""),
        "machineShape": shape,
    }
    return out


def file_url(ctx: Ctx, vid: int, name: str) -> str:
    """A signed URL. Kaggle signs over the unescaped name and puts it in the URL as is [one]: a client
    must send it percent-encoded once (as requests does), not re-quote it (``file_url_escaped`` quotes it)."""
    b = ctx.backend
    expires = int(b.now() + float(b.setting("url_expiry_seconds")))
    sig = b.sign(vid, name, expires)
    shown = urllib.parse.quote(name) if b.setting("file_url_escaped") else name
    return f"{ctx.base_url}/__files/{vid}/{shown}?expires={expires}&sig={sig}"


def _page_size(b: Backend, body: dict[str, Any]) -> int:
    """Output listings accept ``pageSize`` up to 500 [one]; above that Kaggle answers 400."""
    size = _int(body, "pageSize", 20) or 20
    limit = int(b.setting("max_page_size"))
    if limit and size > limit:
        raise WireError(400, f"Page size must be at most {limit}.")
    return max(1, size)


def _ref(body: dict[str, Any], ctx: Ctx) -> tuple[str, str, str]:
    user = _require_user(ctx)
    owner = _str(body, "userName") or _str(body, "ownerSlug") or user
    slug = _str(body, "kernelSlug")
    if not slug:
        raise WireError(400, "kernelSlug is required")
    return owner, slug, _str(body, "versionLabel")


# --- RPC handlers ------------------------------------------------------------------------
def introspect_token(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    token = _str(body, "token")
    user = ctx.backend.auth_token(token)
    if not user:
        return {"active": False}
    return {"active": True, "username": user, "clientId": "kagglesdk", "userId": ctx.backend.user_id(user),
            "scope": "resources.admin:*", "exp": 4102444800}


def save_kernel(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return ctx.backend.save_kernel(_require_user(ctx), body)


def get_kernel_session_status(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    v = ctx.backend.session_of(ctx.user or "", owner, slug, label)
    out: dict[str, Any] = {"status": v.status}
    if v.failure:
        out["failureMessage"] = v.failure
    return out


def list_kernel_session_output(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    b = ctx.backend
    v = b.session_of(ctx.user or "", owner, slug, label)
    token = _str(body, "pageToken")
    start = _offset(token)
    size = _page_size(b, body)
    files = b.listed_files(v)
    page = files[start:start + size]
    out: dict[str, Any] = {"files": [{"url": file_url(ctx, v.id, f.name), "fileName": f.name} for f in page]}
    if not token and b.lists_log(v):
        log = b.log_text(v.id)
        if log:
            out["log"] = log
    if start + size < len(files):
        out["nextPageToken"] = str(start + size)
    return out


def get_kernel(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    b = ctx.backend
    k, v = b.resolve_read(ctx.user or "", owner, slug, label)
    if not label:  # the latest version's source, run or not
        v = b.versions_of(k.id)[-1]
    meta = kernel_metadata(b, k, v if label else None)
    return {"metadata": meta,
            "blob": {"source": b.source_text(v.id), "language": meta["language"],
                     "kernelType": meta["kernelType"], "slug": k.slug}}


_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "DATE_RUN": lambda m: m["lastRunTime"] or "",
    "DATE_CREATED": lambda m: m["id"],
}


def list_kernels(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    user = _require_user(ctx)
    b = ctx.backend
    group = _str(body, "group") or "EVERYONE"
    owner = _str(body, "user")
    search = _str(body, "search").lower()
    language = _str(body, "language").lower()
    kernel_type = _str(body, "kernelType").lower()
    dataset = _str(body, "dataset")
    competition = _str(body, "competition")
    kernels: list[Kernel] = []
    for k in b.all_kernels():
        if group == "PROFILE":
            if k.owner != (owner or user):
                continue
            if k.owner != user and k.is_private:
                continue
        else:
            if k.is_private and k.owner != user:
                continue
            if k.is_private and not owner:
                continue  # the public listing shows public kernels only
            if owner and k.owner != owner:
                continue
        if search and search not in k.title.lower() and search not in k.slug:
            continue
        if language not in ("", "all") and k.meta.get("language") != language:
            continue
        if kernel_type not in ("", "all") and k.meta.get("kernelType") != kernel_type:
            continue
        if dataset and dataset not in [("/".join(d.split("/")[:2])) for d in k.meta.get("datasetDataSources", [])]:
            continue
        if competition and competition not in k.meta.get("competitionDataSources", []):
            continue
        kernels.append(k)
    metas = [kernel_metadata(b, k) for k in kernels]
    key = _SORTS.get(_str(body, "sortBy"), lambda m: m["id"])
    metas.sort(key=key, reverse=True)
    size = max(1, min(_int(body, "pageSize", 20) or 20, 100))
    token = _str(body, "pageToken")
    start = _offset(token) if token else (max(1, _int(body, "page", 1)) - 1) * size
    out: dict[str, Any] = {"kernels": metas[start:start + size]}
    if start + size < len(metas):
        out["nextPageToken"] = str(start + size)
    return out


def list_kernel_files(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    b = ctx.backend
    v = b.session_of(ctx.user or "", owner, slug, label)
    files = b.listed_files(v)
    start = _offset(_str(body, "pageToken"))
    size = _page_size(b, body)
    out: dict[str, Any] = {"files": [{"name": f.name, "size": f.size, "creationDate": human_date(f.mtime)}
                                     for f in files[start:start + size]]}
    if start + size < len(files):
        out["nextPageToken"] = str(start + size)
    return out


def delete_kernel(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, _ = _ref(body, ctx)
    ctx.backend.delete_kernel(ctx.user or "", owner, slug)
    return {}


def accelerator_quota(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    q = ctx.backend.quota(_require_user(ctx))
    out: dict[str, Any] = {"quotaRefreshTime": iso(q["refresh"])}
    for kind in ("gpu", "tpu"):
        k = q[kind]
        out[f"{kind}Quota"] = {
            "timeUsed": duration(k["used"]),
            "timeReserved": duration(k["reserved"]),
            "totalTimeAllowed": duration(k["total"]),
            "minimumTimeAllowed": duration(k["minimum"]),
            "isPayToScaleEnabled": False,
            "hasEverRun": bool(k["has_ever_run"]),
        }
    return out


def cancel_kernel_session(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """Cancel by session id (in a kernel: the number in ``KAGGLE_CONTAINER_NAME``), per
    kaggle-prod-behaviour §6: CANCEL_REQUESTED, then CANCEL_ACKNOWLEDGED once the outputs are saved."""
    user = _require_user(ctx)
    v = ctx.backend.cancel_session(user, _int(body, "kernelSessionId", 0))
    if v.status not in C.ACTIVE_STATUSES:
        return {"errorMessage": f"The session is not running (status {v.status})."}
    ctx.cancel(v.id)
    return {}


def download_kernel_output(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    user = _require_user(ctx)
    owner = _str(body, "ownerSlug") or user
    slug = _str(body, "kernelSlug")
    number = _int(body, "versionNumber", 0)
    v = ctx.backend.session_of(user, owner, slug, f"v{number}" if number else None)
    path = _str(body, "filePath")
    if not path:
        raise WireError(400, "filePath is required (the emulator does not build zip archives).")
    f = ctx.backend.output_file(v.id, path)
    if f is None or path not in {x.name for x in ctx.backend.listed_files(v)}:
        raise WireError(404, f"Output file {path!r} was not found.")
    raise Redirect(file_url(ctx, v.id, f.name))


RPCS: dict[str, Callable[[Ctx, dict[str, Any]], dict[str, Any]]] = {
    "security.OAuthService/IntrospectToken": introspect_token,
    "kernels.KernelsApiService/SaveKernel": save_kernel,
    "kernels.KernelsApiService/GetKernelSessionStatus": get_kernel_session_status,
    "kernels.KernelsApiService/ListKernelSessionOutput": list_kernel_session_output,
    "kernels.KernelsApiService/GetKernel": get_kernel,
    "kernels.KernelsApiService/ListKernels": list_kernels,
    "kernels.KernelsApiService/ListKernelFiles": list_kernel_files,
    "kernels.KernelsApiService/DeleteKernel": delete_kernel,
    "kernels.KernelsApiService/GetAcceleratorQuotaStatistics": accelerator_quota,
    "kernels.KernelsApiService/CancelKernelSession": cancel_kernel_session,
    "kernels.KernelsApiService/DownloadKernelOutput": download_kernel_output,
}
NO_AUTH_RPCS = frozenset({"security.OAuthService/IntrospectToken"})


# --- the logs stream --------------------------------------------------------------------
def logs_reply(ctx: Ctx, owner: str, slug: str, label: str) -> Reply:
    """The logs of a run: its saved log as JSON once it ended; while it runs, SSE events (one
    ``data: {record}`` per log record, replayed from the start, then ``data: END_OF_LOG``) as a
    stream the server sends chunked, so a reader with iter_lines sees each event as it is written."""
    b = ctx.backend
    v = b.session_of(_require_user(ctx), owner or (ctx.user or ""), slug, label or None)
    if not v.active:
        data = b.log_text(v.id).encode("utf-8")
        return Reply(200, {"Content-Type": "application/json", "Content-Length": str(len(data))}, [data])
    return Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                 _log_events(ctx, v.id), stream=True)


def _log_events(ctx: Ctx, vid: int) -> Iterator[bytes]:
    b = ctx.backend
    path = b.log_path(vid)
    pos = 0
    last_write = time.monotonic()

    def drain() -> bytes:
        nonlocal pos
        if not path.exists():
            return b""
        with path.open("rb") as f:
            f.seek(pos)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        pos += end + 1
        return b"".join(b"data: " + line + b"\n\n" for line in data[:end].split(b"\n") if line)

    while not ctx.stopping.is_set():
        events = drain()
        if events:
            yield events
            last_write = time.monotonic()
        cur = b.version(vid)
        if cur is None or not cur.active:
            rest = drain()
            yield rest + b"data: END_OF_LOG\n\n"
            return
        with b.changed:
            b.changed.wait(0.5)
        if time.monotonic() - last_write > 10:
            yield b": keep-alive\n\n"
            last_write = time.monotonic()


# --- output files -----------------------------------------------------------------------
_XML = {"Content-Type": "application/xml; charset=UTF-8"}


def _xml_error(status: int, code: str, message: str) -> Reply:
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error>").encode()
    return Reply(status, {**_XML, "Content-Length": str(len(body))}, [body])


def check_file_url(ctx: Ctx, vid: int, name: str, query: str) -> Reply | None:
    """A GCS-style 403 for a forged or expired signed URL, or None when the URL is good."""
    b = ctx.backend
    params = urllib.parse.parse_qs(query)
    expires_s = (params.get("expires") or ["0"])[0]
    sig = (params.get("sig") or [""])[0]
    if not expires_s.isdigit() or not b.check_signature(vid, name, int(expires_s), sig):
        return _xml_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                        "signature you provided.")
    if b.now() > int(expires_s):
        return _xml_error(403, "ExpiredToken", "Invalid argument: the signed URL has expired.")
    return None


def file_reply(ctx: Ctx, vid: int, name: str, range_header: str | None, if_range: str | None) -> Reply:
    """One output file: ``ETag``/``Last-Modified``, ``Range`` -> 206 (``If-Range`` honoured, 416 when
    unsatisfiable)."""
    f = ctx.backend.output_file(vid, name)
    if f is None:
        return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
    st = f.path.stat()
    size = st.st_size
    etag = '"' + hashlib.md5(f"{vid}:{name}:{size}:{st.st_mtime_ns}".encode()).hexdigest() + '"'
    last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Content-Type": ctype, "ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes"}
    start, end = 0, size - 1
    status = 200
    if range_header and (not if_range or if_range in (etag, last_modified)):
        m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                return Reply(416, {"Content-Range": f"bytes */{size}", **headers, "Content-Length": "0"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)


    return Reply(status, headers, file_chunks(f.path, start, length, CHUNK) if length else [])

