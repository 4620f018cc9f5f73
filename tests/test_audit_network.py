"""Issue 10, items 7, 8 and 9: reads are retried, a watch outlives network trouble, signed URLs are
refreshed as often as needed, and a failing file has one bounded retry budget.

Faults are injected through the emulator's public control route (POST /__emulator/faults);
kernels really run; the real client talks HTTP.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from kagglekit.api.client import KaggleApiClient
from kagglekit.api.transport import RetryPolicy
from kagglekit.credentials import demo_credentials
from kagglekit.download import pull_outputs
from kagglekit.errors import ApiError, DownloadError
from kagglekit.kernel_ref import KernelRef
from kagglekit.watch import watch
from tests.audit_helpers import run_cli
from tests.helpers import make_kernel

FAST = RetryPolicy(status_retries=2, connect_retries=1, read_retries=1, backoff_factor=0.01, backoff_max=0.02,
                   jitter=0.0)


def run_kernel(emulator: Any, tmp_path: Path, slug: str, script: str, *, wait: bool = True) -> None:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20)) as client:
        client.push(make_kernel(tmp_path / f"src-{slug}", slug, textwrap.dedent(script)))
    if wait:
        assert emulator.wait_for_status(C.DEMO_USERNAME, slug, timeout=60) == "COMPLETE"


def rpc_count(emulator: Any, method: str) -> int:
    return len([r for r in emulator.requests("rpc") if r["path"].endswith("/" + method)])


# --------------------------------------------------------------------------- item 7


def test_watch_survives_dropped_status_connections(as_demo: Any, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_kernel(as_demo, tmp_path, "slow-run", "import time\ntime.sleep(2)\nprint('done')\n", wait=False)
    as_demo.control("faults", {"target": "GetKernelSessionStatus", "times": 4, "drop": True})
    code, out, err = run_cli(["status", "--watch", "--interval", "0.2", "demo/slow-run"], capsys)
    assert code == 0, err
    assert "COMPLETE" in out


@pytest.mark.parametrize("method", ["GetKernelSessionStatus", "ListKernelSessionOutput"])
def test_a_truncated_read_answer_is_retried(as_demo: Any, tmp_path: Path, method: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run_kernel(as_demo, tmp_path, "cut-reads", "open('a.txt', 'w').write('x' * 100)\n")
    as_demo.control("faults", {"target": method, "times": 1, "cut_after_bytes": 10})
    if method == "GetKernelSessionStatus":
        code, _out, err = run_cli(["status", "demo/cut-reads"], capsys)
    else:
        code, _out, err = run_cli(["pull-outputs", "demo/cut-reads", "-o", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert rpc_count(as_demo, method) >= 2  # the cut answer, then the retry


def test_a_long_watch_outlives_minutes_of_outage_and_then_gives_up(emulator: Any, tmp_path: Path) -> None:
    """Fake clock: 8 minutes of 503s do not end a watch; a persistent outage ends it after the budget."""
    run_kernel(emulator, tmp_path, "outage-run", "print('ok')\n")
    now = [0.0]
    cleared = [False]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] > 8 * 60 and not cleared[0]:
            emulator.delete("faults")
            cleared[0] = True

    emulator.control("faults", {"target": "GetKernelSessionStatus", "times": -1, "status": 503})
    ref = KernelRef(C.DEMO_USERNAME, "outage-run", 1)
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as client:
        report = watch(client, ref, interval_s=30, sleep=sleep, clock=lambda: now[0])
        assert report.status == "COMPLETE" and cleared[0]

        emulator.control("faults", {"target": "GetKernelSessionStatus", "times": -1, "status": 503})
        now[0] = 0.0
        cleared[0] = True  # never cleared this time
        with pytest.raises(ApiError) as info:
            watch(client, ref, interval_s=30, sleep=sleep, clock=lambda: now[0])
    from kagglekit.watch import OUTAGE_BUDGET_S

    assert OUTAGE_BUDGET_S <= now[0] <= OUTAGE_BUDGET_S + 120
    assert "minutes" in info.value.message
    # The hint names the command as the user invoked it (the CLI's error boundary completes it).
    assert f"back: kagglekit --local status --watch {ref}" in (info.value.hint_for("kagglekit --local") or "")


# --------------------------------------------------------------------------- item 8


@pytest.mark.emulator_config({"url_expiry_seconds": 1})
def test_expired_signed_urls_are_refreshed_as_often_as_needed(as_demo: Any, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run_kernel(as_demo, tmp_path, "many-urls", """
        import random
        rng = random.Random(1)
        for i in range(12):
            open(f"f{i:02d}.bin", "wb").write(rng.randbytes(150_000))
    """)
    as_demo.control("faults", {"target": "files", "times": -1, "bandwidth_bytes_per_s": 200_000})
    as_demo.delete("requests")
    code, _out, err = run_cli(["pull-outputs", "demo/many-urls", "-j", "2", "-o", str(tmp_path / "o")], capsys)
    assert code == 0, err
    source = Path(as_demo.output_dir(C.DEMO_USERNAME, "many-urls"))
    for i in range(12):
        name = f"f{i:02d}.bin"
        assert hashlib.sha256((tmp_path / "o" / name).read_bytes()).digest() \
            == hashlib.sha256((source / name).read_bytes()).digest()
    expired = [r for r in as_demo.requests("file") if r["status"] == 403]
    listings = rpc_count(as_demo, "ListKernelSessionOutput")
    assert expired, "the test must make URLs expire"
    assert listings < 1 + len(expired)  # refreshed in batches: never one listing per expired URL


# --------------------------------------------------------------------------- item 9


def test_a_file_failing_forever_has_one_bounded_retry_budget(emulator: Any, tmp_path: Path) -> None:
    run_kernel(emulator, tmp_path, "always-503", "open('bad.bin', 'wb').write(b'x' * 1000)\n")
    emulator.control("faults", {"target": "file:bad.bin", "times": -1, "status": 503})
    emulator.delete("requests")
    waits: list[float] = []
    policy = RetryPolicy(sleep=waits.append)  # the default budget, without really waiting
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20)) as client, \
            pytest.raises(DownloadError):
        pull_outputs(client, f"{C.DEMO_USERNAME}/always-503", target=tmp_path / "o", progress=False, policy=policy)
    gets = [r for r in emulator.requests("file") if r["method"] == "GET"]
    assert len(gets) == policy.file_attempts  # not attempts x the HTTP adapter's own retries
    assert sum(waits) <= policy.file_max_wait
