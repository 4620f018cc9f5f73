"""``python -m kagglekit.selfcheck``: does this installation bundle and run a kernel?

CI runs it from an installed wheel in a clean venv (cwd=/tmp), where a missing template
or runtime file would otherwise only show up on Kaggle. It bundles a tiny two-module
project in test mode with an override, runs the script with a fake /kaggle root, and
checks what the project printed and the run.json it left. Exits non-zero on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = "class Config:\n    n_epoch = 10\n    running_test = False  # flipped in the bundle\n"
TRAIN = (
    "from config import Config\n"
    "from kagglekit_runtime import mode, working_dir\n"
    "print('SELFCHECK', mode(), Config.running_test, Config.n_epoch, working_dir().name)\n"
)


def check() -> list[str]:
    """Run the check; returns the problems found (empty when all is well)."""
    from kagglekit.bundle import bundle_project
    from kagglekit.run_options import RunOptions

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kagglekit-selfcheck-") as tmp:
        base = Path(tmp)
        project = base / "selfcheck-project"
        (project / "app").mkdir(parents=True)
        (project / "kagglekit.toml").write_text('kernel = "selfcheck/selfcheck-project"\nentry = "app.main"\n')
        (project / "config.py").write_text(CONFIG)
        (project / "app" / "__init__.py").write_text("")
        (project / "app" / "main.py").write_text(TRAIN)
        result = bundle_project(project, base / "kernel", RunOptions(mode="test", sets={"n_epoch": "2"}))
        if (project / "config.py").read_text() != CONFIG:
            problems.append("the local config.py was modified")
        working = base / "kaggle" / "working"
        working.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "PYTHONPATH"))}
        env["KAGGLE_KERNEL_ROOT"] = str(base / "kaggle")
        proc = subprocess.run([sys.executable, str(result.script_path)], cwd=working, env=env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            problems.append(f"the kernel script exited with {proc.returncode}: {proc.stderr[-2000:]}")
        if "SELFCHECK test True 2 working" not in proc.stdout:
            problems.append(f"unexpected kernel output: {proc.stdout[-1000:]!r}")
        manifest = working / "kagglekit" / "run.json"
        try:
            run = json.loads(manifest.read_text())
            if run.get("status") != "complete" or run.get("bundle_sha256") != result.archive_sha256:
                problems.append(f"run.json says {run.get('status')!r}, sha {run.get('bundle_sha256')!r}")
        except (OSError, ValueError) as exc:
            problems.append(f"run.json missing or unreadable: {exc}")
        if result.script_bytes >= result.limit_bytes:
            problems.append("the tiny project's script is over the source limit")
        problems += check_project_template(base / "init-project")
    return problems


def check_project_template(dest: Path) -> list[str]:
    """`kagglekit init` renders the project template, and the result bundles with its test flag found."""
    from kagglekit.bundle import bundle_project
    from kagglekit.run_options import RunOptions
    from kagglekit.scaffold import init_project

    problems: list[str] = []
    init_project(dest, name=None, kernel="selfcheck/init-project", dataset=None, force=False)
    for name in ("config.py", "train.py", "pyproject.toml", "tests/test_smoke.py"):
        if not (dest / name).is_file():
            problems.append(f"init did not write {name}")
    if "[tool.kagglekit]" not in (dest / "pyproject.toml").read_text():
        problems.append("the generated pyproject.toml has no [tool.kagglekit]")
    bundle = bundle_project(dest, dest.parent / "init-kernel", RunOptions(mode="full"))
    if not any("running_test" in str(change) for change in bundle.flag_changes):
        problems.append("the generated project's running_test flag was not found by the bundler")
    return problems


def main() -> int:
    try:
        problems = check()
    except Exception as exc:  # report, never a bare traceback in CI logs without context
        problems = [f"{type(exc).__name__}: {exc}"]
    if problems:
        for p in problems:
            print(f"selfcheck FAILED: {p}", file=sys.stderr)
        return 1
    print("selfcheck ok: bundled a project, ran the kernel script, run.json complete; init template renders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
