"""The moto-style control routes under ``/__emulator/``: reset, config, clock, faults, seed data, state.

They are the emulator's own (not Kaggle's): errors are flat ``{"code", "message"}``. On a
non-loopback bind every route but ``GET health`` needs the control token (``App.control_token``,
sent as ``X-Emulator-Token``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kagglekit import constants as C
from kagglekit.emulator.faults import parse_fault
from kagglekit.emulator.models import WireError

if TYPE_CHECKING:
    from kagglekit.emulator.app import App

TOKEN_HEADER = "X-Emulator-Token"
OPEN_ROUTES = frozenset({"GET health"})


def _obj(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise WireError(400, "The body must be a JSON object")
    return payload


def _reset(app: App, p: dict[str, Any]) -> Any:
    app.reset()
    return {"ok": True}


def _config(app: App, p: dict[str, Any]) -> Any:
    return app.backend.update_config(p)


def _get_config(app: App, p: dict[str, Any]) -> Any:
    return app.backend.config


def _clock(app: App, p: dict[str, Any]) -> Any:
    if "offset_seconds" in p:
        app.backend.set_clock_offset(float(p["offset_seconds"]))
    elif "advance_seconds" in p:
        app.backend.set_clock_offset(app.backend.clock_offset + float(p["advance_seconds"]))
    else:
        raise WireError(400, "Send offset_seconds (absolute) or advance_seconds (relative)")
    return {"offset_seconds": app.backend.clock_offset, "now": app.backend.now()}


def _usage(app: App, p: dict[str, Any]) -> Any:
    username = str(p.get("username") or "")
    if not username:
        raise WireError(400, "username is required")
    app.backend.add_usage(username, str(p.get("kind", "gpu")), float(p.get("seconds", 0)))
    return app.backend.quota(username)


def _faults(app: App, p: dict[str, Any]) -> Any:
    if p.get("clear"):
        app.faults.clear()
    else:
        app.faults.add(parse_fault(p))
    return {"faults": app.faults.snapshot()}


def _get_faults(app: App, p: dict[str, Any]) -> Any:
    return {"faults": app.faults.snapshot()}


def _clear_faults(app: App, p: dict[str, Any]) -> Any:
    app.faults.clear()
    return {"faults": []}


def _source(kind: str, key: str) -> Callable[[App, dict[str, Any]], Any]:
    def handler(app: App, p: dict[str, Any]) -> Any:
        ref = str(p.get(key) or "")
        app.backend.add_source(kind, ref, str(p.get("path") or ""))
        return {"ok": True, kind: ref}

    return handler


def _users(app: App, p: dict[str, Any]) -> Any:
    app.backend.add_user(str(p.get("username") or ""), str(p.get("key") or ""), p.get("token"))
    return {"users": app.backend.users()}


def _seed(app: App, p: dict[str, Any]) -> Any:
    """Several things at once: {"users": [...], "datasets": [...], "competitions": [...], "models": [...]}."""
    for u in p.get("users", []):
        _users(app, u)
    for d in p.get("datasets", []):
        _source("dataset", "ref")(app, d)
    for c in p.get("competitions", []):
        _source("competition", "slug")(app, c)
    for m in p.get("models", []):
        _source("model", "ref")(app, m)
    return app.state()


def _requests(app: App, p: dict[str, Any]) -> Any:
    return {"requests": app.request_log()}


def _clear_requests(app: App, p: dict[str, Any]) -> Any:
    app.clear_request_log()
    return {"requests": []}


def _state(app: App, p: dict[str, Any]) -> Any:
    return app.state()


def _versions(app: App, p: dict[str, Any]) -> Any:
    """Every version: kernel, number, status, failure, kind, sandbox mode, internet enforcement, times."""
    b = app.backend
    out = []
    for k in b.all_kernels():
        for v in b.versions_of(k.id):
            out.append({"ref": k.ref, "version": v.number, "version_id": v.id, "status": v.status,
                        "failure": v.failure, "kind": v.kind, "machine_shape": v.meta.get("machineShape"),
                        "ran": v.run, "session_id": v.session_id, "sandbox_mode": v.sandbox_mode, "internet_enforced": v.internet_enforced,
                        "created": v.created, "started": v.started, "ended": v.ended,
                        "output_dir": str(b.output_dir(v.id))})
    return {"versions": out}


def _health(app: App, p: dict[str, Any]) -> Any:
    return {"ok": True, "url": app.url, "pid": app.pid}


def _cancel(app: App, p: dict[str, Any]) -> Any:
    """Cancel a run: {"owner", "slug", "version"?} -> CANCEL_ACKNOWLEDGED (what a UI cancel does)."""
    owner = str(p.get("owner") or "")
    slug = str(p.get("slug") or "")
    version = p.get("version")
    _, v = app.backend.resolve(owner, owner, slug, f"v{version}" if version else None)
    if not v.active:
        raise WireError(409, f"Version {v.number} is not running (status {v.status}).")
    app.backend.update_version(v.id, status=C.STATUS_CANCEL_REQUESTED)
    app.runner.cancel(v.id)
    return {"ok": True, "version": v.number}


CONTROL: dict[str, Callable[[App, dict[str, Any]], Any]] = {
    "POST reset": _reset,
    "POST config": _config,
    "GET config": _get_config,
    "POST clock": _clock,
    "POST usage": _usage,
    "POST faults": _faults,
    "GET faults": _get_faults,
    "DELETE faults": _clear_faults,
    "POST datasets": _source("dataset", "ref"),
    "POST competitions": _source("competition", "slug"),
    "POST models": _source("model", "ref"),
    "POST users": _users,
    "POST seed": _seed,
    "POST cancel": _cancel,
    "GET requests": _requests,
    "DELETE requests": _clear_requests,
    "GET state": _state,
    "GET versions": _versions,
    "GET health": _health,
}


def control(app: App, name: str, payload: Any, token: str | None = None) -> Any:
    """Run a control route; 401 without the right token when the emulator requires one."""
    if app.control_token and name not in OPEN_ROUTES and token != app.control_token:
        raise WireError(401, f"This emulator listens beyond loopback: control routes need the {TOKEN_HEADER} "
                             "header with the token printed at start-up.")
    handler = CONTROL.get(name)
    if handler is None:
        raise WireError(404, f"Unknown control route {name!r}; known: {sorted(CONTROL)}")
    return handler(app, _obj(payload))
