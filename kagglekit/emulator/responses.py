"""Parse RPC request bodies and serialize responses exactly as kaggle-wire.md describes.

Each RPC handler takes a ``Ctx`` (backend, caller, the base URL the client used) and the
request JSON, calls the backend and returns the response JSON (camelCase proto names,
enums by name, datetimes as ISO with ``Z``, durations as ``"<seconds>s"``). Failures are
``ApiError`` (HTTP status + JSON ``{"code", "message"}``, written by the server).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable
from typing import Any

from kagglekit import constants as C
from kagglekit.emulator.datasets import RPCS as DATASET_RPCS
from kagglekit.emulator.models import ApiError, Backend, Kernel, Version


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
        raise ApiError(400, f"Invalid page token {token!r}")
    return int(token)


def _require_user(ctx: Ctx) -> str:
    if not ctx.user:
        raise ApiError(401, "Unauthenticated: send Basic (username:key) or Bearer (token) credentials.")
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
    b = ctx.backend
    expires = int(b.now() + float(b.setting("url_expiry_seconds")))
    sig = b.sign(vid, name, expires)
    return f"{ctx.base_url}/__files/{vid}/{urllib.parse.quote(name)}?expires={expires}&sig={sig}"


def _ref(body: dict[str, Any], ctx: Ctx) -> tuple[str, str, str]:
    user = _require_user(ctx)
    owner = _str(body, "userName") or _str(body, "ownerSlug") or user
    slug = _str(body, "kernelSlug")
    if not slug:
        raise ApiError(400, "kernelSlug is required")
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
    _, v = ctx.backend.resolve(ctx.user or "", owner, slug, label)
    out: dict[str, Any] = {"status": v.status}
    if v.failure:
        out["failureMessage"] = v.failure
    return out


def list_kernel_session_output(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    b = ctx.backend
    _, v = b.resolve(ctx.user or "", owner, slug, label)
    token = _str(body, "pageToken")
    start = _offset(token)
    size = _int(body, "pageSize", 20) or 20
    size = max(1, min(size, 200))
    files = b.output_files(v.id)
    page = files[start:start + size]
    out: dict[str, Any] = {"files": [{"url": file_url(ctx, v.id, f.name), "fileName": f.name} for f in page]}
    if not token:
        log = b.log_text(v.id)
        if log:
            out["log"] = log
    if start + size < len(files):
        out["nextPageToken"] = str(start + size)
    return out


def get_kernel(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    owner, slug, label = _ref(body, ctx)
    b = ctx.backend
    k, v = b.resolve(ctx.user or "", owner, slug, label)
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
    _, v = b.resolve(ctx.user or "", owner, slug, label)
    files = b.output_files(v.id)
    start = _offset(_str(body, "pageToken"))
    size = max(1, min(_int(body, "pageSize", 20) or 20, 200))
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
    """Cancel by session id (the version id; in a kernel it is in ``KAGGLE_CONTAINER_NAME``)."""
    user = _require_user(ctx)
    sid = _int(body, "kernelSessionId", 0)
    v = ctx.backend.version(sid)
    if v is None or v.owner != user:
        raise ApiError(403, "Permission 'kernelSessions.cancel' was denied")
    if not v.active:
        return {"errorMessage": f"The session is not running (status {v.status})."}
    ctx.backend.update_version(v.id, status=C.STATUS_CANCEL_REQUESTED)
    ctx.cancel(v.id)
    return {}


def download_kernel_output(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    user = _require_user(ctx)
    owner = _str(body, "ownerSlug") or user
    slug = _str(body, "kernelSlug")
    number = _int(body, "versionNumber", 0)
    _, v = ctx.backend.resolve(user, owner, slug, f"v{number}" if number else None)
    path = _str(body, "filePath")
    if not path:
        raise ApiError(400, "filePath is required (the emulator does not build zip archives).")
    f = ctx.backend.output_file(v.id, path)
    if f is None:
        raise ApiError(404, f"Output file {path!r} was not found.")
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
RPCS.update(DATASET_RPCS)  # blobs + datasets: emulator/datasets.py
NO_AUTH_RPCS = frozenset({"security.OAuthService/IntrospectToken"})
