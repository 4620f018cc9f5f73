"""Queue bench: makespan of 8 unequal experiments on 2 GPU slots vs the best possible; polling rate.

    .venv/bin/python bench/queue_makespan.py [--interval 0.5] [--step 1.0]

Starts the emulator (prod-shaped defaults: post-push 404s, the save phase, the session cap) in its
own process, writes a tiny training project (tests/queue_project.py) with 8 experiments of unequal
length (4..18 epochs of ``--step`` seconds), and runs ``kagglekit queue run`` on it.

Figures:
- makespan: from the first push Kaggle accepted to the end of the last session (its save phase
  included), against the lower bound max(sum of session times / slots, longest session). A
  session's time is what Kaggle bills and holds a slot for: accepted push to saved outputs. The gap
  is the scheduler's: noticing an end (one poll), pulling the outputs, bundling and pushing the next.
- polling: GetKernelSessionStatus requests per running session per minute at the bench's interval,
  and every request the queue made, by method (scale the status rate by interval/30 for the
  default 30-second interval).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from _common import REPO, Emulator

sys.path.insert(0, str(REPO))  # tests.queue_project

from kagglekit import constants as C
from tests.queue_project import write_project

EPOCHS = [4, 12, 6, 18, 5, 9, 14, 7]  # unequal, in queue order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=0.5, help="queue run --interval (seconds)")
    parser.add_argument("--step", type=float, default=1.0, help="seconds per epoch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kk-queue-bench-") as tmp:
        data = Path(tmp)
        emu = Emulator(data, {"queue_seconds": 0.05, "run_start_delay_seconds": 1.0, "save_min_seconds": 1.5})
        try:
            run(data, emu.url, args)
        finally:
            emu.stop()


def run(data: Path, url: str, args: argparse.Namespace) -> None:
    experiments = "".join(f'[tool.kagglekit.experiments.x{i + 1}]\nset = {{ epochs = "{n}", step_s = "{args.step}" }}\n'
                          for i, n in enumerate(EPOCHS))
    root = write_project(data / "bench-queue", kernel="demo/bench-queue", experiments=experiments)
    env = {**os.environ, "KAGGLE_USERNAME": C.DEMO_USERNAME, "KAGGLE_KEY": C.DEMO_KEY, "KAGGLEKIT_ENDPOINT": url,
           "KAGGLEKIT_HOME": str(data / "home"), "PYTHONPATH": str(REPO)}
    requests.delete(url + "/__emulator/requests", timeout=10)
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kagglekit", "--json", "queue", "run", "--interval", str(args.interval),
                          "--timeout", "120"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - started
    if res.returncode != 0:
        raise SystemExit(f"queue run failed ({res.returncode}):\n{res.stderr[-3000:]}")
    result = json.loads(res.stdout)
    versions = [v for v in requests.get(url + "/__emulator/versions", timeout=10).json()["versions"]
                if v["ref"].startswith("demo/bench-queue-")]
    log = requests.get(url + "/__emulator/requests", timeout=10).json()
    report(versions, log, result, wall, args)


def report(versions: list[dict[str, Any]], log: Any, result: dict[str, Any], wall: float,
           args: argparse.Namespace) -> None:
    spans = sorted((v["created"], v["ended"]) for v in versions)
    durations = [end - start for start, end in spans]
    slots = 2
    makespan = max(end for _, end in spans) - min(start for start, _ in spans)
    bound = max(sum(durations) / slots, max(durations))
    running_s = sum(durations)  # a session is polled from its push to its saved outputs
    entries = log["requests"] if isinstance(log, dict) else log
    by_name = collections.Counter(e.get("name") or e.get("kind") for e in entries if e.get("kind") != "control")
    by_name = collections.Counter({k.rpartition("/")[2]: n for k, n in by_name.items()})
    status = by_name.get("GetKernelSessionStatus", 0)
    print(f"experiments: {len(versions)} sessions, epochs {EPOCHS} x {args.step:g} s, 2 GPU slots, "
          f"queue run --interval {args.interval:g}")
    print("session times (accepted push -> outputs saved, s): " + ", ".join(f"{d:.1f}" for d in durations))
    print(f"makespan {makespan:.1f} s; lower bound max(sum/slots, longest) = max({sum(durations) / slots:.1f}, "
          f"{max(durations):.1f}) = {bound:.1f} s; ratio {makespan / bound:.3f} ({(makespan / bound - 1) * 100:+.1f}%)")
    free = [0.0] * slots  # the same sessions, same order, pushed the instant a slot frees: no scheduler at all
    for d in durations:
        free[free.index(min(free))] += d
    print(f"the same order with a zero-overhead scheduler would take {max(free):.1f} s: the queue's own overhead is "
          f"{(makespan / max(free) - 1) * 100:+.1f}%")
    ends = sorted(end for _, end in spans)
    gaps = [start - ends[i] for i, (start, _) in enumerate(spans[slots:])]  # the k-th start after the k-th end
    print(f"slot idle between a session's end and the next push: mean {sum(gaps) / len(gaps):.2f} s, "
          f"max {max(gaps):.2f} s (one poll interval, the pull-free hand-over, bundling and the push)")
    pushes = result["push_seconds"]
    print(f"a push (bundle, preflight, SaveKernel) took {sum(pushes) / len(pushes):.2f} s on average, "
          f"at most {max(pushes):.2f} s")
    print(f"queue run wall time {wall:.1f} s (start-up, the first bundle and the last pull included)")
    print(f"status polls: {status} over {running_s:.0f} session-seconds = {60 * status / running_s:.1f} per session "
          f"per minute at --interval {args.interval:g} ({60 * status / running_s * args.interval / 30:.2f} per "
          "minute at the default 30 s)")
    print("requests by method: " + ", ".join(f"{k} {n}" for k, n in by_name.most_common()))
    print(f"queue: pushes {result['pushes']}, refusals {result['refusals']}, status+quota requests "
          f"{result['status_requests']}")


if __name__ == "__main__":
    main()
