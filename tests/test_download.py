"""pull-outputs end to end: the real client against the emulator, which really ran the kernel.

Each fault is injected in the emulator (or, for a malicious listing, by a rewriting proxy in
front of it); what is asserted is what lands on disk (bytes, sha256, no half files) and what
went over the wire (the emulator's request log).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kagglekit.api.client import KaggleApiClient
from kagglekit.api.transport import RetryPolicy
from kagglekit.constants import DEMO_KEY, DEMO_USERNAME
from kagglekit.credentials import demo_credentials
from kagglekit.download import (
    CHUNK_SIZE,
    bookkeeping_dir,
    matches_any,
    part_paths,
    pull_outputs,
    pull_state_path,
    safe_destination,
)
from kagglekit.errors import DownloadError, RunNotFinishedError, UnsafePathError
from kagglekit.ledger import Ledger
from tests.helpers import make_kernel, reply_json

FAST = RetryPolicy(status_retries=3, connect_retries=2, read_retries=2, backoff_factor=0.01, backoff_max=0.05,
                   jitter=0.0)
QUICK_PULL = RetryPolicy(file_attempts=3, backoff_factor=0.01, backoff_max=0.05, jitter=0.0)

OUTPUTS_SCRIPT = textwrap.dedent(
    """
    import json, os, random, sys, time
    rng = random.Random(7)
    def write(name, size):
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "wb") as f:
            f.write(rng.randbytes(size))
    write("big.bin", {big})
    write("model.pt", 3000)
    write("ckpt/epoch1.ckpt", 2000)
    write("checkpoint_3.bin", 1000)
    write("sub/dir/result.txt", 10)
    with open("notes.txt", "w") as f:
        f.write("not a checkpoint\\n")
    os.makedirs("kagglekit", exist_ok=True)
    with open("kagglekit/run.json", "w") as f:
        json.dump({{"schema": 1, "mode": "full", "status": "complete",
                   "started_at": "2026-11-20T10:00:00.000000Z", "ended_at": "2026-11-20T10:09:30.500000Z",
                   "duration_s": 570.5, "peak_working_bytes": 123456789, "peak_rss_bytes": 2345678}}, f)
    print("hello from the kernel")
    for i in range(3):
        sys.stdout.write(f"\\rprogress {{i}}/3")
    sys.stdout.write("\\n")
    print("a warning line", file=sys.stderr)
    """
)

MANY_FILES_SCRIPT = textwrap.dedent(
    """
    import os
    os.makedirs("many", exist_ok=True)
    for i in range(1000):
        with open(f"many/f_{i:04d}.txt", "w") as f:
            f.write(str(i))
    """
)


@pytest.fixture
def client(emulator: Any) -> Iterator[KaggleApiClient]:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20), retry=FAST) as c:
        yield c


def run_kernel(emulator: Any, client: KaggleApiClient, tmp_path: Path, slug: str, script: str) -> int:
    pushed = client.push(make_kernel(tmp_path / f"src-{slug}", slug, script))
    assert emulator.wait_for_status(DEMO_USERNAME, slug, pushed.version, timeout=60) == "COMPLETE"
    assert pushed.version is not None
    return pushed.version


@pytest.fixture
def outputs_kernel(emulator: Any, client: KaggleApiClient, tmp_path: Path) -> str:
    run_kernel(emulator, client, tmp_path, "outputs-kernel", OUTPUTS_SCRIPT.format(big=6_000_000))
    return f"{DEMO_USERNAME}/outputs-kernel"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """{relative name: sha256} of the regular files under root (kagglekit's own files left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".kagglekit") and rel not in ("log.txt", "outputs-kernel.log"):
            out[rel] = sha(p)
    return out


def file_gets(emulator: Any) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("file") if r["method"] == "GET"]


def clear_requests(emulator: Any) -> None:
    emulator._request("DELETE", "/__emulator/requests")


# --------------------------------------------------------------------------- the happy path


