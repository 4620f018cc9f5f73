"""The Kaggle client adapter, driven through kagglesdk's real code path over real HTTP.

Behaviour tests talk to the kagglekit emulator (a real server that runs kernels) and
inject faults there: 429 + Retry-After, dropped connections, HTML 5xx pages, latency
beyond the read timeout, expired signed URLs, bad credentials. Only the two quirks the
emulator cannot produce (a ``code`` >= 400 body under HTTP 200, a status-less body) use
a ten-line loopback server in this file.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kagglekit.api.client import KaggleApiClient, build_save_request
from kagglekit.api.transport import RetryPolicy, normalize_endpoint
from kagglekit.api.types import PushOutcomeUnknown
from kagglekit.constants import DEMO_KEY, DEMO_USERNAME, MSG_WEEKLY_QUOTA
from kagglekit.credentials import Credentials, Secret, demo_credentials
from kagglekit.errors import (
    ApiError,
    ConfigError,
    CredentialsError,
    EmulatorError,
    KaggleRefusedError,
    NotFoundError,
)
from kagglekit.kernel_ref import KernelRef
from kagglekit.logs import parse_log
from tests.helpers import reply_json

FAST = RetryPolicy(backoff_factor=0.05, backoff_max=0.2, jitter=0.05)

KERNEL_SCRIPT = textwrap.dedent(
    """\
    import os, sys, time
    print("hello from kagglekit")
    print("a warning line", file=sys.stderr)
    for i in range(5):
        print(f"step {i}", flush=True)
        time.sleep(0.05)
    os.makedirs("sub", exist_ok=True)
    with open("sub/result.txt", "w") as f:
        f.write("42\\n")
    with open("submission.csv", "w") as f:
        f.write("id,y\\n1,2\\n")
    """
)


def make_kernel(folder: Path, slug: str = "client-test-kernel", *, title: str | None = "Client Test Kernel",
                script: str = KERNEL_SCRIPT, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"id": f"{DEMO_USERNAME}/{slug}", "code_file": "main.py", "language": "python",
                            "kernel_type": "script", "enable_internet": False}
    if title is not None:
        meta["title"] = title
    meta.update(extra)
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    (folder / "main.py").write_text(script)
    return folder


def requests_log(emulator: Any) -> list[dict[str, Any]]:
    data = emulator.get("requests")
    return list(data["requests"] if isinstance(data, dict) else data)


def calls_to(emulator: Any, method: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The logged calls of ``method``. The server logs a call just after answering it, so wait for
    ``at_least`` entries (and a moment more for stragglers) before reading."""
    deadline = time.monotonic() + 3
    while True:
        calls = [r for r in requests_log(emulator) if str(r.get("path", "")).endswith(f"/{method}")]
        if len(calls) >= at_least or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    return [r for r in requests_log(emulator) if str(r.get("path", "")).endswith(f"/{method}")]


@pytest.fixture
def client(emulator: Any) -> Iterator[KaggleApiClient]:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c:
        yield c


# --- pure parts -------------------------------------------------------------------------


def test_kernel_ref_forms() -> None:
    assert KernelRef.parse("alice/my-model") == KernelRef("alice", "my-model")
    assert KernelRef.parse("alice/my-model/3") == KernelRef("alice", "my-model", 3)
    assert KernelRef.parse("alice/my-model/v3").version_label == "v3"
    assert KernelRef.parse("my-model", default_owner="bob") == KernelRef("bob", "my-model")
    assert KernelRef.parse("https://www.kaggle.com/code/alice/my-model") == KernelRef("alice", "my-model")
    assert str(KernelRef("alice", "my-model", 2)) == "alice/my-model/2"
    for bad in ("my-model", "alice/abc", "a/b/c/d", "/my-model", "alice/my-model/latest", ""):
        with pytest.raises(ConfigError):
            KernelRef.parse(bad)


def test_endpoint_must_be_a_base_url() -> None:
    assert normalize_endpoint("http://127.0.0.1:8765/") == "http://127.0.0.1:8765"
    for bad in ("127.0.0.1:8765", "ftp://host", "http://", "http://h/?x=1"):
        with pytest.raises(ConfigError):
            normalize_endpoint(bad)


def test_push_metadata_errors_name_the_field(tmp_path: Path) -> None:
    folder = make_kernel(tmp_path / "k", kernel_type="notebookish")
    with pytest.raises(ConfigError) as info:
        build_save_request(folder)
    assert "'kernel_type'" in info.value.message and "kernel-metadata.json" in info.value.message
    make_kernel(folder, is_private="yes")
    with pytest.raises(ConfigError, match="is_private"):
        build_save_request(folder)
    make_kernel(folder, slug="abc")
    with pytest.raises(ConfigError, match="shorter than 5"):
        build_save_request(folder)


