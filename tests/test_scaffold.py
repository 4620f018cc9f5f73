"""`kagglekit init`: the generated project runs as generated, resumes after a kill, and
init never overwrites a user's file.

The generated project is run for real, in subprocesses with the repository's venv python
(torch on CPU), exactly as a user would run it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kagglekit.cli import main
from kagglekit.errors import ConfigError, KagglekitError
from kagglekit.scaffold import init_project
from kagglekit.settings import load_project
from kagglekit.testflag import apply_flags

PYTHON = str(Path(sys.executable))
EXPECTED_FILES = {"README.md", "config.py", "data.py", "model.py", "train.py", "utils.py", "resume.py",
                  "pyproject.toml", ".gitignore", ".kaggleignore", "tests/test_smoke.py"}


def project_env(full: bool = False, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would give train.py (no kagglekit run variables leak in from ours)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLEKIT_")}
    return {**base, "KAGGLEKIT_RUNNING_TEST": "0" if full else "1", **(env or {})}


def run_project(project: Path, *args: str, full: bool = False, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "train.py", *args], cwd=project, env=project_env(full, env),
                          capture_output=True, text=True, timeout=timeout)


def edit_config(project: Path, **values: str) -> None:
    """Change Config literals the way `push --set` does (through testflag), so the test uses the real tool."""
    config = project / "config.py"
    new, changes = apply_flags({"config.py": config.read_text()}, mode=None, sets=values,
                               test_flag="config.py:Config.running_test")
    assert {c.name for c in changes} == set(values)
    config.write_text(new["config.py"])


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN / Infinity, as strict parsers (browsers, Go, jq --strict) do."""
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def metrics(project: Path) -> list[dict[str, float]]:
    return [strict_json(line) for line in (project / "outputs" / "metrics.jsonl").read_text().splitlines()]


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def test_mode_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], float]:
    """One generated project and its test-mode run, shared by the tests that only read them."""
    project = tmp_path_factory.mktemp("gen") / "digits-model"
    init_project(project)
    started = time.perf_counter()
    done = run_project(project)
    return project, done, time.perf_counter() - started


# --- init ------------------------------------------------------------------------------------
def test_init_writes_a_project_whose_settings_kagglekit_reads(tmp_path: Path) -> None:
    result = init_project(tmp_path / "my-first-model")
    project = tmp_path / "my-first-model"
    assert listing(project) == EXPECTED_FILES
    assert set(result.written) == EXPECTED_FILES and not result.skipped and not result.unchanged
    assert (project / "config.py").stat().st_mode & 0o044, "files are readable by others, like a plain open()"

    settings = load_project(project)
    assert (settings.kernel_owner, settings.kernel_slug) == (None, "my-first-model")
    assert settings.title == "My First Model"
    assert settings.entry == "train.py" and settings.accelerator == "gpu" and settings.internet is False
    assert settings.test_flag == "config.py:Config.running_test"
    assert settings.checkpoints == ("checkpoint*.pt", "model.pt")  # --resume carries both
    assert settings.datasets == ()
    for py in project.rglob("*.py"):
        compile(py.read_text(), str(py), "exec")


def test_the_templates_ignore_rules_leave_out_checkpoints_not_modules_named_after_them(tmp_path: Path) -> None:
    """The template's .kaggleignore once had ``checkpoint*``: a user's checkpoint_utils.py vanished from the kernel."""
    from kagglekit.bundle import build_bundle

    project = tmp_path / "ckpt-names"
    init_project(project, kernel="alice/ckpt-names")
    (project / "checkpoint_utils.py").write_text("def latest():\n    return None\n")
    (project / "checkpointing").mkdir()
    (project / "checkpointing" / "__init__.py").write_text("")
    (project / "checkpoints").mkdir()
    (project / "checkpoints" / "epoch3.bin").write_bytes(b"w" * 100)
    (project / "checkpoint_e3.pt").write_bytes(b"w" * 100)
    (project / "model.safetensors").write_bytes(b"w" * 100)
    result = build_bundle(load_project(project), out_dir=tmp_path / "out")
    shipped = {f.path for f in result.files}
    assert {"checkpoint_utils.py", "checkpointing/__init__.py"} <= shipped
    left_out = {x.path for x in result.left_out}
    assert not shipped & {"checkpoints/epoch3.bin", "checkpoint_e3.pt", "model.safetensors"}
    assert "checkpoints/" in left_out


