#!/usr/bin/env python3
"""Benchmark ``kagglekit pull-outputs`` against the official ``kaggle kernels output``, same emulator, same run.

Scenarios (issue 5 targets):

1. remote-storage model: N files / S bytes, the emulator adds ~100 ms before each file's first byte
   and caps each connection's bandwidth -> kagglekit at least 3x faster than the official CLI;
2. plain loopback, same files -> kagglekit never slower than the official CLI and within 1.5x of a
   plain parallel fetch of the same URLs (requests + a thread pool, no checks: the machine's limit);
3. a re-pull with nothing new -> kagglekit sends no file GET at all;
4. one big file (2 GB by default) -> peak RSS of the pull-outputs process under 150 MB.

Every contender runs as its own process (wall time includes start-up and listing). The emulator
runs as a separate process too, so its threads do not share a GIL with the clients.

    .venv/bin/python bench/pull_outputs.py            # 200 files / 1 GB, 2 GB single file (~3-4 min)
    .venv/bin/python bench/pull_outputs.py --quick    # 40 files / 100 MB, 300 MB single file (~30 s)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _common import DEMO_USERNAME, KAGGLE, MB, PY, REPO, Emulator, env_for, peak_rss

KERNEL = textwrap.dedent(
    """
    import os
    n, size, chunk = {n}, {size}, 8 * 1024 * 1024
    block = os.urandom(chunk)
    for i in range(n):
        name = "{prefix}%04d.bin" % i if n > 1 else "{prefix}.bin"
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        left = size
        with open(name, "wb") as f:
            f.write(os.urandom(16))  # every file different
            left -= 16
            while left > 0:
                f.write(block[:min(chunk, left)])
                left -= min(chunk, left)
    print("wrote", n, "files of", size, "bytes")
    """
)

PLAIN_FETCH = textwrap.dedent(
    """
    # The practical limit: list, then GET every URL with a thread pool; no retries, checks or manifest.
    import os, sys, requests
    from concurrent.futures import ThreadPoolExecutor
    sys.path.insert(0, {repo!r})
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.kernel_ref import KernelRef
    from kagglekit.credentials import demo_credentials
    url, ref, out, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = KaggleApiClient(demo_credentials(), endpoint=url)
    files = client.list_outputs(KernelRef.parse(ref)).files
    import threading
    local = threading.local()
    def get(f):
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        path = os.path.join(out, f.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with s.get(f.url, stream=True) as r, open(path, "wb") as fh:
            r.raise_for_status()
            for chunk in r.iter_content(1024 * 1024):
                fh.write(chunk)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(get, files))
    """
)


def run_kernel(emu: Emulator, slug: str, n: int, size: int, prefix: str, work: Path) -> None:
    """Push (official CLI, as a user would) a kernel that writes the files, and wait for it to finish."""
    folder = work / f"src-{slug}"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(KERNEL.format(n=n, size=size, prefix=prefix))
    (folder / "kernel-metadata.json").write_text(json.dumps({
        "id": f"{DEMO_USERNAME}/{slug}", "title": slug.replace("-", " ").title(), "code_file": "main.py",
        "language": "python", "kernel_type": "script", "enable_internet": False}))
    subprocess.run([KAGGLE, "kernels", "push", "-p", str(folder)], env=env_for(emu.url), check=True,
                   capture_output=True, text=True, timeout=120)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        out = subprocess.run([KAGGLE, "kernels", "status", f"{DEMO_USERNAME}/{slug}"], env=env_for(emu.url),
                             capture_output=True, text=True, timeout=60).stdout
        if "COMPLETE" in out:
            return
        if "ERROR" in out or "CANCEL" in out:
            raise SystemExit(f"the bench kernel failed: {out}")
        time.sleep(0.5)
    raise SystemExit("the bench kernel did not finish")


def tree_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix == ".bin"]
    return len(files), sum(p.stat().st_size for p in files)


def contenders(emu: Emulator, ref: str, work: Path, jobs: int) -> dict[str, list[str]]:
    return {
        "kagglekit": [PY, "-m", "kagglekit", "--endpoint", emu.url, "pull-outputs", ref, "-o", str(work / "kk"),
                      "--jobs", str(jobs)],
        "official": [KAGGLE, "kernels", "output", ref, "-p", str(work / "off")],
        "plain-parallel": [PY, "-c", PLAIN_FETCH.format(repo=str(REPO)), emu.url, ref, str(work / "plain"),
                           str(jobs)],
    }


def race(emu: Emulator, ref: str, work: Path, jobs: int, expect: tuple[int, int], names: list[str],
         rounds: int = 1) -> dict[str, float]:
    """Best wall time of each contender over ``rounds`` interleaved rounds (a shared machine is noisy)."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, wall in race_once(emu, ref, work, jobs, expect, names).items():
            best[name] = min(wall, best.get(name, wall))
    return best


