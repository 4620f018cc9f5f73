"""Bundling a multi-file project into one kernel script, run for real with a fake /kaggle.

The generated script is executed in a subprocess with ``KAGGLE_KERNEL_ROOT=<tmp>/kaggle``
and cwd ``<tmp>/kaggle/working``, exactly as the emulator (and Kaggle) runs it, so the
assertions are about what the project itself saw and wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kagglekit.bundle import build_bundle, bundle_project, format_summary
from kagglekit.cli import cli
from kagglekit.errors import BundleError
from kagglekit.run_options import RunOptions
from kagglekit.settings import load_project

CONFIG_PY = '''\
import os


class Config:
    data_path = "data/train.csv"
    at_cloud = 'kaggle/working' in os.getcwd()
    n_example = 60000
    n_epoch = 30  # the real run
    lr = 1e-3
    running_test = True  # flipped by kagglekit --test/--full in the bundled copy
    if running_test:
        n_example = 20
        n_epoch = 2
'''

TRAIN_PY = '''\
"""Entry module: proves which mode ran, which overrides applied, and what was shipped."""
import json
import os
import sys

from config import Config
from mnist.data.loader import load
from mnist.model import build

try:
    from kagglekit_runtime import mode, project_dir, running_test
except ImportError:  # running locally
    def mode(): return None
    def running_test(): return False
    def project_dir(): return None


def main():
    shipped = sorted(str(p.relative_to(project_dir())) for p in project_dir().rglob("*") if p.is_file())
    result = {
        "config_running_test": Config.running_test,
        "n_epoch": Config.n_epoch,
        "n_example": Config.n_example,
        "lr": Config.lr,
        "at_cloud": Config.at_cloud,
        "runtime_mode": mode(),
        "runtime_running_test": running_test(),
        "env_mode": os.environ.get("KAGGLEKIT_MODE"),
        "env_running_test": os.environ.get("KAGGLEKIT_RUNNING_TEST"),
        "cwd": os.getcwd(),
        "argv0": sys.argv[0],
        "model": build(),
        "rows": load(),
        "shipped": shipped,
    }
    with open("result.json", "w") as f:
        json.dump(result, f)
    print("RESULT", json.dumps({k: result[k] for k in ("runtime_mode", "n_epoch")}))


if __name__ == "__main__":
    main()
'''


def make_project(root: Path, *, kagglekit_toml: str | None = None) -> Path:
    """A realistic multi-module project: package, config, entry module, and things that must not ship."""
    files = {
        "kagglekit.toml": kagglekit_toml or 'kernel = "demo/mnist-multi"\nentry = "mnist.train"\n',
        "config.py": CONFIG_PY,
        "README.md": "# mnist\n",
        "mnist/__init__.py": "",
        "mnist/train.py": TRAIN_PY,
        "mnist/model.py": "def build():\n    return 'mlp-2x128'\n",
        # a package named data inside the code: code, not data, so it ships
        "mnist/data/__init__.py": "",
        "mnist/data/loader.py": "def load():\n    return 3\n",
        "mnist/__pycache__/model.cpython-311.pyc": "junk",
        ".gitignore": "*.log\nscratch/\n",
        "train.log": "old log\n",
        "scratch/notes.txt": "x\n",
        ".venv/pyvenv.cfg": "home = /usr/bin\n",
        ".venv/lib/site.py": "x = 1\n",
        "myenv/pyvenv.cfg": "home = /usr/bin\n",
        "myenv/lib/thing.py": "x = 1\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        "outputs/run1/metrics.json": "{}\n",
        "notebooks/.ipynb_checkpoints/a.ipynb": "{}\n",
        "mnist.egg-info/PKG-INFO": "x\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_bytes(b"label,pixels\n" * 200_000)  # 2.6 MB: would blow the limit
    (root / "data" / "labels.csv").write_text("a,b\n")
    (root / "model.pt").write_bytes(os.urandom(300_000))
    return root


def run_kernel(script: Path, tmp: Path, *, env: dict[str, str] | None = None, timeout: float = 60,
               wait: bool = True) -> Any:
    """Run a bundled script as a kernel would: fake /kaggle root, cwd /kaggle/working, clean env."""
    root = tmp / "kaggle"
    working = root / "working"
    working.mkdir(parents=True, exist_ok=True)
    (root / "input").mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "PYTHONPATH"))}
    full_env.update({"KAGGLE_KERNEL_ROOT": str(root), "KAGGLEKIT_WATCHDOG_INTERVAL": "0.2",
                     "PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = [sys.executable, str(script)]
    if not wait:
        return subprocess.Popen(cmd, cwd=working, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=working, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_run_json(tmp: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / "kaggle" / "working" / "kagglekit" / "run.json").read_text())
    return data


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "mnist-multi")


def test_test_and_full_modes_run_with_the_right_values_and_the_local_file_stays(project: Path,
                                                                                tmp_path: Path) -> None:
    before = (project / "config.py").read_bytes()

    test = bundle_project(project, tmp_path / "out-test", RunOptions(mode="test"))
    proc = run_kernel(test.script_path, tmp_path / "run-test")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run-test" / "kaggle" / "working" / "result.json").read_text())
    assert res["config_running_test"] is True and res["n_epoch"] == 2 and res["n_example"] == 20
    assert (res["runtime_mode"], res["runtime_running_test"], res["env_mode"], res["env_running_test"]) == \
        ("test", True, "test", "1")
    assert res["at_cloud"] is True and res["cwd"].endswith(os.path.join("kaggle", "working"))
    assert res["model"] == "mlp-2x128" and res["rows"] == 3

    full = bundle_project(project, tmp_path / "out-full",
                          RunOptions(mode="full", sets={"n_epoch": "1", "lr": "3e-4"}))
    proc = run_kernel(full.script_path, tmp_path / "run-full")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run-full" / "kaggle" / "working" / "result.json").read_text())
    assert res["config_running_test"] is False and res["n_epoch"] == 1 and res["n_example"] == 60000
    assert res["lr"] == 3e-4 and res["runtime_mode"] == "full" and res["env_running_test"] == "0"
    assert 'RESULT {"runtime_mode": "full", "n_epoch": 1}' in proc.stdout
    assert [str(c) for c in full.flag_changes] == ["config.py:8 n_epoch: 30 → 1", "config.py:9 lr: 1e-3 → 3e-4",
                                                   "config.py:10 running_test: True → False",
                                                   "config.py:13 n_epoch: 2 → 1"]
    run = read_run_json(tmp_path / "run-full")
    assert run["mode"] == "full" and run["overrides"] == {"lr": "3e-4", "n_epoch": "1"}
    assert run["status"] == "complete" and run["exit_code"] == 0
    assert run["bundle_sha256"] == full.archive_sha256

    assert (project / "config.py").read_bytes() == before  # local sources untouched
    # only code shipped: exactly these files, in the kernel and in the summary
    expected = ["README.md", "config.py", "kagglekit.toml", "mnist/__init__.py", "mnist/data/__init__.py",
                "mnist/data/loader.py", "mnist/model.py", "mnist/train.py"]
    assert res["shipped"] == expected
    assert [f.path for f in full.files] == expected
    reasons = {x.path: x.reason for x in full.left_out}
    assert reasons["data/"] == "data" and reasons[".venv/"] == "virtualenv" and reasons["myenv/"] == "virtualenv"
    assert reasons[".git/"] == "version control" and reasons["scratch/"] == ".gitignore"
    assert reasons["outputs/"] == "outputs"
    # nothing of the project was extracted into the output folder
    working = sorted(p.relative_to(tmp_path / "run-full" / "kaggle" / "working").as_posix()
                     for p in (tmp_path / "run-full" / "kaggle" / "working").rglob("*") if p.is_file())
    assert working == ["kagglekit/run.json", "result.json"]


def test_same_project_gives_a_byte_identical_script(project: Path, tmp_path: Path) -> None:
    a = bundle_project(project, tmp_path / "a", RunOptions(mode="full", sets={"n_epoch": "1", "lr": "0.1"}))
    for path in project.rglob("*.py"):  # new mtimes, same content
        os.utime(path, (1_000_000_000, 1_000_000_000))
    b = bundle_project(project, tmp_path / "b", RunOptions(mode="full", sets={"lr": "0.1", "n_epoch": "1"}))
    assert a.script_path.read_bytes() == b.script_path.read_bytes()
    assert a.metadata_path.read_bytes() == b.metadata_path.read_bytes()
    assert a.archive_sha256 == b.archive_sha256
    (project / "mnist" / "model.py").write_text("def build():\n    return 'cnn'\n")
    c = bundle_project(project, tmp_path / "c", RunOptions(mode="full", sets={"n_epoch": "1", "lr": "0.1"}))
    assert c.archive_sha256 != a.archive_sha256


@pytest.mark.parametrize("names", [["kaggle.json"], [".env"], ["kaggle.json", ".env", "keys/id_rsa",
                                                                  "deploy.pem", "access_token"]])
def test_planted_secrets_are_refused_by_name(project: Path, tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text('{"username": "alice", "key": "0123"}\n')
    with pytest.raises(BundleError) as err:
        bundle_project(project, tmp_path / "out", RunOptions())
    for name in names:
        assert name in err.value.message
    assert ".kaggleignore" in (err.value.hint or "")
    assert not (tmp_path / "out").exists()


def test_an_include_pattern_cannot_bring_a_secret_back_but_kaggleignore_leaves_it_out(project: Path,
                                                                                     tmp_path: Path) -> None:
    (project / "kaggle.json").write_text("{}")
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.train"\n'
                                            'include = ["kaggle.json"]\n')
    with pytest.raises(BundleError, match=r"kaggle\.json"):
        bundle_project(project, tmp_path / "out", RunOptions())
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.train"\n')
    (project / ".kaggleignore").write_text("kaggle.json\n")
    result = bundle_project(project, tmp_path / "out", RunOptions())
    assert "kaggle.json" not in {f.path for f in result.files}


def test_a_key_inside_a_code_file_is_refused(project: Path, tmp_path: Path) -> None:
    (project / "mnist" / "upload.py").write_text('TOKEN = "KGAT_' + "ab" * 16 + '"\n')
    with pytest.raises(BundleError) as err:
        bundle_project(project, tmp_path / "out", RunOptions())
    assert "mnist/upload.py" in err.value.message and "KGAT_" not in err.value.message


def test_oversized_project_travels_in_a_code_dataset_and_the_loader_runs_it(project: Path, tmp_path: Path) -> None:
    rng = random.Random(7)
    (project / "mnist" / "weights.bin").write_bytes(rng.randbytes(2_000_000))
    result = bundle_project(project, tmp_path / "out", RunOptions(mode="test"))
    assert result.code_dataset == "demo/mnist-multi-code"
    assert result.inline_script_bytes > 1024 * 1024 > 20 * result.script_bytes  # a small loader
    assert result.metadata["dataset_sources"] == ["demo/mnist-multi-code"]
    assert result.code_dataset_dir is not None
    (archive,) = result.code_dataset_dir.iterdir()
    assert archive.name == f"bundle-{result.archive_sha256[:16]}.tar.xz"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == result.archive_sha256
    assert "through dataset demo/mnist-multi-code" in format_summary(result)
    # Mounted the way Kaggle mounts a dataset today, it runs exactly as the inline bundle does.
    mount = tmp_path / "run" / "kaggle" / "input" / "datasets" / "demo" / "mnist-multi-code"
    mount.mkdir(parents=True)
    shutil.copy(archive, mount / archive.name)
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run" / "kaggle" / "working" / "result.json").read_text())
    assert res["config_running_test"] is True
    # Not mounted: a clear message, exit 2, nothing run.
    proc = run_kernel(result.script_path, tmp_path / "bare")
    assert proc.returncode == 2 and "code dataset demo/mnist-multi-code is not mounted" in proc.stderr
    # A tampered archive is refused by its hash.
    (mount / archive.name).write_bytes(archive.read_bytes()[:-1] + b"x")
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 2 and "damaged" in proc.stderr


def test_oversized_project_names_the_largest_contributors(project: Path, tmp_path: Path) -> None:
    rng = random.Random(7)
    (project / "mnist" / "weights.bin").write_bytes(rng.randbytes(900_000))
    (project / "mnist" / "vocab.txt").write_bytes(rng.randbytes(300_000))
    settings = load_project(project)
    with pytest.raises(BundleError) as err:  # no code dataset to carry it (no owner known, e.g.)
        build_bundle(settings, out_dir=tmp_path / "out", code_dataset=None)
    msg = err.value.message
    assert "1 MiB" in msg and "1,048,576" in msg
    assert msg.index("mnist/weights.bin") < msg.index("mnist/vocab.txt")
    assert "dataset" in (err.value.hint or "") and ".kaggleignore" in (err.value.hint or "")
    assert not (tmp_path / "out").exists()


def test_cli_bundle_of_big_code_without_an_owner_says_how_it_can_travel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    from kagglekit.cli import main

    root = tmp_path / "bigcode"
    (root / "pkg").mkdir(parents=True)
    (root / "kagglekit.toml").write_text('kernel = "big-code"\nentry = "pkg.main"\ntest-flag = false\n')
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "main.py").write_text("from pkg import table\n")
    (root / "pkg" / "table.py").write_text(f"DATA = {base64.b64encode(random.Random(3).randbytes(1_200_000)).decode()!r}\n")
    with pytest.raises(SystemExit) as exc:
        main(["bundle", str(root), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 11, err
    assert 'kernel = "owner/slug"' in err and "<owner>/<slug>-code" in err and "Traceback" not in err
    (root / "kagglekit.toml").write_text('kernel = "demo/big-code"\nentry = "pkg.main"\ntest-flag = false\n')
    res = CliRunner().invoke(cli, ["bundle", str(root), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out" / "code-dataset").glob("bundle-*.tar.xz"))) == 1


def test_ignore_rules_kaggleignore_negation_and_include_into_an_excluded_folder(project: Path,
                                                                                tmp_path: Path) -> None:
    (project / ".kaggleignore").write_text("README.md\n!model.pt\n")
    (project / "mnist" / "deep").mkdir()
    (project / "mnist" / "deep" / ".gitignore").write_text("*.tmp\n")
    (project / "mnist" / "deep" / "a.tmp").write_text("x")
    (project / "mnist" / "deep" / "b.py").write_text("x = 1\n")
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.train"\n'
                                            'include = ["data/labels.csv"]\nexclude = ["mnist/model.py"]\n')
    result = bundle_project(project, tmp_path / "out", RunOptions())
    paths = {f.path for f in result.files}
    assert "README.md" not in paths and "model.pt" in paths and "data/labels.csv" in paths
    assert "data/train.csv" not in paths and "mnist/model.py" not in paths
    assert "mnist/deep/b.py" in paths and "mnist/deep/a.tmp" not in paths


@pytest.mark.parametrize(("run", "toml_extra", "shape", "gpu", "tpu", "internet"), [
    (RunOptions(accelerator="gpu"), "", "NvidiaTeslaT4", True, False, True),
    (RunOptions(accelerator="tpu", internet=False), "", "TpuV5E8", False, True, False),
    (RunOptions(), "", "None", False, False, True),
    (RunOptions(accelerator="NvidiaL4"), 'competitions = ["titanic"]\n', "NvidiaL4", True, False, False),
    (RunOptions(internet=True), 'competitions = ["titanic"]\naccelerator = "gpu"\n', "NvidiaTeslaT4", True,
     False, True),
])
def test_metadata_always_states_machine_shape_and_internet(project: Path, tmp_path: Path, run: RunOptions,
                                                           toml_extra: str, shape: str, gpu: bool, tpu: bool,
                                                           internet: bool) -> None:
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.train"\n'
                                            'datasets = ["demo/digits"]\n' + toml_extra)
    result = bundle_project(project, tmp_path / "out", run)
    meta = json.loads(result.metadata_path.read_text())
    assert meta["machine_shape"] == shape and meta["enable_internet"] is internet
    assert (meta["enable_gpu"], meta["enable_tpu"]) == (gpu, tpu)
    assert meta["id"] == "demo/mnist-multi" and meta["title"] == "Mnist Multi"
    assert meta["code_file"] == "mnist-multi.py" and (result.out_dir / "mnist-multi.py").is_file()
    assert meta["language"] == "python" and meta["kernel_type"] == "script" and meta["is_private"] is True
    assert meta["dataset_sources"] == ["demo/digits"]


def test_session_limit_is_baked_from_the_timeout(project: Path, tmp_path: Path) -> None:
    settings = load_project(project, overrides={"timeout": "90m", "accelerator": "tpu"})
    result = build_bundle(settings, out_dir=tmp_path / "out")
    assert result.session_limit_s == 5400
    assert "'session_limit_s': 5400," in result.script_path.read_text()


def test_missing_entry_and_missing_flag_are_clear(project: Path, tmp_path: Path) -> None:
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.trian"\n')
    with pytest.raises(BundleError, match=r"mnist/trian\.py"):
        bundle_project(project, tmp_path / "out", RunOptions())
    (project / "kagglekit.toml").write_text('kernel = "demo/mnist-multi"\nentry = "mnist.train"\n')
    (project / "config.py").write_text("class Config:\n    n_epoch = 3\n")
    with pytest.raises(BundleError) as err:
        bundle_project(project, tmp_path / "out", RunOptions(mode="test"))
    assert 'test-flag = "config.py:Config.running_test"' in (err.value.hint or "")


def test_cli_bundle_prints_changes_and_json(project: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli-out"
    res = runner.invoke(cli, ["bundle", str(project), "-o", str(out), "--full", "--set", "n_epoch=1", "--gpu"])
    assert res.exit_code == 0, res.output
    assert "config.py:10 running_test: True → False" in res.output
    assert "config.py:8 n_epoch: 30 → 1" in res.output
    assert "data/ (data)" in res.output and "GPU T4 x2 (NvidiaTeslaT4)" in res.output and "% of Kaggle's source limit)" in res.output
    assert "MiB" not in res.output and "KiB" not in res.output  # one unit for sizes: display.size's
    res = runner.invoke(cli, ["bundle", str(project), "-o", str(tmp_path / "cpu-out"), "--cpu"])
    assert res.exit_code == 0 and "CPU (no accelerator)" in res.output and "None" not in res.output, res.output
    res = runner.invoke(cli, ["bundle", str(project), "-o", str(out), "--test", "--tpu", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["machine_shape"] == "TpuV5E8" and data["mode"] == "test"
    assert data["script_bytes"] == (out / "mnist-multi.py").stat().st_size
    assert data["flag_changes"][0]["name"] == "running_test"


def test_cli_bad_options_are_config_errors(project: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from kagglekit.cli import main

    for argv, needle in ((["--test", "--full"], "contradict"), (["--gpu", "--tpu"], "Conflicting"),
                         (["--set", "n_epoch"], "NAME=VALUE"), (["--accelerator", "NvidiaK80"], "not valid")):
        with pytest.raises(SystemExit) as exc:
            main(["bundle", str(project), "-o", str(tmp_path / "o"), *argv])
        assert exc.value.code == 3, argv
        assert needle in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "kagglekit", "bundle", str(project), "--gpu", "--tpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 3 and "Conflicting accelerators" in proc.stderr and "Traceback" not in proc.stderr


# --- through the official client, against the emulator -----------------------------------------

def test_official_kaggle_cli_accepts_the_bundle_and_the_run_completes(project: Path, tmp_path: Path,
                                                                     kaggle_cli: Any, emulator: Any) -> None:
    result = bundle_project(project, tmp_path / "out", RunOptions(mode="full", sets={"n_epoch": "1"}))
    proc = kaggle_cli("kernels", "push", "-p", str(result.out_dir))
    assert proc.returncode == 0 and "successfully pushed" in proc.stdout, proc.stdout + proc.stderr
    assert emulator.wait_for_status("demo", "mnist-multi", timeout=60) == "COMPLETE"
    out = emulator.output_dir("demo", "mnist-multi")
    res = json.loads((out / "result.json").read_text())
    assert (res["runtime_mode"], res["config_running_test"], res["n_epoch"], res["at_cloud"]) == \
        ("full", False, 1, True)
    run = json.loads((out / "kagglekit" / "run.json").read_text())
    assert run["status"] == "complete" and run["kernel"] == "demo/mnist-multi"
    assert run["bundle_sha256"] == result.archive_sha256


@pytest.mark.emulator_config({"session_limit_seconds": {"cpu": 3, "gpu": 3, "tpu": 3}})
def test_a_run_killed_by_the_session_limit_still_leaves_run_json(tmp_path: Path, kaggle_cli: Any,
                                                                 emulator: Any) -> None:
    root = tmp_path / "endless-loop"
    root.mkdir()
    (root / "kagglekit.toml").write_text('kernel = "demo/endless-loop"\nentry = "train.py"\n')
    (root / "train.py").write_text("import time\nprint('training', flush=True)\nwhile True:\n    time.sleep(0.1)\n")
    result = bundle_project(root, tmp_path / "out", RunOptions())
    proc = kaggle_cli("kernels", "push", "-p", str(result.out_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert emulator.wait_for_status("demo", "endless-loop", timeout=60) == "CANCEL_ACKNOWLEDGED"
    run = json.loads((emulator.output_dir("demo", "endless-loop") / "kagglekit" / "run.json").read_text())
    assert run["status"] == "running" and run["ended_at"] is None  # the kill left the last tick
    assert run["kernel"] == "demo/endless-loop" and run["bundle_sha256"] == result.archive_sha256


def test_a_file_that_does_not_compile_is_refused_with_its_line(tmp_path: Path) -> None:
    root = tmp_path / "syntax-check"
    root.mkdir()
    (root / "kagglekit.toml").write_text('kernel = "alice/syntax-check"\nentry = "train.py"\n')
    (root / "train.py").write_text("import helper\n")
    (root / "helper.py").write_text("x = 1\n\ndef broken(:\n    pass\n")
    from kagglekit.bundle import bundle_project
    from kagglekit.errors import BundleError
    from kagglekit.run_options import RunOptions

    with pytest.raises(BundleError) as exc:
        bundle_project(root, tmp_path / "out", RunOptions())
    assert exc.value.message.startswith("helper.py:3: ")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_syntax_newer_than_kaggles_python_and_shadowed_modules_are_flagged(tmp_path: Path) -> None:
    from kagglekit.bundle import bundle_project
    from kagglekit.errors import BundleError
    from kagglekit.run_options import RunOptions

    root = tmp_path / "py-version"
    root.mkdir()
    (root / "kagglekit.toml").write_text('kernel = "alice/py-version"\nentry = "train.py"\n')
    (root / "train.py").write_text("import log\nlog.info('x')\n")
    (root / "log.py").write_text("def info(m):\n    print(m)\n")
    result = bundle_project(root, tmp_path / "out", RunOptions())
    assert any("top-level module 'log'" in w and "import log" in w for w in result.warnings)

    (root / "train.py").write_text("match = 1\nprint(f'{match!r:>{10}}')\n")
    bundle_project(root, tmp_path / "out3", RunOptions())
    (root / "train.py").write_text("def f(:\n    pass\n")
    with pytest.raises(BundleError):
        bundle_project(root, tmp_path / "out4", RunOptions())
