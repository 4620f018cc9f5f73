"""Issue 10, items 1, 2 and 13 (outputs): concurrent pulls, foreign part files, long and reserved names.

Real kernels run in the emulator; the real ``kagglekit`` CLI pulls their outputs (in
subprocesses where two must run at once); what lands on disk is compared byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from kagglekit.api.client import KaggleApiClient
from kagglekit.constants import DEMO_KEY, DEMO_USERNAME
from kagglekit.credentials import demo_credentials
from tests.helpers import make_kernel


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_kernel(emulator: Any, tmp_path: Path, slug: str, script: str) -> Path:
    with KaggleApiClient(demo_credentials(), endpoint=emulator.url, timeout=(5, 20)) as client:
        pushed = client.push(make_kernel(tmp_path / f"src-{slug}", slug, textwrap.dedent(script)))
    assert emulator.wait_for_status(DEMO_USERNAME, slug, pushed.version, timeout=60) == "COMPLETE"
    return Path(emulator.output_dir(DEMO_USERNAME, slug, pushed.version))


def pull_cmd(emulator: Any, slug: str, target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kagglekit", "--endpoint", emulator.url, "pull-outputs",
            f"{DEMO_USERNAME}/{slug}", "-o", str(target), *extra]


def env() -> dict[str, str]:
    return {**os.environ, "KAGGLE_USERNAME": DEMO_USERNAME, "KAGGLE_KEY": DEMO_KEY,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def test_two_pulls_into_one_folder_at_once_both_end_with_identical_bytes(emulator: Any, tmp_path: Path) -> None:
    source = run_kernel(emulator, tmp_path, "big-output", """
        import random
        with open("big.bin", "wb") as f:
            f.write(random.Random(3).randbytes(8_000_000))
    """)
    emulator.control("faults", {"target": "file:big.bin", "times": 4, "bandwidth_bytes_per_s": 4_000_000})
    target = tmp_path / "same"
    procs = [subprocess.Popen(pull_cmd(emulator, "big-output", target), env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert (target / "big.bin").stat().st_size == 8_000_000
    assert sha(target / "big.bin") == sha(source / "big.bin")
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".log") and p.name != "log.txt") \
        == ["big.bin"]  # the target holds the outputs, nothing of kagglekit's


def test_outputs_named_like_kagglekit_part_files_or_manifest_do_not_corrupt_anything(
        emulator: Any, tmp_path: Path) -> None:
    source = run_kernel(emulator, tmp_path, "hostile-names", """
        import os, random
        rng = random.Random(5)
        os.makedirs(".kagglekit")
        for name in ["model.bin", ".model.bin.part", ".model.bin.part.meta", ".kagglekit-manifest.json",
                     "x" * 250, ".kagglekit/log.txt"]:
            with open(name, "wb") as f:
                f.write(rng.randbytes(3000) if name == "model.bin" else ("foreign " + name[:20]).encode() * 5)
    """)
    target = tmp_path / "t"
    for attempt in range(2):  # the second pull must still see complete, correct files
        done = subprocess.run(pull_cmd(emulator, "hostile-names", target), env=env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        for name in ["model.bin", ".model.bin.part", ".model.bin.part.meta", ".kagglekit-manifest.json", "x" * 250,
                     ".kagglekit/log.txt"]:
            assert sha(target / name) == sha(source / name), (attempt, name)
