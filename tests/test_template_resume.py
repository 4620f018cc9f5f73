"""The generated project's checkpoints: a resumed run is the uninterrupted run, bit for bit, and a
checkpoint is only ever resumed by the run it belongs to.

Everything runs the generated train.py for real, in subprocesses, on the CPU (torch from the venv).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kagglekit.scaffold import init_project
from tests.test_scaffold import PYTHON, edit_config, metrics, project_env, run_project, strict_json

pytestmark = pytest.mark.slow

# Test mode, small: 1030 rows -> 824 training rows = 52 batches of 16 (the last one of 8), so with
# accum_iter = 3 every epoch ends with a one-batch accumulation window. Augmentation draws from numpy's
# and Python's global RNGs, dropout from torch's.
RESUMABLE = {"test_n_example": "1030", "test_n_epoch": "12", "batch_size": "16", "accum_iter": "3",
             "early_stop": "100", "aug_noise_std": "0.1", "aug_drop_prob": "0.3"}


def new_project(path: Path, **values: str) -> Path:
    init_project(path)
    if values:
        edit_config(path, **values)
    return path


def write_table(path: Path, *, rows: int, seed: int, n_feature: int = 16) -> Any:
    """A tabular dataset of the template's shape (id, f0.., target) as a CSV; returns the DataFrame."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, n_feature)).astype("float32")
    table = pd.DataFrame(features, columns=[f"f{i}" for i in range(n_feature)])
    table.insert(0, "id", np.arange(rows))
    table["target"] = (features[:, 0] + features[:, 1] > 0).astype(int) + (features[:, 2] > 1)
    table.to_csv(path, index=False)
    return table


def trained_epochs(stdout: str) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("epoch ")]


