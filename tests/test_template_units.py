"""Pieces of the generated project checked one by one (in one subprocess, with the project's own modules):
the gradient-accumulation weights, the RNG states a checkpoint carries, the seeding, the GPU record.

The CUDA branches cannot run on this CPU-only machine; what can be checked here is that they are
guarded (no CUDA call without a GPU) and that a checkpoint carrying CUDA states says so on a CPU.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from kagglekit.scaffold import init_project
from tests.test_scaffold import PYTHON, project_env

SCRIPT = r'''
import io, json, random, sys
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from config import Config
import train
from utils import gpu_info, random_seed, rng_states, set_rng_states

results = {}

# --- gradient accumulation: 13 rows, batches of 2 (the last of 1), accum_iter 3 -> windows of 6, 6, 1 rows
Config.accum_iter, Config.device = 3, "cpu"
torch.manual_seed(0)
x, y = torch.randn(13, 4), torch.randint(0, 3, (13,))
loader = DataLoader(TensorDataset(x, y), batch_size=2, shuffle=False)
results["weights"] = [round(train.accumulation_weight(i, 1 if i == 6 else 2, loader), 6) for i in range(7)]

def fresh_model():
    torch.manual_seed(1)
    return nn.Linear(4, 3)

model = fresh_model()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
scaler = torch.amp.GradScaler("cuda", enabled=False)
train.train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, scaler, False, train.BadSteps(3), 1)

def manual(last_window_scale):
    """SGD on the mean loss of each window of rows (what one big batch per window would do)."""
    ref = fresh_model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    for start, stop, scale in ((0, 6, 1.0), (6, 12, 1.0), (12, 13, last_window_scale)):
        opt.zero_grad()
        (nn.functional.cross_entropy(ref(x[start:stop]), y[start:stop]) * scale).backward()
        opt.step()
    return ref

exact, old = manual(1.0), manual(1 / 3)  # the old template scaled a one-batch window by 1/accum_iter
results["accum_max_diff"] = max((a - b).abs().max().item() for a, b in zip(model.parameters(), exact.parameters()))
results["old_max_diff"] = max((a - b).abs().max().item() for a, b in zip(model.parameters(), old.parameters()))

# --- RNG states: save, draw, restore (through torch.save / weights_only load), draw again
random_seed(5)
results["seeded_python"] = [random.random(), random_seed(5), random.random()]
saved = rng_states()
buffer = io.BytesIO()
torch.save(saved, buffer)
buffer.seek(0)
loaded = torch.load(buffer, weights_only=True)

def draw():
    return [random.random(), random.gauss(0, 1), float(np.random.normal()), torch.rand(2).tolist()]

first = draw()
draw()
note = set_rng_states(loaded)
results["rng_equal"] = draw() == first
results["rng_note"] = note
results["cuda_state_saved"] = saved["cuda"]
loaded["cuda"] = [torch.zeros(16, dtype=torch.uint8)]  # as a GPU run would have saved it
results["cuda_note_on_cpu"] = set_rng_states(loaded)
results["gpu_info"] = gpu_info()
results["cuda_initialized"] = torch.cuda.is_initialized()
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("units") / "unit-project"
    init_project(project)
    done = subprocess.run([PYTHON, "-c", SCRIPT], cwd=project, env=project_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return data


def test_last_partial_accumulation_window_is_scaled_by_its_real_size(results: dict[str, Any]) -> None:
    # rows per window 6, 6, 1: each batch counts its share of its window's rows
    assert results["weights"] == [round(2 / 6, 6)] * 6 + [1.0]
    assert results["accum_max_diff"] < 1e-6, "accumulated steps equal one step per window of rows"
    assert results["old_max_diff"] > 1e-3, "the check can tell the old 1/accum_iter scaling apart"


def test_every_cpu_rng_state_round_trips_through_a_checkpoint(results: dict[str, Any]) -> None:
    first, _, again = results["seeded_python"]
    assert first == again, "random_seed seeds Python's random"
    assert results["rng_equal"] is True and results["rng_note"] is None


def test_cuda_paths_are_guarded_without_a_gpu(results: dict[str, Any]) -> None:
    assert results["cuda_state_saved"] is None  # no GPU: no CUDA state, and no CUDA call made
    assert results["cuda_note_on_cpu"] == "the checkpoint has CUDA RNG states but there is no GPU now"
    assert results["gpu_info"]["gpu"] is None and results["gpu_info"]["cudnn"] is None
    assert results["gpu_info"]["deterministic"] is True
    assert results["cuda_initialized"] is False