def race_once(emu: Emulator, ref: str, work: Path, jobs: int, expect: tuple[int, int],
              names: list[str]) -> dict[str, float]:
    times = {}
    for name in names:
        cmd = contenders(emu, ref, work, jobs)[name]
        target = Path(cmd[cmd.index("-o") + 1] if "-o" in cmd else cmd[cmd.index("-p") + 1] if "-p" in cmd
                      else cmd[-2])
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        wall, _ = peak_rss(cmd, env_for(emu.url), work)
        got = tree_bytes(target)
        if got != expect:
            raise SystemExit(f"{name} downloaded {got}, expected {expect}")
        times[name] = wall
        if name != "kagglekit":
            shutil.rmtree(target, ignore_errors=True)
    return times


def remote_scenario(emu: Emulator, ref: str, work: Path, args: argparse.Namespace, expect: tuple[int, int],
                    results: dict[str, Any]) -> None:
    """1. Remote storage: a delay before each file's first byte and a per-connection bandwidth cap."""
    n, total = expect
    emu.control("POST", "faults", {"target": "files", "times": -1, "first_byte_delay_ms": args.first_byte_ms,
                                   "bandwidth_bytes_per_s": args.bandwidth_mbps * MB})
    names = ["kagglekit", "plain-parallel"] + ([] if args.skip_official_remote else ["official"])
    try:
        remote = race(emu, ref, work, args.jobs, expect, names)
    finally:
        emu.control("DELETE", "faults")
    results["remote"] = remote
    print(f"[remote storage: {args.first_byte_ms:.0f} ms first byte, {args.bandwidth_mbps:g} MB/s per "
          f"connection] {n} files / {total / MB:.0f} MB", flush=True)
    for name, wall in remote.items():
        print(f"  {name:15s} {wall:7.2f} s  {total / MB / wall:7.1f} MB/s", flush=True)
    if "official" in remote:
        results["remote_speedup"] = remote["official"] / remote["kagglekit"]
        print(f"  -> kagglekit is {results['remote_speedup']:.2f}x faster than the official CLI "
              "(target >= 3x)", flush=True)


def loopback_scenario(emu: Emulator, ref: str, work: Path, args: argparse.Namespace, expect: tuple[int, int],
                      results: dict[str, Any]) -> None:
    """2. Plain loopback: the machine's own limit, a plain parallel fetch, is the yardstick."""
    n, total = expect
    loop = race(emu, ref, work, args.jobs, expect, ["kagglekit", "official", "plain-parallel"], args.rounds)
    results["loopback"] = loop
    print(f"[plain loopback, best of {args.rounds}] {n} files / {total / MB:.0f} MB", flush=True)
    for name, wall in loop.items():
        print(f"  {name:15s} {wall:7.2f} s  {total / MB / wall:7.1f} MB/s", flush=True)
    results["loopback_vs_official"] = loop["official"] / loop["kagglekit"]
    results["loopback_vs_plain"] = loop["kagglekit"] / loop["plain-parallel"]
    print(f"  -> {results['loopback_vs_official']:.2f}x the official CLI's speed (target >= 1); "
          f"{results['loopback_vs_plain']:.2f}x the plain parallel fetch's time (target <= 1.5)", flush=True)


def repull_scenario(emu: Emulator, ref: str, work: Path, args: argparse.Namespace, expect: tuple[int, int],
                    results: dict[str, Any]) -> None:
    """3. A re-pull with nothing new must send no file request at all."""
    cmd = contenders(emu, ref, work, args.jobs)["kagglekit"]
    if tree_bytes(work / "kk") != expect:
        peak_rss(cmd, env_for(emu.url), work)
    emu.control("DELETE", "requests")
    wall, _ = peak_rss(cmd, env_for(emu.url), work)
    results["repull_file_gets"] = len(emu.requests("file"))
    results["repull_seconds"] = wall
    print(f"[re-pull, nothing new] {wall:.2f} s, file GETs sent: {results['repull_file_gets']} (target 0)",
          flush=True)
    shutil.rmtree(work / "kk", ignore_errors=True)