def test_pull_lands_every_file_byte_identical_in_a_version_folder_and_a_second_pull_sends_no_gets(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = Ledger()
    summary = pull_outputs(client, outputs_kernel, ledger=ledger, progress=False)

    target = tmp_path / "outputs" / "outputs-kernel" / "v1"
    assert summary.target == target and summary.version == 1
    source = emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 1)
    assert tree(target) == tree(source)  # every file, same bytes
    assert summary.files == summary.listed == len(tree(source)) and summary.skipped == 0
    assert summary.bytes == sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    assert not [p for p in target.rglob("*.part")]
    line = summary.describe()  # decimal units, like the progress bar (tqdm, divisor 1000)
    assert f"({summary.bytes / 1e6:.1f} MB in" in line and "iB" not in line

    # The log: raw as Kaggle sends it, and readable (progress bar collapsed, stderr marked).
    raw = (target / "outputs-kernel.log").read_text()
    assert raw == client.list_outputs(client.ref(outputs_kernel)).log
    text = (target / "log.txt").read_text()
    assert "hello from the kernel" in text and "progress 2/3" in text and "progress 0/3" not in text
    assert "! a warning line" in text

    # The manifest knows every file's size and hash.
    manifest = json.loads(pull_state_path(target).read_text())
    assert {n: e["sha256"] for n, e in manifest["files"].items()} == tree(source)

    # The ledger learnt the run's exact times, peaks and output size from kagglekit/run.json.
    rec = ledger.get(client.account, outputs_kernel, 1)
    assert rec is not None
    assert (rec.duration_s, rec.duration_source) == (570.5, "run.json")
    assert (rec.peak_working_bytes, rec.peak_rss_bytes, rec.mode) == (123456789, 2345678, "full")
    assert (rec.output_files, rec.output_bytes) == (summary.listed, summary.total_bytes)

    # Second pull: nothing new, so not one request for a file (not even a HEAD).
    clear_requests(emulator)
    again = pull_outputs(client, outputs_kernel, ledger=ledger, progress=False)
    assert (again.files, again.bytes, again.skipped) == (0, 0, summary.listed)
    assert emulator.requests("file") == []

    # A file deleted locally is fetched again, alone; --force fetches everything.
    (target / "model.pt").unlink()
    clear_requests(emulator)
    third = pull_outputs(client, outputs_kernel, progress=False)
    assert third.files == 1 and [r["file"] for r in file_gets(emulator)] == ["model.pt"]
    clear_requests(emulator)
    forced = pull_outputs(client, outputs_kernel, force=True, progress=False)
    assert forced.files == summary.listed and len(file_gets(emulator)) == summary.listed
    assert tree(target) == tree(source)


def test_a_folder_reused_for_another_version_is_not_taken_as_complete(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path) -> None:
    """Same names and sizes, other bytes: v2 pulled into v1's folder must download everything again."""
    target = tmp_path / "same"
    first = pull_outputs(client, outputs_kernel + "/1", target=target, progress=False)
    script = OUTPUTS_SCRIPT.format(big=6_000_000).replace("Random(7)", "Random(8)")
    run_kernel(emulator, client, tmp_path, "outputs-kernel", script)
    warned: list[str] = []
    second = pull_outputs(client, outputs_kernel + "/2", target=target, progress=False, warn=warned.append)
    assert second.files == first.files and second.skipped == 0
    assert tree(target) == tree(emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 2))
    assert any("v1" in w for w in warned)


def test_checkpoints_include_and_exclude_select_files(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "ck"
    summary = pull_outputs(client, outputs_kernel + "/1", target=target, checkpoints=True, progress=True)
    assert "4/4 files" in capsys.readouterr().err  # the progress bar (forced on: no terminal here)
    got = set(tree(target))
    # run.json always comes along: it is what the ledger reads the run's times from.
    assert got == {"model.pt", "ckpt/epoch1.ckpt", "checkpoint_3.bin", "kagglekit/run.json"}
    assert summary.listed == 7 and summary.selected == 4

    only = pull_outputs(client, outputs_kernel, target=tmp_path / "inc", include=["sub/*", "*.txt"],
                        exclude=["notes*"], progress=False)
    assert set(tree(only.target)) == {"sub/dir/result.txt", "kagglekit/run.json"}


# --------------------------------------------------------------------------- faults


def test_a_download_cut_mid_file_is_resumed_with_range_and_ends_byte_identical(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path) -> None:
    emulator.control("faults", {"target": "file:big.bin", "times": 1, "cut_after_bytes": 2_500_000})
    clear_requests(emulator)
    summary = pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False)
    source = emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 1)
    assert sha(tmp_path / "t" / "big.bin") == sha(source / "big.bin")
    gets = [r for r in file_gets(emulator) if r["file"] == "big.bin"]
    assert [r["status"] for r in gets] == [200, 206]  # the second asked only for the rest
    # What was kept is resumed: at most the one chunk in flight when the line dropped is sent again.
    assert gets[0]["bytes"] == 2_500_000 and 6_000_000 - 2_500_000 <= gets[1]["bytes"] < 6_000_000 - 2_500_000 + CHUNK_SIZE
    assert summary.bytes == sum(p.stat().st_size for p in source.rglob("*") if p.is_file())


