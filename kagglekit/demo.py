"""The README demo: the whole kagglekit loop against the embedded emulator.

``python3 dev.py demo`` runs this. It types the same commands a user would, in a
fresh workspace (``./demo-work``) with its own kagglekit home, so it never touches
a real Kaggle account or the user's own ledger:

    init → push --gpu --test --wait → status → pull-outputs → quota --plot → report

Each step is a real ``kagglekit`` subprocess; the demo stops at the first failure
with that command's exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(step: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "kagglekit", *args]
    print(f"\n\033[1m$ kagglekit {shlex.join(args)}\033[0m   # {step}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=cwd, env=env)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    if rc != 0:
        print(f"\nThe demo stopped: `kagglekit {shlex.join(args)}` exited with {rc}.", file=sys.stderr)
        raise SystemExit(rc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 dev.py demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("demo-work"), help="where the demo project goes")
    ap.add_argument("--keep-emulator", action="store_true", help="leave the background emulator running")
    args = ap.parse_args(argv)

    work = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = dict(os.environ)
    env["KAGGLEKIT_HOME"] = str(work / ".kagglekit-home")  # isolated ledger + emulator state
    env["KAGGLEKIT_LOCAL"] = "1"  # same as --local on every command
    env.pop("KAGGLEKIT_ENDPOINT", None)
    project = work / "my-project"

    print(f"kagglekit demo — workspace {work}\nEverything below runs against the embedded Kaggle emulator.")
    try:
        run("a seed-structured PyTorch project", ["init", str(project), "--kernel", "demo/my-first-kernel"], work, env)
        run("bundle it, test mode on a GPU, follow the run", ["push", "--gpu", "--test", "--wait", "--interval", "2",
                                                             "--message", "demo: test mode"], project, env)
        run("what the API says about the run", ["status"], project, env)
        run("outputs and checkpoints, per version", ["pull-outputs"], project, env)
        run("the weekly GPU quota, with a forecast", ["quota", "--plot", str(work / "quota-week.png")], project, env)
        run("duration, cost, loss curve, full-run estimate", ["report", "-o", str(work / "report.html")], project, env)
        run("the run ledger", ["runs"], project, env)
    finally:
        if not args.keep_emulator:
            subprocess.call([sys.executable, "-m", "kagglekit", "emulator", "stop"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    print("\nDone. Look at:")
    print(f"  report       {work / 'report.html'}")
    for png in sorted(work.rglob("*.png")):
        if ".kagglekit-home" not in png.parts:
            print(f"  plot         {png}")
    print(f"  outputs      {project / 'outputs'}")
    print("\nTo keep exploring the same emulator and ledger (the demo kept its state in its workspace):")
    print(f"  export KAGGLEKIT_HOME={env['KAGGLEKIT_HOME']}")
    print(f"  cd {project} && kagglekit --local runs      # --local starts the emulator again with the same data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