def big_scenario(emu: Emulator, work: Path, big: int, results: dict[str, Any]) -> None:
    """4. One big file: the pull's memory must not grow with the file."""
    run_kernel(emu, "bench-big-file", 1, big, "big", work)
    cmd = [PY, "-m", "kagglekit", "--endpoint", emu.url, "pull-outputs", f"{DEMO_USERNAME}/bench-big-file",
           "-o", str(work / "big")]
    wall, rss = peak_rss(cmd, env_for(emu.url), work)
    if (work / "big" / "big.bin").stat().st_size != big:
        raise SystemExit("the big file came out the wrong size")
    results["big_seconds"] = wall
    results["big_peak_rss_bytes"] = rss
    print(f"[single {big / MB:.0f} MB file] {wall:.2f} s, peak RSS of pull-outputs {rss / 2**20:.1f} MiB "
          "(target < 150 MB)", flush=True)
    shutil.rmtree(work / "big", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about 30 s")
    parser.add_argument("--files", type=int, help="files in the many-files scenarios (default 200; quick 40)")
    parser.add_argument("--total-mb", type=float, help="their total size in MB (default 1000; quick 100)")
    parser.add_argument("--big-mb", type=float, help="the single big file for the RSS check (default 2000; quick 300)")
    parser.add_argument("--first-byte-ms", type=float, default=100.0, help="remote-storage delay per file")
    parser.add_argument("--bandwidth-mbps", type=float, default=25.0,
                        help="remote-storage bandwidth cap per connection, MB/s")
    parser.add_argument("--jobs", type=int, default=4, help="kagglekit's (and the plain fetch's) parallelism")
    parser.add_argument("--rounds", type=int, default=3, help="loopback rounds (best time counts)")
    parser.add_argument("--skip-official-remote", action="store_true",
                        help="skip the slow official-CLI run with the remote-storage model")
    parser.add_argument("--scenarios", default="remote,loopback,repull,big",
                        help="comma-separated subset of: remote, loopback, repull, big")
    args = parser.parse_args()
    n = args.files or (40 if args.quick else 200)
    total = int((args.total_mb or (100 if args.quick else 1000)) * MB)
    big = int((args.big_mb or (300 if args.quick else 2000)) * MB)
    size = total // n
    todo = set(args.scenarios.split(","))

    work = Path(tempfile.mkdtemp(prefix="kk-bench-pull-"))
    emu = Emulator(work, {"queue_seconds": 0.05, "output_limit_bytes": 100 * 1000**3})
    results: dict[str, Any] = {"files": n, "total_bytes": size * n, "big_file_bytes": big}
    try:
        print(f"emulator at {emu.url}; work dir {work}", flush=True)
        ref = f"{DEMO_USERNAME}/bench-many-files"
        expect = (n, size * n)
        if todo & {"remote", "loopback", "repull"}:
            run_kernel(emu, "bench-many-files", n, size, "data/part-", work)
        if "remote" in todo:
            remote_scenario(emu, ref, work, args, expect, results)
        if "loopback" in todo:
            loopback_scenario(emu, ref, work, args, expect, results)
        if "repull" in todo:
            repull_scenario(emu, ref, work, args, expect, results)
        if "big" in todo:
            big_scenario(emu, work, big, results)
    finally:
        emu.stop()
        shutil.rmtree(work, ignore_errors=True)

    checks = {
        "remote_speedup": results.get("remote_speedup", 3.0) >= 3.0,
        "loopback_vs_official": results.get("loopback_vs_official", 1.0) >= 1.0,
        "loopback_vs_plain": results.get("loopback_vs_plain", 1.0) <= 1.5,
        "repull_file_gets": results.get("repull_file_gets", 0) == 0,
        "big_peak_rss_bytes": results.get("big_peak_rss_bytes", 0) < 150 * MB,
    }
    print(json.dumps(results, indent=1))
    missed = [k for k, ok in checks.items() if not ok]
    print("ALL TARGETS MET" if not missed else f"TARGETS MISSED: {', '.join(missed)}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