def _pull_with_a_slow_big_file(emulator: Any, client: KaggleApiClient, tmp_path: Path,
                               *options: str) -> tuple[Path, dict[str, str], list[str]]:
    """A finished kernel whose 4 MB big.bin comes at 400 kB/s once, and the `pull-outputs` command line (with its
    environment and target) to kill and run again."""
    run_kernel(emulator, client, tmp_path, "outputs-kernel", OUTPUTS_SCRIPT.format(big=4_000_000))
    emulator.control("faults", {"target": "file:big.bin", "times": 1, "bandwidth_bytes_per_s": 400_000})
    target = tmp_path / "killed"
    env = {**os.environ, "KAGGLE_USERNAME": DEMO_USERNAME, "KAGGLE_KEY": DEMO_KEY}
    cmd = [sys.executable, "-m", "kagglekit", "--endpoint", emulator.url, "pull-outputs",
           f"{DEMO_USERNAME}/outputs-kernel", "-o", str(target), *options]
    return target, env, cmd


def test_an_interrupted_pull_leaves_no_half_file_and_running_it_again_resumes(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """Kill `kagglekit pull-outputs` (SIGKILL) mid-file: only a .part is left; the rerun finishes it."""
    target, env, cmd = _pull_with_a_slow_big_file(emulator, client, tmp_path, "--include", "big.bin")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part, _ = part_paths(target, "big.bin")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 400_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = part.stat().st_size
    assert 0 < partial < 4_000_000
    assert not (target / "big.bin").exists()  # never a half file under the final name

    rerun_started = time.time()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    source = emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 1)
    assert sha(target / "big.bin") == sha(source / "big.bin")
    # (the killed process's own GET is logged when the server notices the dead socket: skip it)
    gets = [r for r in file_gets(emulator) if r["file"] == "big.bin" and r["ts"] >= rerun_started]
    assert [r["status"] for r in gets] == [206] and gets[0]["bytes"] == 4_000_000 - partial
    assert not part.exists()


def test_files_a_killed_pull_had_finished_are_not_fetched_again(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """SIGKILL while one file is still coming, the others already in place: the rerun fetches only the rest
    (each finished file is journaled the moment it lands; the pull state itself is saved only now and then)."""
    target, env, cmd = _pull_with_a_slow_big_file(emulator, client, tmp_path, "--jobs", "4")
    small = ["model.pt", "ckpt/epoch1.ckpt", "checkpoint_3.bin", "sub/dir/result.txt", "notes.txt", "kagglekit/run.json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part, _ = part_paths(target, "big.bin")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (all((target / n).is_file() for n in small)
                                               and part.exists()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert all((target / n).is_file() for n in small) and not (target / "big.bin").exists()
    saved = json.loads(pull_state_path(target).read_text())["files"] if pull_state_path(target).exists() else {}
    assert not set(small) & set(saved)  # killed before the periodic save of the pull state had them

    rerun_started = time.time()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    source = emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 1)
    assert tree(target) == tree(source)
    gets = [r for r in file_gets(emulator) if r["ts"] >= rerun_started]
    assert [r["file"] for r in gets] == ["big.bin"]  # nothing finished comes again
    state = json.loads(pull_state_path(target).read_text())
    assert sorted(state["files"]) == sorted([*small, "big.bin"])
    assert all(e["final"] is True and e["size"] == (source / n).stat().st_size for n, e in state["files"].items())


def test_429_retry_after_is_honoured(emulator: Any, client: KaggleApiClient, outputs_kernel: str,
                                     tmp_path: Path) -> None:
    emulator.control("faults", {"target": "file:model.pt", "times": 1, "status": 429, "retry_after": 1})
    clear_requests(emulator)
    pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False)
    gets = [r for r in file_gets(emulator) if r["file"] == "model.pt"]
    assert [r["status"] for r in gets] == [429, 200]
    assert gets[1]["ts"] - gets[0]["ts"] >= 0.95  # waited as told, not the fast backoff
    assert (tmp_path / "t" / "model.pt").stat().st_size == 3000