OFFICIAL_PUSH = """
import json, sys
from kaggle.api.kaggle_api_extended import KaggleApi
import kagglesdk.kaggle_http_client as h

class Captured(Exception):
    pass

def capture(self, service, method, request, response_type):
    print(json.dumps({"method": method, "body": request.to_dict()}))
    raise Captured()

h.KaggleHttpClient.call = capture
api = KaggleApi()
api.authenticate()
try:
    api.kernels_push(sys.argv[1], sys.argv[2] or None, sys.argv[3] or None, sys.argv[4] == "1")
except Captured:
    pass
"""


@pytest.mark.parametrize("kind", ["script", "notebook"])
def test_push_request_is_built_exactly_like_kaggle_kernels_push(tmp_path: Path, kind: str) -> None:
    """Same folder through the official kaggle 2.2.5 builder (in a subprocess) and ours: same SaveKernel body."""
    folder = tmp_path / "k"
    extra: dict[str, Any] = {"dataset_sources": ["someone/some-data"], "keywords": ["gpu"],
                             "machine_shape": "NvidiaTeslaT4", "is_private": "false", "docker_image": ""}
    if kind == "notebook":
        notebook = {"cells": [{"cell_type": "code", "source": ["import os\n", "print(1)"], "outputs": [{"x": 1}],
                               "execution_count": 3, "metadata": {}},
                              {"cell_type": "markdown", "source": ["# title"], "metadata": {}}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        make_kernel(folder, script=json.dumps(notebook, indent=1), kernel_type="notebook", **extra)
        (folder / "main.ipynb").write_text((folder / "main.py").read_text())
        meta = json.loads((folder / "kernel-metadata.json").read_text())
        meta["code_file"] = "main.ipynb"
        (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    else:
        make_kernel(folder, **extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env.update({"KAGGLE_USERNAME": DEMO_USERNAME, "KAGGLE_KEY": DEMO_KEY, "HOME": str(tmp_path)})
    for timeout, acc, no_run in (("", "", "0"), ("3600", "TpuV5E8", "1")):
        out = subprocess.run([sys.executable, "-c", OFFICIAL_PUSH, str(folder), timeout, acc, no_run],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        official = json.loads(out.stdout.strip().splitlines()[-1])
        ours, _, _ = build_save_request(folder, session_timeout=int(timeout) if timeout else None,
                                        accelerator=acc or None, no_run=no_run == "1")
        assert official["method"] == "SaveKernel"
        assert ours.to_dict() == official["body"]


def test_wiring_guard_fails_if_kagglesdk_stops_honouring_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate an upgrade whose URL builder ignores ``_endpoint``: credentials must not go elsewhere."""
    from kagglesdk.kaggle_http_client import KaggleHttpClient

    monkeypatch.setattr(KaggleHttpClient, "_get_request_url",
                        lambda self, service, method: f"https://api.kaggle.com/v1/{service}/{method}")
    with pytest.raises(ApiError, match="kagglesdk"):
        KaggleApiClient(demo_credentials(), endpoint="http://127.0.0.1:9")


# --- against the emulator ----------------------------------------------------------------


def test_round_trip_push_status_outputs_logs_quota(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    folder = make_kernel(tmp_path / "k")
    pushed = client.push(folder)
    assert pushed.ref == KernelRef(DEMO_USERNAME, "client-test-kernel", 1)
    assert pushed.version == 1 and pushed.kernel_id
    assert emulator.wait_for_status(DEMO_USERNAME, "client-test-kernel", timeout=60) == "COMPLETE"

    status = client.status(pushed.ref)
    assert (status.status, status.is_final, status.failure_message) == ("COMPLETE", True, None)

    listing = client.list_outputs(pushed.ref, page_size=1)  # one file a page: paging must collect all
    names = {f.name for f in listing.files}
    assert {"sub/result.txt", "submission.csv"} <= names
    records = parse_log(listing.log)
    assert any("hello from kagglekit" in r.data for r in records)
    assert any(r.stream == "stderr" and "a warning line" in r.data for r in records)
    result = next(f for f in listing.files if f.name == "sub/result.txt")
    with client.open_output(result) as response:
        assert response.content == b"42\n"
        assert "Authorization" not in response.request.headers  # signed URLs get no Kaggle auth

    assert parse_log(client.get_log(pushed.ref)) == records
    assert list(client.stream_log(pushed.ref)) == records

    info = client.get_kernel(pushed.ref.without_version())
    assert (info.title, info.current_version, info.language) == ("Client Test Kernel", 1, "python")
    assert info.source == KERNEL_SCRIPT
    assert pushed.ref.without_version() in [k.ref for k in client.list_mine()]

    quota = client.quota()
    assert quota.gpu.reported and quota.gpu.total_seconds > 0
    assert quota.gpu.remaining_seconds == quota.gpu.total_seconds - quota.gpu.used_seconds

    # The endpoint override: every RPC reached this server under /v1/, Kaggle's PROD layout.
    paths = {r["path"] for r in requests_log(emulator)}
    for method in ("SaveKernel", "GetKernelSessionStatus", "ListKernelSessionOutput", "GetKernel",
                   "ListKernels", "GetAcceleratorQuotaStatistics"):
        assert f"/v1/kernels.KernelsApiService/{method}" in paths

    client.delete(pushed.ref.without_version())
    with pytest.raises(NotFoundError) as info_nf:
        client.get_kernel(pushed.ref.without_version())
    assert "slug from the kernel's URL" in (info_nf.value.hint or "")


def test_429_with_retry_after_is_waited_for_then_succeeds(emulator: Any, client: KaggleApiClient,
                                                          tmp_path: Path) -> None:
    pushed = client.push(make_kernel(tmp_path / "k"))
    emulator.wait_until_started(DEMO_USERNAME, "client-test-kernel")
    emulator.control("faults", {"target": "GetKernelSessionStatus", "status": 429, "retry_after": 2, "times": 1})
    started = time.monotonic()
    status = client.status(pushed.ref)
    waited = time.monotonic() - started
    assert status.status in ("QUEUED", "RUNNING", "COMPLETE")
    assert waited >= 2.0  # FAST backoff alone would be < 0.3 s: the Retry-After was honoured
    assert [r["status"] for r in calls_to(emulator, "GetKernelSessionStatus", 2)] == [429, 200]


def test_rate_limit_that_never_ends_becomes_api_error(emulator: Any, client: KaggleApiClient) -> None:
    emulator.control("faults", {"target": "GetAcceleratorQuotaStatistics", "status": 429, "times": 20})
    with pytest.raises(ApiError) as info:
        client.quota()
    assert "rate-limiting" in info.value.message and f"after {FAST.status_retries + 1} attempts" in info.value.message
    assert len(calls_to(emulator, "GetAcceleratorQuotaStatistics", FAST.status_retries + 1)) \
        == FAST.status_retries + 1


def test_push_refused_with_200_error_raises_kaggles_message(emulator: Any, client: KaggleApiClient,
                                                           tmp_path: Path) -> None:
    emulator.control("usage", {"username": DEMO_USERNAME, "kind": "gpu", "seconds": 400 * 3600})
    quota = client.quota()
    folder = make_kernel(tmp_path / "k", machine_shape="NvidiaTeslaT4")
    with pytest.raises(KaggleRefusedError) as info:
        client.push(folder)
    expected = MSG_WEEKLY_QUOTA.format(kind="GPU", hours=quota.gpu.total_seconds / 3600)
    assert expected in info.value.message
    assert "quota" in (info.value.hint or "")
    assert [r["status"] for r in calls_to(emulator, "SaveKernel")] == [200]


def test_dropped_connection_is_retried_for_idempotent_calls(emulator: Any, client: KaggleApiClient,
                                                            tmp_path: Path) -> None:
    pushed = client.push(make_kernel(tmp_path / "k"))
    emulator.wait_until_started(DEMO_USERNAME, "client-test-kernel")  # past a new private kernel's 403
    emulator.control("faults", {"target": "GetKernel", "drop": True, "times": 2})
    assert client.get_kernel(pushed.ref.without_version()).title == "Client Test Kernel"
    assert len(calls_to(emulator, "GetKernel", 3)) == 3


def test_push_is_never_blindly_retried(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """A dropped SaveKernel may have been accepted: exactly one attempt, and the error says so."""
    folder = make_kernel(tmp_path / "k")
    emulator.control("faults", {"target": "SaveKernel", "drop": True, "times": 1})
    with pytest.raises(PushOutcomeUnknown) as info:  # its type, not its words, tells push() to look for it
        client.push(folder)
    assert "may or may not have been accepted" in (info.value.hint or "")
    emulator.control("faults", {"target": "SaveKernel", "status": 503, "times": 1})
    with pytest.raises(PushOutcomeUnknown) as info:
        client.push(folder)
    assert info.value.http_status == 503
    assert len(calls_to(emulator, "SaveKernel", 2)) == 2


def test_push_is_retried_after_429(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """A 429 is an explicit refusal before any work: retrying the push is safe."""
    emulator.control("faults", {"target": "SaveKernel", "status": 429, "retry_after": 0.2, "times": 1})
    assert client.push(make_kernel(tmp_path / "k")).version == 1
    assert [r["status"] for r in calls_to(emulator, "SaveKernel", 2)] == [429, 200]


def test_html_error_pages_are_retried(emulator: Any, client: KaggleApiClient) -> None:
    emulator.control("faults", {"target": "GetAcceleratorQuotaStatistics", "html": True, "times": 2})
    assert client.quota().gpu.reported
    assert [r["status"] for r in calls_to(emulator, "GetAcceleratorQuotaStatistics", 3)] == [502, 502, 200]


def test_read_timeout_is_an_api_error_not_a_hang(emulator: Any) -> None:
    emulator.control("faults", {"target": "GetAcceleratorQuotaStatistics", "latency_ms": 1500, "times": 2})
    policy = RetryPolicy(read_retries=1, backoff_factor=0.05, jitter=0.0)
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(2, 0.3), retry=policy) as slow:
        started = time.monotonic()
        with pytest.raises(ApiError) as info:
            slow.quota()
        elapsed = time.monotonic() - started
    assert "did not answer GetAcceleratorQuotaStatistics within 0.3 s" in info.value.message
    assert elapsed < 1.4  # two 0.3 s reads, not the 1.5 s latency


def test_expired_file_url_gives_a_clear_error_and_relisting_fixes_it(emulator: Any, client: KaggleApiClient,
                                                                     tmp_path: Path) -> None:
    pushed = client.push(make_kernel(tmp_path / "k"))
    emulator.wait_for_status(DEMO_USERNAME, "client-test-kernel", timeout=60)
    old = next(f for f in client.list_outputs(pushed.ref).files if f.name == "submission.csv")
    emulator.control("clock", {"offset_seconds": 2 * 86400})
    with pytest.raises(NotFoundError) as info:
        client.open_output(old)
    assert "submission.csv" in info.value.message and "expire" in info.value.message
    assert "List the outputs again" in (info.value.hint or "")
    fresh = next(f for f in client.list_outputs(pushed.ref).files if f.name == "submission.csv")
    with client.open_output(fresh) as response:
        assert response.content == b"id,y\n1,2\n"


def test_unreachable_server_is_an_api_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    policy = RetryPolicy(connect_retries=1, backoff_factor=0.05, jitter=0.0)
    with KaggleApiClient(demo_credentials(), endpoint=f"http://127.0.0.1:{port}", retry=policy) as c:
        with pytest.raises(ApiError, match="connection refused"):
            c.quota()
        with pytest.raises(ApiError) as info:
            c.push(make_kernel(tmp_path / "k"))
    assert "may or may not" not in (info.value.hint or "")  # a refused connection never carried the push
    assert not isinstance(info.value, PushOutcomeUnknown)


def test_bad_credentials_are_a_credentials_error_naming_the_source_not_the_key(emulator: Any) -> None:
    wrong = Credentials("key", Secret("WRONGKEY-do-not-print-0123"), "/home/x/.kaggle/kaggle.json",
                        username=DEMO_USERNAME)
    with KaggleApiClient(wrong, endpoint=emulator.url, retry=FAST) as bad, \
            pytest.raises(CredentialsError) as info:
        bad.status(KernelRef(DEMO_USERNAME, "whatever-kernel"))
    text = f"{info.value.message} {info.value.hint}"
    assert "/home/x/.kaggle/kaggle.json" in text and "HTTP 401" in text
    assert "WRONGKEY" not in text
    assert info.value.exit_code == 4


def test_stream_log_reconnects_without_duplicates(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    pushed = client.push(make_kernel(tmp_path / "k"))
    emulator.wait_until_started(DEMO_USERNAME, "client-test-kernel")
    emulator.control("faults", {"target": "logs", "cut_after_bytes": 120, "times": 2})
    streamed = list(client.stream_log(pushed.ref, reconnect_delay=0.05))
    emulator.wait_for_status(DEMO_USERNAME, "client-test-kernel", timeout=60)
    final = parse_log(client.get_log(pushed.ref))
    assert streamed == final
    assert [r.data for r in streamed].count("step 2\n") == 1
    logs_gets = [r for r in requests_log(emulator) if "/kernels/logs/stream/" in str(r.get("path"))]
    assert len(logs_gets) >= 3  # two cut streams, then a whole one


def test_verbose_trace_redacts_every_secret(emulator: Any, tmp_path: Path) -> None:
    lines: list[str] = []
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, trace=lines.append, retry=FAST) as traced:
        pushed = traced.push(make_kernel(tmp_path / "k"))
        emulator.wait_for_status(DEMO_USERNAME, "client-test-kernel", timeout=60)
        traced.list_outputs(pushed.ref)
    text = "\n".join(lines)
    basic = base64.b64encode(f"{DEMO_USERNAME}:{DEMO_KEY}".encode()).decode()
    assert "SaveKernel" in text and "ListKernelSessionOutput" in text  # it did trace
    assert "Authorization: <redacted>" in text
    assert DEMO_KEY not in text and basic not in text
    assert "sig=<redacted>" in text  # signed output URLs are capabilities too


def test_open_client_modes(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kagglekit.connection import open_client

    with pytest.raises(CredentialsError):
        open_client(local=False, endpoint=emulator.url, verbose=False)
    monkeypatch.setenv("KAGGLE_USERNAME", DEMO_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", DEMO_KEY)
    monkeypatch.setenv("KAGGLEKIT_ENDPOINT", emulator.url)
    with open_client(local=False, endpoint=None, verbose=False) as c:
        assert c.endpoint == emulator.url
        assert c.quota().gpu.reported
    with pytest.raises(ConfigError):
        open_client(local=True, endpoint=emulator.url, verbose=False)


def test_open_client_local_uses_the_demo_account_never_the_users_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from kagglekit.connection import open_client

    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_real_user_token")
    try:
        client = open_client(local=True, endpoint=None, verbose=False)
    except EmulatorError:
        pytest.skip("kagglekit.local (the background emulator) is not available")
    try:
        with client:
            assert client.credentials == demo_credentials()
            assert client.username == DEMO_USERNAME
            assert client.quota().gpu.reported  # the emulator accepted the demo key
    finally:
        from kagglekit import local

        local.stop()  # the background emulator lives in this test's isolated KAGGLEKIT_HOME


# --- quirks the emulator cannot produce: a tiny loopback server --------------------------


class _QuirkHandler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, dict[str, Any]]]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.answers[self.path.rsplit("/", 1)[-1]]
        data = json.dumps(body).encode()
        reply_json(self, status, data)

    def log_message(self, *args: Any) -> None:
        pass


def test_code_in_200_body_and_missing_status(tmp_path: Path) -> None:
    _QuirkHandler.answers = {
        "GetKernelSessionStatus": (200, {}),  # proto3 omits the default: QUEUED
        "GetKernel": (200, {"code": 403, "message": "Permission 'kernels.get' was denied"}),
        "ListKernels": (200, {"code": 500, "message": "Internal error"}),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuirkHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with KaggleApiClient(demo_credentials(), endpoint=url, retry=FAST) as c:
            ref = KernelRef("someone", "private-kernel")
            assert c.status(ref).status == "QUEUED"
            with pytest.raises(NotFoundError) as info:
                c.get_kernel(ref)
            assert "Permission 'kernels.get' was denied" in info.value.message
            assert "private kernel of another account" in (info.value.hint or "")
            with pytest.raises(ApiError, match="HTTP 500: Internal error"):
                c.list_mine()
    finally:
        server.shutdown()
        server.server_close()


def test_kernel_ref_reads_slug_slash_number_as_a_version_of_my_kernel() -> None:
    assert KernelRef.parse("my-kernel/2", default_owner="me") == KernelRef("me", "my-kernel", 2)
    assert KernelRef.parse("my-kernel/v3", default_owner="me") == KernelRef("me", "my-kernel", 3)
    assert KernelRef.parse("alice/my-kernel", default_owner="me") == KernelRef("alice", "my-kernel", None)
    assert KernelRef.parse("alice/my-kernel/4", default_owner="me") == KernelRef("alice", "my-kernel", 4)


def test_retry_backoff_env_knob_shortens_the_waits_not_the_budget() -> None:
    """KAGGLEKIT_RETRY_BACKOFF (for tests over the CLI) changes how long retries wait, never how many there are."""
    from kagglekit.api.transport import env_retry

    assert env_retry({}) == RetryPolicy()
    quick = env_retry({"KAGGLEKIT_RETRY_BACKOFF": "0.01"})
    assert (quick.backoff_factor, quick.jitter) == (0.01, 0.01)
    assert (quick.status_retries, quick.read_retries, quick.connect_retries) == (5, 2, 3)
    assert quick.backoff(5) <= 0.17
    for bad in ("soon", "-1", "31"):
        with pytest.raises(ConfigError, match="KAGGLEKIT_RETRY_BACKOFF"):
            env_retry({"KAGGLEKIT_RETRY_BACKOFF": bad})
