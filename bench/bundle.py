"""Benchmark: bundle a 2,000-file / 200 MB project where most bytes are data to leave out.

Target (issue 4): under 1 s. Excluded folders are pruned while walking, so the data is
never read; this measures the whole ``build_bundle`` (walk, ignore rules, secrets check,
test-flag edit, tar + xz + base64, template render, writes).

    .venv/bin/python bench/bundle.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

N_FILES = 2000
DATA_BYTES = 200 * 1000**2


def make_project(root: Path) -> tuple[int, int]:
    """Code (~120 files), a .venv, .git, checkpoints and a big data/ folder; returns (files, bytes)."""
    files = 0
    size = 0

    def write(rel: str, data: bytes) -> None:
        nonlocal files, size
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files += 1
        size += len(data)

    write("kagglekit.toml", b'kernel = "bench/big-project"\nentry = "proj.train"\n')
    write("config.py", b"class Config:\n    n_epoch = 30\n    running_test = True\n")
    write(".gitignore", b"*.log\n")
    for pkg in range(6):
        write(f"proj/sub{pkg}/__init__.py", b"")
        for mod in range(18):
            body = "".join(f"def f{i}(x):\n    return x * {i} + {mod}\n\n" for i in range(60))
            write(f"proj/sub{pkg}/mod{mod}.py", body.encode())
    write("proj/__init__.py", b"")
    write("proj/train.py", b"from config import Config\nprint(Config.n_epoch)\n")
    for i in range(150):
        write(f".venv/lib/python3.11/site-packages/pkg{i}/__init__.py", b"x = 1\n" * 50)
    write(".venv/pyvenv.cfg", b"home = /usr/bin\n")
    for i in range(60):
        write(f".git/objects/{i:02x}/obj", os.urandom(2000))
    for i in range(4):
        write(f"checkpoints/epoch{i}.pt", os.urandom(50_000))
    for i in range(20):
        write(f"run{i}.log", b"loss 0.1\n" * 100)
    remaining = N_FILES - files
    per_file = (DATA_BYTES - size) // remaining
    chunk = os.urandom(per_file)
    for i in range(remaining):
        write(f"data/shard{i // 200:02d}/sample{i:05d}.bin", chunk)
    return files, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    from kagglekit.bundle import build_bundle
    from kagglekit.settings import load_project

    with tempfile.TemporaryDirectory(prefix="kagglekit-bench-") as tmp:
        root = Path(tmp) / "big-project"
        files, size = make_project(root)
        times = []
        result = None
        for i in range(args.runs):
            t0 = time.perf_counter()
            settings = load_project(root)
            result = build_bundle(settings, mode="full", overrides={"n_epoch": "1"}, out_dir=Path(tmp) / f"out{i}")
            times.append(time.perf_counter() - t0)
        assert result is not None
        print(f"project: {files} files, {size / 1e6:.0f} MB ({len(result.files)} files / "
              f"{result.total_bytes / 1e3:.0f} kB bundled, script {result.script_bytes / 1e3:.0f} kB)")
        print(f"bundle time over {args.runs} runs: median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f} s, max {max(times):.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