def test_503_html_error_pages_are_retried(emulator: Any, client: KaggleApiClient, outputs_kernel: str,
                                          tmp_path: Path) -> None:
    emulator.control("faults", {"target": "file:model.pt", "times": 2, "status": 503, "html": True})
    clear_requests(emulator)
    pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False)
    gets = [r for r in file_gets(emulator) if r["file"] == "model.pt"]
    assert [r["status"] for r in gets] == [503, 503, 200]
    source = emulator.output_dir(DEMO_USERNAME, "outputs-kernel", 1)
    assert sha(tmp_path / "t" / "model.pt") == sha(source / "model.pt")


def test_a_file_that_keeps_failing_fails_alone_and_the_rest_is_kept(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path) -> None:
    emulator.control("faults", {"target": "file:model.pt", "times": -1, "drop": True})
    with pytest.raises(DownloadError) as info:
        pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False, policy=QUICK_PULL)
    assert "model.pt" in info.value.message and info.value.exit_code == 10
    assert "again" in (info.value.hint or "")
    assert not (tmp_path / "t" / "model.pt").exists()
    assert (tmp_path / "t" / "big.bin").stat().st_size == 6_000_000
    # Once the server behaves, the rerun fetches only the missing file.
    emulator._request("DELETE", "/__emulator/faults")
    clear_requests(emulator)
    summary = pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False)
    assert summary.files == 1 and [r["file"] for r in file_gets(emulator)] == ["model.pt"]


def test_a_1000_file_output_is_listed_through_every_page(emulator: Any, client: KaggleApiClient,
                                                         tmp_path: Path) -> None:
    run_kernel(emulator, client, tmp_path, "many-files", MANY_FILES_SCRIPT)
    clear_requests(emulator)
    summary = pull_outputs(client, f"{DEMO_USERNAME}/many-files", target=tmp_path / "m",
                           include=["many/f_09*"], progress=False)
    lists = [r for r in emulator.requests("rpc") if r["path"].endswith("/ListKernelSessionOutput")]
    assert summary.listed == 1000 and len(lists) == 10  # 100 a page
    assert sorted(p.name for p in (tmp_path / "m" / "many").iterdir()) == [f"f_{i:04d}.txt"
                                                                          for i in range(900, 1000)]
    assert len(file_gets(emulator)) == 100


def test_a_running_newest_version_is_refused_naming_the_newest_finished_one(
        emulator: Any, client: KaggleApiClient, outputs_kernel: str, tmp_path: Path) -> None:
    """Kaggle lists nothing for a running version: the pull says so (exit 17) and names v1, nothing written."""
    pushed = client.push(make_kernel(tmp_path / "slow", "outputs-kernel", "import time\ntime.sleep(60)\n"))
    emulator.wait_for_status(DEMO_USERNAME, "outputs-kernel", pushed.version, statuses={"RUNNING"})
    try:
        with pytest.raises(RunNotFinishedError) as info:
            pull_outputs(client, outputs_kernel, target=tmp_path / "t", progress=False)
    finally:
        emulator.control("cancel", {"owner": DEMO_USERNAME, "slug": "outputs-kernel"})
    assert info.value.exit_code == 17
    assert "v2 is still running" in info.value.message and "pull-outputs demo/outputs-kernel/1" in info.value.message
    assert not (tmp_path / "t").exists()


MID_RUN_SCRIPT = textwrap.dedent(
    """
    import json, os, time
    def manifest(status, pad):  # same size both times: a size check alone cannot tell them apart
        os.makedirs("kagglekit", exist_ok=True)
        with open("kagglekit/.run.json.tmp", "w") as f:
            json.dump({{"schema": 1, "status": status, "pad": pad}}, f)
        os.replace("kagglekit/.run.json.tmp", "kagglekit/run.json")
    with open("out.bin", "wb") as f:
        f.write(b"A" * 5)
    with open("scratch.tmp", "wb") as f:
        f.write(b"x" * 3)
    manifest("running", "x")
    time.sleep({sleep})
    with open("out.bin", "wb") as f:
        f.write(b"B" * 5)
    os.remove("scratch.tmp")
    manifest("complete", "")
    """
)