def test_running_test_is_a_literal_the_toggle_tool_can_flip(tmp_path: Path) -> None:
    init_project(tmp_path / "toggle-me")
    source = (tmp_path / "toggle-me" / "config.py").read_text()
    new, changes = apply_flags({"config.py": source}, mode="full", test_flag="config.py:Config.running_test")
    assert [(c.name, c.old, c.new) for c in changes] == [("running_test", "True", "False")]
    tree = ast.parse(new["config.py"])
    config = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    flags = [n for n in config.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "running_test"]
    assert len(flags) == 1 and isinstance(flags[0].value, ast.Constant) and flags[0].value.value is False


def test_kernel_and_dataset_options_fill_the_settings(tmp_path: Path) -> None:
    result = init_project(tmp_path / "x", kernel="alice/my-model", dataset="bob/house-prices")
    settings = load_project(tmp_path / "x")
    assert result.kernel == "alice/my-model"
    assert (settings.kernel_owner, settings.kernel_slug, settings.title) == ("alice", "my-model", "My Model")
    assert settings.datasets == ("bob/house-prices",)
    config = (tmp_path / "x" / "config.py").read_text()
    assert '    dataset = None\n    # dataset = "bob/house-prices"' in config, "one line away, still runnable"


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"kernel": "alice/My-Model"}, ConfigError, "not a Kaggle slug"),
    ({"kernel": "alice/"}, ConfigError, "owner/slug"),
    ({"dataset": "just-a-slug"}, ConfigError, "owner/slug"),
    ({"name": "abc"}, ConfigError, "too short"),
    ({"name": "Totally Different", "kernel": "alice/my-model"}, ConfigError, "resolves to the slug"),
])
def test_init_rejects_names_kaggle_would_refuse(tmp_path: Path, kwargs: dict[str, Any], error: type,
                                                 text: str) -> None:
    with pytest.raises(error, match=text):
        init_project(tmp_path / "some-project", **kwargs)
    assert not (tmp_path / "some-project").exists() or not any((tmp_path / "some-project").iterdir())


def test_init_refuses_a_non_empty_folder_and_lists_what_is_there(tmp_path: Path) -> None:
    project = tmp_path / "taken-folder"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    (project / "data").mkdir()
    with pytest.raises(KagglekitError) as info:
        init_project(project)
    assert "notes.txt" in info.value.message and "data/" in info.value.message
    assert "--force" in (info.value.hint or "")
    assert listing(project) == {"notes.txt"}


def test_force_never_overwrites_a_users_file(tmp_path: Path) -> None:
    project = tmp_path / "force-project"
    init_project(project)
    pristine = (project / "config.py").read_text()
    (project / "config.py").write_text("# my own config\n")
    (project / "README.md").write_text("# my readme\n")
    (project / "train.py.new").write_text("my own scratch file\n")
    (project / "train.py").write_text("print('mine')\n")

    result = init_project(project, force=True)

    assert (project / "config.py").read_text() == "# my own config\n"
    assert (project / "README.md").read_text() == "# my readme\n"
    assert (project / "train.py").read_text() == "print('mine')\n"
    assert (project / "train.py.new").read_text() == "my own scratch file\n", "a user's .new is left alone too"
    assert set(result.skipped) == {"config.py", "README.md", "train.py"}
    assert set(result.new_files) == {"config.py.new", "README.md.new"}
    assert (project / "config.py.new").read_text() == pristine
    assert set(result.unchanged) == EXPECTED_FILES - {"config.py", "README.md", "train.py"}
    assert not result.written

    again = init_project(project, force=True)  # idempotent: the .new files now match the template
    assert (project / "config.py").read_text() == "# my own config\n"
    assert set(again.new_files) == {"config.py.new", "README.md.new"}


