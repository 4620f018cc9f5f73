#!/usr/bin/env python3
"""Benchmark kagglekit's dataset upload against the official ``kaggle datasets version``, same emulator, same run.

Scenarios (issue 14 targets):

1. remote-like latency: every RPC and every upload PUT answered ``--latency-ms`` late (100 ms by default,
   a transatlantic round trip plus GCS's own), N files / S bytes -> kagglekit at least 2x faster than
   ``kaggle datasets version -p`` on the same folder;
2. the same folder again -> kagglekit uploads 0 bytes (content-addressed) and creates no version;
3. one big file (2 GB by default) on plain loopback -> peak RSS of the uploading process under 150 MB.

Each contender runs as its own process (wall time includes start-up, hashing and the version RPC);
the emulator runs in a separate process with no processing window (``dataset_processing_seconds`` 0).

    .venv/bin/python bench/dataset_upload.py            # 200 files / 500 MB, then a 2 GB file
    .venv/bin/python bench/dataset_upload.py --quick    # 40 files / 50 MB, then a 300 MB file
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from _common import KAGGLE, MB, PY, REPO, Emulator, env_for, peak_rss

KK_SYNC = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.api.datasets import DatasetsApi
    from kagglekit.credentials import demo_credentials
    url, ref, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    with KaggleApiClient(demo_credentials(), endpoint=url) as client:
        result = DatasetsApi(client).sync(ref, "Bench upload data", folder)
    print(json.dumps({{"changed": result.changed, "bytes_sent": result.stats.bytes_sent,
                      "files": result.stats.files}}))
    """
)


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """(wall seconds, stdout) of one child process."""
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    return wall, proc.stdout.decode()


def make_files(folder: Path, n: int, total: int) -> None:
    folder.mkdir(parents=True)
    size = total // n
    block = os.urandom(8 * MB)
    for i in range(n):
        with (folder / f"part-{i:04d}.bin").open("wb") as f:
            f.write(os.urandom(16))  # every file different
            left = size - 16
            while left > 0:
                f.write(block[: min(len(block), left)])
                left -= min(len(block), left)


def stored_bytes(emu: Emulator) -> int:
    return sum(int(r.get("stored", 0)) for r in emu.requests("upload"))


def seed_dataset(emu: Emulator, ref: str, work: Path) -> None:
    """Create ``ref`` with one small file, untimed, so both contenders add a version."""
    seed = work / f"seed-{ref.split('/')[1]}"
    seed.mkdir()
    (seed / "seed.txt").write_text("seed\n")
    subprocess.run([PY, "-c", KK_SYNC.format(repo=str(REPO)), emu.url, ref, str(seed)], check=True,
                   capture_output=True, env=env_for(emu.url), timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int)
    parser.add_argument("--mb", type=int, help="total size of the many-files folder, MB")
    parser.add_argument("--big-mb", type=int, help="size of the single big file, MB")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    n = args.files or (40 if args.quick else 200)
    total = (args.mb or (50 if args.quick else 500)) * MB
    big = (args.big_mb or (300 if args.quick else 2000)) * MB

    with tempfile.TemporaryDirectory(prefix="kagglekit-bench-upload-") as tmp:
        work = Path(tmp)
        emu = Emulator(work, {"dataset_processing_seconds": 0})
        try:
            folder = work / "data"
            make_files(folder, n, total)
            seed_dataset(emu, "demo/bench-official", work)
            seed_dataset(emu, "demo/bench-kagglekit", work)
            env = env_for(emu.url)
            for target in ("*", "upload"):
                emu.control("POST", "faults", {"target": target, "latency_ms": args.latency_ms, "times": -1})
            print(f"1. {n} files / {total / MB:.0f} MB, {args.latency_ms:.0f} ms latency on every request")
            (folder / "dataset-metadata.json").write_text(json.dumps(
                {"id": "demo/bench-official", "title": "Bench upload data", "licenses": [{"name": "CC0-1.0"}]}))
            off_wall, _ = timed([KAGGLE, "datasets", "version", "-p", str(folder), "-m", "bench", "-q"], env, work)
            kk_wall, out = timed([PY, "-c", KK_SYNC.format(repo=str(REPO)), emu.url, "demo/bench-kagglekit",
                                     str(folder)], env, work)
            print(f"   official `kaggle datasets version`: {off_wall:6.1f} s")
            print(f"   kagglekit                         : {kk_wall:6.1f} s   ({off_wall / kk_wall:.1f}x faster; "
                  f"target >= 2x) {out.strip()}")
            emu.control("DELETE", "requests")
            again_wall, out = timed([PY, "-c", KK_SYNC.format(repo=str(REPO)), emu.url, "demo/bench-kagglekit",
                                        str(folder)], env, work)
            print(f"2. same folder again: {again_wall:.1f} s, uploaded {stored_bytes(emu)} bytes "
                  f"(target 0) {out.strip()}")
            emu.control("DELETE", "faults")
            shutil.rmtree(folder)
            bigdir = work / "big"
            make_files(bigdir, 1, big)
            wall, rss = peak_rss([PY, "-c", KK_SYNC.format(repo=str(REPO)), emu.url, "demo/bench-big", str(bigdir)],
                                 env, work)
            print(f"3. one {big / MB:.0f} MB file on loopback: {wall:.1f} s ({big / MB / wall:.0f} MB/s), peak RSS "
                  f"{rss / MB:.0f} MB (target < 150 MB)")
        finally:
            emu.stop()


if __name__ == "__main__":
    main()