def load(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: Any, b: Any, where: str) -> None:
    """Equal, exactly, through nested dicts / lists of tensors and numbers."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in rows]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run the resumed ones are compared with."""
    project = new_project(tmp_path_factory.mktemp("straight") / "straight-run", **RESUMABLE)
    done = run_project(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert trained_epochs(done.stdout) == list(range(1, 13))
    return project


def test_interrupted_and_resumed_run_equals_the_straight_run_bit_for_bit(straight: Path, tmp_path: Path) -> None:
    """Time-guard stop, then SIGKILL mid-epoch, then the rest: same metrics, weights, optimizer and predictions."""
    chained = new_project(tmp_path / "chained-run", **RESUMABLE)
    # 1. A session limit already spent: the time guard stops after the one epoch every session runs.
    first = run_project(chained, env={"KAGGLEKIT_SESSION_LIMIT_SECONDS": "0.01"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert trained_epochs(first.stdout) == [1] and "stopping after epoch 1" in first.stdout
    assert strict_json((chained / "outputs" / "summary.json").read_text())["stop_reason"] == "time"

    # 2. Resumed, then killed (SIGKILL) once a further epoch or two are checkpointed.
    proc = subprocess.Popen([PYTHON, "train.py"], cwd=chained, env=project_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics_file = chained / "outputs" / "metrics.jsonl"
    deadline = time.monotonic() + 300  # a bound on a hang only: epochs take longer under load
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "killed before it could finish"
    killed_at = load(chained / "outputs" / "checkpoint.pt")["epoch"]
    assert 3 <= killed_at < 12

    # 3. The rest of the run.
    rest = run_project(chained)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"resumed from epoch {killed_at}" in rest.stdout
    assert trained_epochs(rest.stdout) == list(range(killed_at + 1, 13))

    assert without_times(metrics(chained)) == without_times(metrics(straight))  # exact floats, every epoch
    a, b = straight / "outputs", chained / "outputs"
    ckpt_a, ckpt_b = load(a / "checkpoint.pt"), load(b / "checkpoint.pt")
    for key in ("model", "optimizer", "rng", "best_epoch", "best_val_loss", "epoch"):
        assert_same_tensors(ckpt_a[key], ckpt_b[key], key)
    assert_same_tensors(load(a / "model.pt"), load(b / "model.pt"), "model.pt")
    assert (a / "submission.csv").read_text() == (b / "submission.csv").read_text()
    summary = strict_json((b / "summary.json").read_text())
    assert (summary["resumed_from_epoch"], summary["epochs_run"], summary["last_epoch"]) == (killed_at,
                                                                                            12 - killed_at, 12)


def test_resume_needs_every_rng_state(straight: Path, tmp_path: Path) -> None:
    """The control for the test above: restoring the torch RNG only (the old template) makes the
    augmented run diverge, so the bit-for-bit equality really depends on the numpy / Python states."""
    partial = new_project(tmp_path / "partial-ctl", **RESUMABLE)
    utils = partial / "utils.py"
    source = utils.read_text()
    old = "    random.setstate((version, tuple(internal), gauss_next))\n"
    assert old in source
    utils.write_text(source.replace(old, "").replace("    np.random.set_state(", "    (lambda *a: None)("))
    assert run_project(partial, env={"KAGGLEKIT_SESSION_LIMIT_SECONDS": "0.01"}).returncode == 0
    edit_config(partial, test_n_epoch="2")  # one more epoch is enough to tell (n_epoch may change on resume)
    rest = run_project(partial)
    assert rest.returncode == 0 and "resumed from epoch 1" in rest.stdout, rest.stdout + rest.stderr
    a, b = metrics(straight), metrics(partial)
    assert a[0]["train_loss"] == b[0]["train_loss"]
    assert a[1]["train_loss"] != b[1]["train_loss"], "the augmentation's draws were not restored, yet equal"


def test_a_changed_setting_or_model_never_resumes_the_old_checkpoint(tmp_path: Path) -> None:
    project = new_project(tmp_path / "changing-run", test_n_epoch="2")
    out = project / "outputs"
    assert run_project(project).returncode == 0

    # the same settings again: the finished run is not retrained
    again = run_project(project)
    assert again.returncode == 0 and "training already finished at epoch 2" in again.stdout
    assert trained_epochs(again.stdout) == []

    # lr changed: a fresh run with the new lr; the old run's files are kept aside
    edit_config(project, lr="3e-2")
    changed = run_project(project)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "resumed from" not in changed.stdout
    assert "it belongs to another run (lr: 0.003 -> 0.03" in changed.stdout and "Starting afresh" in changed.stdout
    assert trained_epochs(changed.stdout) == [1, 2]
    assert [row["lr"] for row in metrics(project)] == [0.03, 0.03]
    assert strict_json((out / "summary.json").read_text())["hyperparameters"]["lr"] == 0.03
    aside = sorted(p.name.split("-", 2)[2] for p in (out / "superseded").iterdir())
    assert aside == ["checkpoint.pt", "metrics.jsonl", "model.pt"]
    old = next((out / "superseded").glob("*-checkpoint.pt"))
    assert load(old)["fingerprint"]["lr"] == 0.003, "the old checkpoint is kept whole"

    # hidden changed and resuming asked for (as `kagglekit push --resume` does on Kaggle: the runtime sets
    # KAGGLEKIT_RESUME_FROM; `train.py --resume` is the same switch): refused (exit 2), nothing touched
    edit_config(project, hidden="32")
    before = (out / "checkpoint.pt").read_bytes()
    refused = run_project(project, env={"KAGGLEKIT_RESUME_FROM": "alice/changing-run/3"})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "asked to resume, but" in refused.stderr and "hidden: 64 -> 32" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (out / "checkpoint.pt").read_bytes() == before and len(list((out / "superseded").iterdir())) == 3

    # without --resume the bigger model starts afresh instead of crashing with a size mismatch
    fresh = run_project(project)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "hidden: 64 -> 32" in fresh.stdout and "model layers.0.weight: 64x16 float32 -> 32x16 float32" in fresh.stdout
    assert tuple(load(out / "checkpoint.pt")["model"]["layers.0.weight"].shape) == (32, 16)

    # more epochs are not a different run: it continues
    edit_config(project, test_n_epoch="3")
    more = run_project(project, "--resume")
    assert more.returncode == 0 and "resumed from epoch 2" in more.stdout and trained_epochs(more.stdout) == [3]

    # a change in model.py alone (same shapes) is a different model
    model_py = project / "model.py"
    model_py.write_text(model_py.read_text().replace("nn.ReLU()", "nn.GELU()"))
    gelu = run_project(project)
    assert gelu.returncode == 0 and "the model's structure" in gelu.stdout and "resumed from" not in gelu.stdout

    # --fresh starts over even with the same settings
    forced = run_project(project, "--fresh")
    assert forced.returncode == 0 and "--fresh was given" in forced.stdout
    assert trained_epochs(forced.stdout) == [1, 2, 3]


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    project = new_project(tmp_path / "no-checkpoint")
    done = run_project(project, "--resume")
    assert done.returncode == 2 and "there is no checkpoint*.pt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "outputs" / "summary.json").exists(), "a refusal to start writes nothing"


def test_a_changed_dataset_is_a_different_run(tmp_path: Path) -> None:
    """A new version of the data (same settings) is not resumed: the fingerprint hashes the training rows."""
    project = new_project(tmp_path / "data-change", test_n_epoch="1", dataset='"alice/tiny"')
    (project / "data" / "tiny").mkdir(parents=True)
    write_table(project / "data" / "tiny" / "train.csv", rows=300, seed=1)
    assert run_project(project).returncode == 0
    write_table(project / "data" / "tiny" / "train.csv", rows=300, seed=2)
    done = run_project(project)
    assert done.returncode == 0 and "data hash:" in done.stdout and "resumed from" not in done.stdout
    assert os.path.isdir(project / "outputs" / "superseded")
