"""Load bench: N clients poll status and list outputs of the emulator concurrently; no errors, no lost state.

    .venv/bin/python bench/emulator_load.py [--clients 20] [--duration 30] [--procs 4]

Starts ``python -m kagglekit.emulator serve`` in its own process (fresh data dir), pushes a
few kernels with many output files, then runs ``--clients`` client threads spread over
``--procs`` processes (keep-alive ``requests`` sessions, like kagglekit's client) for
``--duration`` seconds. Each loop: ``GetKernelSessionStatus``, ``ListKernelSessionOutput``
(every page), and every 10th loop one file GET checked byte for byte. Meanwhile one writer
pushes new versions of a kernel. At the end it checks that every version pushed exists and
ran. Prints requests/s, latency percentiles, errors and state mismatches (both must be 0).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from _common import Emulator

from kagglekit import constants as C

AUTH = (C.DEMO_USERNAME, C.DEMO_KEY)
RPC = "/api/v1/kernels.KernelsApiService/"
KERNELS = [f"load-kernel-{i}" for i in range(4)]
FILES_PER_KERNEL = 45
SCRIPT = (f"import os\nos.makedirs('sub', exist_ok=True)\nfor i in range({FILES_PER_KERNEL}):\n"
          "    open(f'sub/f{i:03d}.txt', 'w').write(f'{os.environ[\"KAGGLE_CONTAINER_NAME\"]} file {i}\\n' * 20)\n")


def push(s: requests.Session, url: str, slug: str) -> int:
    r = s.post(url + RPC + "SaveKernel", auth=AUTH, timeout=30, json={
        "slug": f"demo/{slug}", "newTitle": slug.replace("-", " ").title(), "text": SCRIPT, "language": "python",
        "kernelType": "script", "isPrivate": True, "enableInternet": False})
    r.raise_for_status()
    return int(r.json()["versionNumber"])


def wait_final(s: requests.Session, url: str, slug: str, version: int | None = None) -> str:
    body: dict[str, Any] = {"userName": "demo", "kernelSlug": slug}
    if version:
        body["versionLabel"] = f"v{version}"
    while True:
        r = s.post(url + RPC + "GetKernelSessionStatus", json=body, auth=AUTH, timeout=30)
        if r.status_code in (403, 404):  # the prod-shaped start: a new private kernel's 403, then "No runs found"
            time.sleep(0.1)
            continue
        r.raise_for_status()
        status = r.json()["status"]
        if status in C.FINAL_STATUSES:
            return str(status)
        time.sleep(0.1)


def client_worker(url: str, threads: int, duration: float, expected: dict[str, list[str]],
                  out: Any) -> None:
    """One process running ``threads`` polling clients; puts (count, errors, mismatches, latencies) on ``out``."""
    lock = threading.Lock()
    totals = {"requests": 0, "errors": 0, "mismatches": 0}
    latencies: list[float] = []
    stop_at = time.monotonic() + duration

    def one(idx: int) -> None:
        s = requests.Session()
        n = 0
        local_lat: list[float] = []
        reqs = errs = bad = 0
        while time.monotonic() < stop_at:
            slug = KERNELS[(idx + n) % len(KERNELS)]
            body = {"userName": "demo", "kernelSlug": slug, "versionLabel": "v1"}
            try:
                t0 = time.perf_counter()
                r = s.post(url + RPC + "GetKernelSessionStatus", json=body, auth=AUTH, timeout=30)
                local_lat.append(time.perf_counter() - t0)
                reqs += 1
                if r.status_code != 200:
                    errs += 1
                elif r.json().get("status") != "COMPLETE":
                    bad += 1
                names: list[str] = []
                token = ""
                urls: dict[str, str] = {}
                while True:
                    t0 = time.perf_counter()
                    r = s.post(url + RPC + "ListKernelSessionOutput", auth=AUTH, timeout=30,
                               json={**body, "pageSize": 20, "pageToken": token})
                    local_lat.append(time.perf_counter() - t0)
                    reqs += 1
                    if r.status_code != 200:
                        errs += 1
                        break
                    page = r.json()
                    for f in page["files"]:
                        names.append(f["fileName"])
                        urls[f["fileName"]] = f["url"]
                    token = page.get("nextPageToken", "")
                    if not token:
                        break
                if names != expected[slug]:
                    bad += 1
                if n % 10 == 0 and names:
                    t0 = time.perf_counter()
                    r = s.get(urls[names[n % len(names)]], timeout=30)
                    local_lat.append(time.perf_counter() - t0)
                    reqs += 1
                    if r.status_code != 200 or f"file {int(names[n % len(names)][5:8])}\n" not in r.text:
                        errs += 1
            except requests.RequestException:
                errs += 1
            n += 1
        with lock:
            totals["requests"] += reqs
            totals["errors"] += errs
            totals["mismatches"] += bad
            latencies.extend(local_lat)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((totals, latencies))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--procs", type=int, default=4, help="client processes (threads are spread over them)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kk-emu-load-") as tmp:
        emu = Emulator(Path(tmp), {"queue_seconds": 0.05})
        url = emu.url
        try:
            s = requests.Session()
            for slug in KERNELS:
                push(s, url, slug)
            for slug in KERNELS:
                assert wait_final(s, url, slug) == "COMPLETE"
            expected = {slug: sorted(f"sub/f{i:03d}.txt" for i in range(FILES_PER_KERNEL)) for slug in KERNELS}
            print(f"emulator {url}: {len(KERNELS)} kernels x {FILES_PER_KERNEL} files; "
                  f"{args.clients} clients in {args.procs} processes for {args.duration:.0f} s ...", flush=True)

            pushed: list[int] = []
            writer_stop = threading.Event()

            def writer() -> None:  # new versions keep arriving while clients poll
                ws = requests.Session()
                while not writer_stop.is_set():
                    pushed.append(push(ws, url, "load-writer"))
                    wait_final(ws, url, "load-writer", pushed[-1])

            wt = threading.Thread(target=writer)
            wt.start()
            out: Any = mp.Queue()
            per = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
            t0 = time.monotonic()
            workers = [mp.Process(target=client_worker, args=(url, n, args.duration, expected, out))
                       for n in per if n]
            for w in workers:
                w.start()
            results = [out.get() for _ in workers]
            for w in workers:
                w.join()
            elapsed = time.monotonic() - t0
            writer_stop.set()
            wt.join()

            total = sum(r[0]["requests"] for r in results)
            errors = sum(r[0]["errors"] for r in results)
            mismatches = sum(r[0]["mismatches"] for r in results)
            lat = sorted(x for r in results for x in r[1])
            # no lost state: every version the writer pushed exists, numbered 1..N, and ran to COMPLETE
            statuses = [wait_final(s, url, "load-writer", v) for v in pushed]
            lost = int(pushed != list(range(1, len(pushed) + 1))) + sum(st != "COMPLETE" for st in statuses)

            def pct(p: float) -> float:
                return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

            print(f"requests:        {total} in {elapsed:.1f} s = {total / elapsed:.0f} req/s")
            print(f"latency (ms):    p50 {pct(0.5):.1f}  p95 {pct(0.95):.1f}  p99 {pct(0.99):.1f}  max {pct(1.0):.1f}")
            print(f"errors:          {errors}")
            print(f"state mismatches: {mismatches}")
            print(f"versions pushed meanwhile: {len(pushed)} (lost or not COMPLETE: {lost})")
            if errors or mismatches or lost:
                sys.exit(1)
        finally:
            emu.stop()


if __name__ == "__main__":
    main()