@pytest.mark.emulator_config({"list_outputs_while_running": True})  # a server that lists files during a run
def test_a_pull_while_running_is_not_trusted_by_the_pull_after_the_run_ends(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """On a server that lists outputs while the run goes on (Kaggle does not: the emulator's switch),
    out.bin is rewritten with the same size after a mid-run pull: the pull after the run finished
    must fetch it (and run.json) again, drop the scratch file the run deleted, and then trust it all."""
    pushed = client.push(make_kernel(tmp_path / "src", "mid-run-kernel", MID_RUN_SCRIPT.format(sleep=2.0)))
    assert pushed.version is not None
    emulator.wait_for_status(DEMO_USERNAME, "mid-run-kernel", pushed.version, statuses={"RUNNING"})
    live = emulator.output_dir(DEMO_USERNAME, "mid-run-kernel", pushed.version)
    deadline = time.monotonic() + 30
    while not (live / "kagglekit" / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    ledger, target = Ledger(), tmp_path / "t"
    seen: list[str] = []
    early = pull_outputs(client, f"{DEMO_USERNAME}/mid-run-kernel", target=target, ledger=ledger, progress=False,
                         warn=seen.append)
    assert early.status == "RUNNING" and any("still running" in w for w in seen)
    assert (target / "out.bin").read_bytes() == b"A" * 5, "pulled mid-run (the kernel sleeps 2 s)"

    assert emulator.wait_for_status(DEMO_USERNAME, "mid-run-kernel", pushed.version) == "COMPLETE"
    clear_requests(emulator)
    after = pull_outputs(client, f"{DEMO_USERNAME}/mid-run-kernel", target=target, ledger=ledger, progress=False)
    assert after.status == "COMPLETE" and after.skipped == 0
    assert (target / "out.bin").read_bytes() == b"B" * 5
    assert json.loads((target / "kagglekit" / "run.json").read_text())["status"] == "complete"
    assert sorted(r["file"] for r in file_gets(emulator)) == ["kagglekit/run.json", "out.bin"]
    assert after.removed == ["scratch.tmp"] and not (target / "scratch.tmp").exists()
    manifest = json.loads(pull_state_path(target).read_text())
    assert set(manifest["files"]) == {"out.bin", "kagglekit/run.json"}
    assert all(e["final"] is True for e in manifest["files"].values())
    rec = ledger.get(client.account, f"{DEMO_USERNAME}/mid-run-kernel", pushed.version)
    assert rec is not None and rec.status == "COMPLETE"

    # Now the run is over, what was pulled is trusted: not one file request.
    clear_requests(emulator)
    third = pull_outputs(client, f"{DEMO_USERNAME}/mid-run-kernel", target=target, progress=False)
    assert (third.files, third.skipped) == (0, 2) and emulator.requests("file") == []


def test_a_finished_run_without_run_json_gets_its_duration_from_the_listings_log(
        emulator: Any, client: KaggleApiClient, tmp_path: Path) -> None:
    """No kagglekit/run.json: the ledger learns the status and the log's span (last - first offset),
    from the log that came with the listing (no second request for it)."""
    from kagglekit.logs import parse_log, session_span

    script = "import time\nprint('first', flush=True)\ntime.sleep(0.6)\nprint('last', flush=True)\n"
    version = run_kernel(emulator, client, tmp_path, "plain-kernel", script)
    ledger = Ledger()
    clear_requests(emulator)
    summary = pull_outputs(client, f"{DEMO_USERNAME}/plain-kernel", target=tmp_path / "t", ledger=ledger,
                           progress=False)
    listings = [r for r in emulator.requests("rpc") if r["path"].endswith("/ListKernelSessionOutput")]
    assert summary.run_json is None and len(listings) == 1
    span = session_span(parse_log(summary.log_path.read_text() if summary.log_path else ""))
    assert span is not None and span[1] - span[0] >= 0.5
    rec = ledger.get(client.account, f"{DEMO_USERNAME}/plain-kernel", version)
    assert rec is not None and rec.status == "COMPLETE" and rec.duration_source == "log"
    assert rec.duration_s == pytest.approx(span[1] - span[0])
    assert rec.ended_at is not None and rec.started_at is not None
    assert (rec.ended_at - rec.started_at).total_seconds() == pytest.approx(rec.duration_s)


# --------------------------------------------------------------------------- unsafe names


class RewritingProxy:
    """A man in the middle between the client and the emulator that edits ListKernelSessionOutput
    answers: it models a broken or hostile server without mocking the client or the emulator."""

    def __init__(self, upstream: str, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = urllib.request.Request(upstream + self.path, data=body, method="POST", headers={
                    k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                if status == 200 and self.path.endswith("/ListKernelSessionOutput"):
                    data = json.dumps(edit(json.loads(data))).encode()
                    proxy.listings += 1
                reply_json(self, status, data)

            def log_message(self, *args: Any) -> None:
                pass

        self.listings = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_names_outside_the_target_are_refused_and_nothing_is_written_outside(
        emulator: Any, outputs_kernel: str, tmp_path: Path) -> None:
    evil = ["../../x", "/tmp/kagglekit-evil-abs", "sub/../../../y", "..\\..\\z"]

    def add_evil(page: dict[str, Any]) -> dict[str, Any]:
        if page.get("files"):
            real = page["files"][0]["url"]  # a real, signed URL: the bytes would come if we asked
            page["files"] += [{"fileName": name, "url": real} for name in evil]
        return page

    proxy = RewritingProxy(emulator.url, add_evil)
    work = tmp_path / "work"
    target = work / "a" / "b" / "target"
    before = {p for p in tmp_path.rglob("*")}
    try:
        with KaggleApiClient(demo_credentials(), endpoint=proxy.url, retry=FAST) as via_proxy, \
                pytest.raises(UnsafePathError) as info:
            pull_outputs(via_proxy, outputs_kernel, target=target, progress=False)
    finally:
        proxy.close()
    assert "'../../x'" in info.value.message and info.value.exit_code == 12
    for name in evil:
        assert repr(name) in info.value.message
    created = {p for p in tmp_path.rglob("*")} - before
    book = bookkeeping_dir(target)  # kagglekit's own manifest, lock and partial files, beside the target
    assert all(p == work or target.is_relative_to(p) or p.is_relative_to(target) or p.is_relative_to(book)
               for p in created), created
    assert not Path("/tmp/kagglekit-evil-abs").exists()
    assert (target / "big.bin").stat().st_size == 6_000_000  # the good files still came


def test_a_symlink_inside_the_target_is_not_followed(emulator: Any, client: KaggleApiClient,
                                                      outputs_kernel: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (target / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError) as info:
        pull_outputs(client, outputs_kernel, target=target, progress=False)
    assert "sub/dir/result.txt" in info.value.message
    assert list(outside.iterdir()) == []


def test_an_expired_signed_url_is_replaced_by_listing_again(emulator: Any, outputs_kernel: str,
                                                            tmp_path: Path) -> None:
    """The URLs expire between the listing and the GETs (403): kagglekit lists again and carries on."""

    def expire_first_listing(page: dict[str, Any]) -> dict[str, Any]:
        if proxy.listings == 0:  # jump the emulator's clock past the URLs' expiry
            emulator.control("clock", {"advance_seconds": 7200})
        return page

    proxy = RewritingProxy(emulator.url, expire_first_listing)
    try:
        with KaggleApiClient(demo_credentials(), endpoint=proxy.url, retry=FAST) as via_proxy:
            summary = pull_outputs(via_proxy, outputs_kernel + "/1", target=tmp_path / "t", progress=False)
    finally:
        proxy.close()
    assert summary.ok and summary.files == summary.listed
    assert 403 in {r["status"] for r in file_gets(emulator)}
    assert proxy.listings == 2


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("name", "ok"), [
    ("a.txt", True), ("sub/dir/a.txt", True), ("./a", True), ("a//b", True),
    ("../a", False), ("a/../../b", False), ("/etc/passwd", False), ("C:/x", False), ("..\\x", False),
    ("", False), (".kagglekit-manifest.json", True), ("a\x00b", False),  # kagglekit's manifest lives beside
])
def test_safe_destination(tmp_path: Path, name: str, ok: bool) -> None:
    dest = safe_destination(tmp_path, name)
    assert (dest is not None) == ok
    if dest is not None:
        assert dest.is_relative_to(tmp_path)


@pytest.mark.parametrize(("name", "patterns", "hit"), [
    ("model.pt", ["*.pt"], True), ("ckpt/e1.pt", ["*.pt"], True), ("out/checkpoints/x.bin", ["checkpoint*"], True),
    ("notes.txt", ["*.pt", "checkpoint*"], False), ("a/b/c.txt", ["b/*.txt"], True), ("logs/x", ["logs"], True),
])
def test_glob_matching(name: str, patterns: list[str], hit: bool) -> None:
    assert matches_any(name, patterns) is hit