def test_cli_init_prints_what_it_did_and_refuses_without_force(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cli-project"
    with pytest.raises(SystemExit) as done:
        main(["init", str(target), "--kernel", "alice/cli-project"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "wrote      config.py" in out and "kagglekit push --gpu --test --wait" in out
    assert "alice/cli-project" in out

    with pytest.raises(SystemExit) as done:
        main(["init", str(target)])
    err = capsys.readouterr().err
    assert done.value.code == KagglekitError.exit_code
    assert "is not empty" in err and "config.py" in err and "Hint:" in err and "Traceback" not in err


# --- the generated project, run for real -----------------------------------------------------------
@pytest.mark.slow
def test_generated_test_mode_runs_on_cpu_under_60s(
        test_mode_run: tuple[Path, subprocess.CompletedProcess[str], float]) -> None:
    project, done, seconds = test_mode_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert seconds < 60, f"test mode took {seconds:.1f}s"
    out = project / "outputs"
    summary = strict_json((out / "summary.json").read_text())
    rows = metrics(project)
    assert summary["running_test"] is True and summary["device"] == "cpu" and summary["amp"] is False
    hyper = summary["hyperparameters"]
    assert (hyper["batch_size"], hyper["accum_iter"], hyper["effective_batch_size"]) == (64, 2, 128)
    assert (hyper["lr"], hyper["seed"], hyper["hidden"], hyper["dropout"]) == (3e-3, 923, 64, 0.1)
    assert hyper["optimizer"]["name"] == "AdamW" and hyper["optimizer"]["betas"] == [0.9, 0.999]
    assert hyper["optimizer"]["weight_decay"] == 1e-4
    import torch

    assert (summary["gpu"], summary["cudnn"]) == (None, None) and summary["cuda"] == torch.version.cuda  # no GPU
    assert summary["deterministic"] is True
    assert summary["peak_gpu_mb"] == summary["peak_gpu_reserved_mb"] == 0.0
    assert (summary["n_example"], summary["full_n_example"]) == (400, 20000)
    assert (summary["n_epoch"], summary["full_n_epoch"]) == (10, 30)
    assert [r["epoch"] for r in rows] == list(range(1, summary["last_epoch"] + 1))
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "score", "epoch_time_s", "lr"}
    assert summary["best_val_loss"] == min(r["val_loss"] for r in rows)
    assert summary["parameters"] > 0 and summary["peak_ram_mb"] > 0
    submission = (out / "submission.csv").read_text().splitlines()
    assert submission[0] == "id,target" and len(submission) == summary["n_test"] + 1
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    versions = strict_json((out / "versions.json").read_text())
    assert versions["packages"]["torch"].startswith("2.")
    assert {"gpu", "cuda", "cudnn", "deterministic"} <= set(versions)
    assert "resumed from" not in done.stdout


@pytest.mark.slow
def test_generated_projects_own_smoke_test_passes(
        test_mode_run: tuple[Path, subprocess.CompletedProcess[str], float]) -> None:
    project = test_mode_run[0]
    done = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_checkpoint_save_is_atomic(tmp_path: Path) -> None:
    """A save that fails half-way leaves the previous checkpoint whole (torch.save to tmp, then rename)."""
    project = tmp_path / "atomic-project"
    init_project(project)
    script = """
import os, torch
from utils import save_atomic

class Boom:
    def __reduce__(self):
        raise RuntimeError("disk full")

save_atomic({"epoch": 1, "w": torch.zeros(1000)}, "ckpt.pt")
try:
    save_atomic({"epoch": 2, "w": torch.ones(1000), "bad": Boom()}, "ckpt.pt")
except RuntimeError:
    pass
else:
    raise SystemExit("the failing save did not fail")
print(torch.load("ckpt.pt", weights_only=True)["epoch"])
"""
    done = subprocess.run([PYTHON, "-c", script], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
