"""A small read-only web page per kernel: what kaggle.com/code/OWNER/SLUG is to Kaggle.

``GET /code/OWNER/SLUG[?version=N]`` shows the kernel's versions (status, accelerator, times),
the chosen version's log tail and its files; ``GET /code`` lists every kernel. kagglekit
prints these addresses under ``--local`` instead of kaggle.com links that lead nowhere.

The page is the emulator's own view, not Kaggle's API: it shows the files in the version's
``/kaggle/working`` even while the API lists none (a running or saving version), and says so.
It needs no credentials (the emulator listens on loopback) and changes nothing. Like the rest
of the emulator it imports nothing from kagglekit but shared constants.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import urllib.parse
from typing import TYPE_CHECKING

from kagglekit import constants as C
from kagglekit.emulator.models import Backend, Version
from kagglekit.emulator.responses import Ctx, file_url

if TYPE_CHECKING:
    from kagglekit.emulator.app import App

_PAGE = re.compile(r"^/code/?$|^/code/([^/]+)/([^/]+)/?$")
LOG_TAIL_LINES = 40
GPU_ON_CPU = ("GPU and TPU sessions run on this machine's CPU: the emulator has no accelerator, so timings, "
              "memory and CUDA behaviour are not Kaggle's.")


def match(path: str) -> tuple[str, ...] | None:
    """The page a GET path names: ``()`` for the index, ``(owner, slug)`` for a kernel, else None."""
    m = _PAGE.match(path)
    if m is None:
        return None
    if m.group(1) is None:
        return ()
    return urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))


def render(app: App, base_url: str, args: tuple[str, ...], query: str) -> tuple[int, bytes]:
    """(HTTP status, HTML bytes) for a page route."""
    b = app.backend
    if not args:
        return 200, _index(b)
    owner, slug = args
    kernel = b.kernel_by_ref(owner, slug)
    if kernel is None:
        body = f"<p>No kernel <b>{_e(owner)}/{_e(slug)}</b> in this emulator.</p><p><a href='/code'>All kernels</a></p>"
        return 404, _doc(f"{owner}/{slug}: not found", body)
    versions = b.versions_of(kernel.id)
    wanted = (urllib.parse.parse_qs(query).get("version") or [""])[0]
    chosen: Version | None = None
    if wanted.isdigit():
        chosen = next((v for v in versions if v.number == int(wanted)), None)
    if chosen is None:
        ran = [v for v in versions if v.run]
        chosen = (ran or versions)[-1] if versions else None
    return 200, _kernel(b, base_url, kernel.ref, kernel.title, versions, chosen)


def _index(b: Backend) -> bytes:
    rows = []
    for k in b.all_kernels():
        versions = b.versions_of(k.id)
        last = versions[-1] if versions else None
        rows.append(f"<tr><td><a href='/code/{_q(k.owner)}/{_q(k.slug)}'>{_e(k.ref)}</a></td><td>{_e(k.title)}</td>"
                    f"<td>{len(versions)}</td><td>{_status(last)}</td></tr>")
    table = ("<table><tr><th>kernel</th><th>title</th><th>versions</th><th>latest</th></tr>" + "".join(rows)
             + "</table>") if rows else "<p>No kernels yet: push one (kagglekit --local push).</p>"
    return _doc("Kernels", f"<p class=note>{_e(GPU_ON_CPU)}</p>{table}")


def _kernel(b: Backend, base_url: str, ref: str, title: str, versions: list[Version],
            chosen: Version | None) -> bytes:
    now = b.now()
    rows = []
    for v in reversed(versions):
        mark = " class=chosen" if chosen is not None and v.id == chosen.id else ""
        shape = str(v.meta.get("machineShape") or "None")
        rows.append(
            f"<tr{mark}><td><a href='?version={v.number}'>v{v.number}</a></td><td>{_status(v)}</td>"
            f"<td>{_e(v.kind.upper())}{'' if shape in ('', 'None') else ' ' + _e(shape)}</td>"
            f"<td>{_when(v.created)}</td><td>{_when(v.started)}</td><td>{_when(v.ended)}</td>"
            f"<td>{_span(v, now)}</td><td>{_e(v.failure)}</td></tr>")
    parts = [f"<p class=note>{_e(GPU_ON_CPU)}</p>",
             "<h2>Versions</h2><table><tr><th>version</th><th>status</th><th>accelerator</th><th>pushed</th>"
             "<th>started</th><th>ended</th><th>duration</th><th>failure</th></tr>" + "".join(rows) + "</table>"]
    refresh = False
    if chosen is not None:
        refresh = chosen.active
        parts.append(f"<h2>v{chosen.number}: {_status(chosen)}</h2>")
        if chosen.id in b.saving:
            start, end = b.saving[chosen.id]
            parts.append(f"<p>The kernel process has ended; its output is being saved (about "
                         f"{max(0.0, end - start):.0f} s in all). The API lists files and the log once it is done.</p>")
        elif chosen.active:
            parts.append("<p>The API lists no files and no log while a version runs or saves; this page shows "
                         "what the run has written so far.</p>")
        parts.append(f"<h3>Log (last {LOG_TAIL_LINES} lines)</h3><pre>{_e(_log_tail(b, chosen.id))}</pre>")
        files = b.output_files(chosen.id)
        ctx = Ctx(b, None, base_url)
        items = "".join(f"<tr><td><a href='{_e(file_url(ctx, chosen.id, f.name))}'>{_e(f.name)}</a></td>"
                        f"<td class=num>{_size(f.size)}</td></tr>" for f in files)
        parts.append(f"<h3>Output ({len(files)} files, {_size(sum(f.size for f in files))})</h3>"
                     + (f"<table><tr><th>file</th><th>size</th></tr>{items}</table>" if files
                        else "<p>No files in /kaggle/working.</p>"))
    else:
        parts.append("<p>This kernel has no versions.</p>")
    return _doc(f"{ref}", f"<p>{_e(title)} · <a href='/code'>all kernels</a></p>" + "".join(parts), refresh)


def _log_tail(b: Backend, vid: int) -> str:
    """The readable end of a version's log: records joined, progress bars collapsed to their last state."""
    text = []
    for line in b.log_lines(vid):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("data"), str):
            data = record["data"]
            text.append(data if record.get("stream_name") != "stderr" else
                        "".join("! " + part for part in data.splitlines(keepends=True)))
    lines = [part.rsplit("\r", 1)[-1] for part in "".join(text).replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(no log yet)"


def _status(v: Version | None) -> str:
    if v is None:
        return ""
    text = v.status if v.run else f"{v.status} (saved without a run)"
    colour = {C.STATUS_COMPLETE: "ok", C.STATUS_ERROR: "bad", C.STATUS_CANCEL_ACKNOWLEDGED: "bad"}.get(v.status, "live")
    return f"<span class={colour}>{_e(text)}</span>"


def _span(v: Version, now: float) -> str:
    if v.started is None:
        return ""
    seconds = int((v.ended if v.ended is not None else now) - v.started)
    h, rest = divmod(max(0, seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _when(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}tr.chosen{background:#eef6ff}
pre{background:#111;color:#ddd;padding:1em;overflow:auto;max-height:30em}.ok{color:#080}.bad{color:#b00}
.live{color:#a60}.note{background:#fff6d6;padding:.5em;border:1px solid #e8d48a}.num{text-align:right}"""


def _doc(title: str, body: str, refresh: bool = False) -> bytes:
    meta = "<meta http-equiv=refresh content=5>" if refresh else ""
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>{meta}<title>{_e(title)} · kagglekit emulator"
            f"</title><style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>{body}"
            "<p style='color:#888'>kagglekit emulator · read-only</p></body></html>").encode()
