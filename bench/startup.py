#!/usr/bin/env python3
"""Start-up time: median wall time of ``kagglekit --help`` vs ``kaggle --help`` in the same run.

Target (issue 2): kagglekit at most 0.15 s and at most 1/3 of ``kaggle --help``.
Also checks that ``kagglekit --help`` imports none of the heavy modules.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("kaggle", "kagglesdk", "requests", "pandas", "matplotlib", "torch", "numpy")


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t0)
    return out


def heavy_imports(env: dict[str, str]) -> list[str]:
    code = (
        "import sys; from kagglekit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    return [m for m in last.split(",") if m and m in HEAVY]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    kagglekit = shutil.which("kagglekit", path=str(bindir)) or "kagglekit"
    kaggle = shutil.which("kaggle", path=str(bindir)) or "kaggle"
    with tempfile.TemporaryDirectory() as home:
        # Same conditions for both: no credentials (kaggle then prints its auth help, as on a fresh machine).
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
        env["HOME"] = home
        env["KAGGLE_USERNAME"], env["KAGGLE_KEY"] = "benchuser", "0" * 32  # so kaggle --help gets past auth
        timed([kagglekit, "--help"], env, 2)  # warm the page cache
        timed([kaggle, "--help"], env, 2)
        ours = timed([kagglekit, "--help"], env, args.runs)
        theirs = timed([kaggle, "--help"], env, args.runs)
        sub = timed([kagglekit, "push", "--help"], env, args.runs)
        heavy = heavy_imports(env)
    m_ours, m_theirs, m_sub = (statistics.median(x) for x in (ours, theirs, sub))
    print(f"kagglekit --help       median {m_ours * 1000:7.1f} ms  (min {min(ours) * 1000:.1f})")
    print(f"kagglekit push --help  median {m_sub * 1000:7.1f} ms")
    print(f"kaggle --help          median {m_theirs * 1000:7.1f} ms  (min {min(theirs) * 1000:.1f})")
    print(f"ratio                  {m_ours / m_theirs:.2f} (target <= 0.33); absolute target <= 150 ms")
    print(f"heavy modules imported by --help: {heavy or 'none'}")
    ok = m_ours <= 0.15 and m_ours <= m_theirs / 3 and not heavy
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
