"""The HTTP server: a threaded stdlib server that parses requests and writes what the responses layer built.

``EmulatorServer(data_dir, host, port, config).start()`` serves in a background thread
(``.url``, ``.stop()``); ``serve_forever()`` runs in the foreground. Requests can be
origin-form (``POST /api/v1/...``) or absolute-form (``POST http://localhost/api/v1/...``,
as sent through ``HTTP_PROXY``). Every request is recorded (method, path, status, ts) for
``GET /__emulator/requests``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import os
import secrets
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kagglekit import constants as C
from kagglekit.emulator import control, datasets, pages, responses, routes
from kagglekit.emulator.app import App
from kagglekit.emulator.faults import Fault
from kagglekit.emulator.models import Backend, WireError
from kagglekit.emulator.responses import NO_AUTH_RPCS, Ctx, Redirect, Reply
from kagglekit.emulator.runner import Runner


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    app: App


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every response on loopback.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "kagglekit-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet; the request log keeps the record
        if os.environ.get("KAGGLEKIT_EMULATOR_DEBUG"):
            super().log_message(format, *args)

    # --- entry points ---------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    @property
    def app(self) -> App:
        return self.server.app

    def _handle(self, method: str) -> None:
        self._control = False
        self._status = 0
        self._sent_headers = False
        self._bytes = 0
        target = self.path
        if "://" in target.split("?", 1)[0]:
            parts = urllib.parse.urlsplit(target)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = target.partition("?")
        route = routes.match(method, path)
        length = int(self.headers.get("Content-Length") or 0)
        streamed = route is not None and route.kind == "upload"  # read in chunks by its handler
        body = self.rfile.read(length) if length > 0 and not streamed else b""
        entry: dict[str, Any] = {"method": method, "path": path, "status": 0, "ts": time.time(),
                                 "kind": route.kind if route else "unknown", "name": route.name if route else ""}
        self._entry: dict[str, Any] | None = entry  # logged as soon as the status is sent (see _send_response)
        try:
            if route is None:
                raise WireError(404, f"No such endpoint: {method} {path}")
            if route.kind == "rpc":
                self._rpc(route.name, body)
            elif route.kind == "logs":
                fault = self.app.faults.take(["logs"])
                if self._apply_fault(fault):
                    return
                params = urllib.parse.parse_qs(query)
                ctx = self._ctx(self._auth(required=True))
                self._send_reply(responses.logs_reply(ctx, route.args[0], route.args[1],
                                                      (params.get("versionLabel") or [""])[0]), fault)
            elif route.kind == "upload":
                datasets.handle_upload(self, route.args[0])
            elif route.kind == "datasetfile":
                entry["file"] = route.args[1]
                datasets.handle_file(self, int(route.args[0]), route.args[1], query, head=method == "HEAD")
            elif route.kind == "file":
                entry["file"] = route.args[1]
                self._file(int(route.args[0]), route.args[1], query, head=method == "HEAD")
            elif route.kind == "page":  # the read-only web page of a kernel (pages.py)
                self._send_bytes(*pages.render(self.app, self._base_url(), route.args, query),
                                 {"Content-Type": "text/html; charset=utf-8"}, head=method == "HEAD")
            elif route.kind == "control":
                self._control = True
                payload = json.loads(body) if body.strip() else None
                token = self.headers.get(control.TOKEN_HEADER)
                self._send_json(200, control.control(self.app, route.name, payload, token))
            else:
                self._send_json(200, {"emulator": "kagglekit", "url": self.app.url,
                                      "rpc_base": [f"{self.app.url}/v1", f"{self.app.url}/api/v1"]})
        except WireError as exc:
            self._send_error(exc.status, exc.message)
        except json.JSONDecodeError as exc:
            self._send_error(400, f"The body is not valid JSON: {exc}")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, f"Internal error in the emulator: {type(exc).__name__}: {exc}")
        finally:
            entry["status"] = self._status
            entry["bytes"] = self._bytes  # the logged dict is updated in place
            if self._entry is not None:
                self._entry = None
                self.app.record(entry)

    # --- auth -----------------------------------------------------------------------
    def _auth(self, required: bool) -> str | None:
        header = self.headers.get("Authorization") or ""
        user: str | None = None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and value:
            try:
                raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raw = ""
            name, _, key = raw.partition(":")
            user = self.app.backend.auth_basic(name, key)
        elif scheme.lower() == "bearer" and value:
            user = self.app.backend.auth_token(value.strip())
        if user is None and required:
            if header:
                raise WireError(401, "Unauthenticated: the credentials sent are not valid for this emulator.")
            raise WireError(401, "Unauthenticated: send Basic (username:key) or Bearer (token) credentials.")
        return user

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.app.url

    def _ctx(self, user: str | None) -> Ctx:
        return Ctx(self.app.backend, user, self._base_url(), cancel=self.app.runner.cancel,
                   stopping=self.app.stopping)

    # --- RPCs ----------------------------------------------------------------------------
    def _rpc(self, name: str, raw: bytes) -> None:
        method = name.rsplit("/", 1)[-1]
        fault = self.app.faults.take([method, name])
        if self._apply_fault(fault):
            return
        if not routes.rpc_known(name):
            raise WireError(404, f"The kagglekit emulator does not implement {name}.")
        user = self._auth(required=name not in NO_AUTH_RPCS)
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise WireError(400, "The request body must be a JSON object")
        ctx = self._ctx(user)
        if name == routes.LOGS_RPC:
            owner = str(body.get("userName") or user)
            self._send_reply(responses.logs_reply(ctx, owner, str(body.get("kernelSlug") or ""),
                                                  str(body.get("versionLabel") or "")), fault)
            return
        try:
            result = routes.RPCS[name](ctx, body)
        except Redirect as r:
            self._send_response(302, {"Location": r.location, "Content-Length": "0"})
            return
        self._send_json(200, result, fault)

    # --- faults ------------------------------------------------------------------------
    def _apply_fault(self, fault: Fault | None) -> bool:
        """Apply a fault's up-front effects; True when the request has been answered (or dropped)."""
        if fault is None:
            return False
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault.drop:
            self.close_connection = True
            self._status = 0
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return True
        status = fault.error_status
        if status is not None:
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                ra = fault.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            message = fault.message or f"Injected fault: HTTP {status}"
            if fault.html:
                page = (f"<!DOCTYPE html>\n<html lang=en><head><title>Error {status}</title></head>"
                        f"<body><h1>{status}.</h1><p>That's an error. {message}</p></body></html>\n").encode()
                headers["Content-Type"] = "text/html; charset=UTF-8"
                self._send_bytes(status, page, headers, fault)
            else:
                self._send_error(status, message, headers, fault)
            return True
        if fault.first_byte_delay_ms:
            time.sleep(fault.first_byte_delay_ms / 1000)
        return False

    # --- writers ----------------------------------------------------------------------------
    def _send_response(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self._status = status
        self._sent_headers = True
        if self._entry is not None:
            # Log before the client can see the answer, so a test reading the log right after
            # a call always finds it.
            self._entry["status"] = status
            self.app.record(self._entry)
            self._entry = None
        self.end_headers()

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str], fault: Fault | None = None,
                    head: bool = False) -> None:
        headers = {"Content-Length": str(len(data)), **headers}
        self._send_response(status, headers)
        if not head:
            self._write_body([data], fault)

    def _send_json(self, status: int, payload: Any, fault: Fault | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self._send_bytes(status, data, {"Content-Type": "application/json"}, fault)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None,
                    fault: Fault | None = None) -> None:
        """Kaggle's error envelope (``error_envelope``); the emulator's own control routes answer flat."""
        if self._sent_headers:
            self.close_connection = True
            return
        nested = not self._control and self.app.backend.setting("error_envelope") == "nested"
        self._send_json_with(status, responses.error_body(status, message, nested), headers or {}, fault)

    def _send_reply(self, reply: Reply, fault: Fault | None, head: bool = False) -> None:
        """Write what the responses layer built; a ``stream`` goes out chunked and closes the connection."""
        if not reply.stream:
            self._send_response(reply.status, reply.headers)
            if not head:
                self._write_body(reply.body, fault)
            return
        self._send_response(reply.status, {**reply.headers, "Transfer-Encoding": "chunked", "Connection": "close"})
        self.close_connection = True
        body: Iterable[bytes] = reply.body
        for data in body:
            if not data:
                continue
            if not self._write_body([b"%x\r\n" % len(data) + data + b"\r\n"], fault):
                return
            self.wfile.flush()
        self._write_body([b"0\r\n\r\n"], fault)
        self.wfile.flush()

    def _send_json_with(self, status: int, payload: Any, headers: dict[str, str], fault: Fault | None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self._send_bytes(status, data, {"Content-Type": "application/json", **headers}, fault)

    def _write_body(self, chunks: Iterable[bytes], fault: Fault | None) -> bool:
        """Write chunks, honouring a fault's bandwidth limit and cut-off; False once cut off."""
        cut = fault.cut_after_bytes if fault else None
        rate = fault.bandwidth_bytes_per_s if fault else None
        t0 = time.monotonic()
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                piece_len = len(view) if not rate else max(1024, min(len(view), int(rate / 20)))
                if cut is not None:
                    piece_len = min(piece_len, cut - self._bytes)
                    if piece_len <= 0:
                        self.wfile.flush()
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(2)
                        return False
                if rate:  # a piece arrives once the link could have carried it
                    ahead = (self._bytes + piece_len) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                self.wfile.write(view[:piece_len])
                self._bytes += piece_len
                view = view[piece_len:]
        if cut is not None and self._bytes >= cut:
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return False
        return True

    # --- output files ------------------------------------------------------------------
    def _file(self, vid: int, name: str, query: str, head: bool) -> None:
        ctx = self._ctx(None)
        refusal = responses.check_file_url(ctx, vid, name, query)
        if refusal is not None:
            self._send_reply(refusal, None, head=head)
            return
        fault = self.app.faults.take(["files", f"file:{name}", f"file:{name.rsplit('/', 1)[-1]}"])
        if self._apply_fault(fault):
            return
        reply = responses.file_reply(ctx, vid, name, self.headers.get("Range"), self.headers.get("If-Range"))
        self._send_reply(reply, fault, head=head or reply.status == 416)


class EmulatorServer:
    """The emulator: ``EmulatorServer(data_dir).start()`` then ``.url``; ``.stop()`` kills running kernels."""

    def __init__(self, data_dir: Path | str, host: str = "127.0.0.1", port: int = 0,
                 config: dict[str, Any] | None = None, control_token: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        if not is_loopback(host) and not control_token:
            control_token = secrets.token_urlsafe(24)  # reachable from elsewhere: the control routes need it
        self.app = App(self.data_dir, config, control_token)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def backend(self) -> Backend:
        return self.app.backend

    @property
    def runner(self) -> Runner:
        return self.app.runner

    def _address(self) -> tuple[str, int]:
        """The (host, port) the socket listens on."""
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._httpd.server_address[:2]
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    @property
    def url(self) -> str:
        host, port = self._address()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        return f"http://{shown}:{port}"

    @property
    def control_token(self) -> str | None:
        return self.app.control_token

    @property
    def bound_address(self) -> str:
        """``host:port`` the socket really listens on (``0.0.0.0:8080`` means every interface)."""
        host, port = self._address()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def bind(self) -> None:
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), Handler)
            self._httpd.app = self.app
            self.app.url = self.url

    def start(self) -> EmulatorServer:
        """Bind and serve in a background thread."""
        self.bind()
        assert self._httpd is not None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kagglekit-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C / SIGTERM), then stop cleanly."""
        self.bind()
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._close()

    def _close(self) -> None:
        self.app.stopping.set()
        self.app.runner.stop()
        if self._httpd is not None:
            self._httpd.server_close()
            self._httpd = None
        with contextlib.suppress(Exception):
            self.app.backend.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the emulator reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo_env(url: str) -> dict[str, str]:
    """Environment variables that point the official CLI (via the sitecustomize shim) at ``url`` as the demo user."""
    return {
        "KAGGLE_USERNAME": C.DEMO_USERNAME,
        "KAGGLE_KEY": C.DEMO_KEY,
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "KAGGLE_EMULATOR_URL": url,
    }
