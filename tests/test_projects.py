"""Existing projects as they are: src layouts, script arguments, --set where values live, kagglekit's own files.

Bundles are executed for real (tests.test_bundle.run_kernel: a fake /kaggle, cwd /kaggle/working),
so every assertion is about what the project itself saw.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kagglekit.bundle import build_bundle, format_summary
from kagglekit.errors import BundleError, ConfigError
from kagglekit.layout import source_roots
from kagglekit.run_options import parse_sets
from kagglekit.settings import load_project
from tests.helpers import write
from tests.test_bundle import read_run_json, run_kernel

ARGPARSE_TRAIN = """\
    import argparse, json
    from tinypkg.model import fit

    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--fold", type=int, default=-1)
    a = p.parse_args()
    with open("result.json", "w") as f:
        json.dump({**vars(a), "losses": fit(a.rows, a.epochs)}, f)
"""


def src_project(root: Path, pyproject_extra: str = '[tool.setuptools.packages.find]\nwhere = ["src"]\n') -> Path:
    return write(root, {
        "pyproject.toml": "[project]\nname = \"tinypkg\"\nversion = \"0.1\"\n" + pyproject_extra + textwrap.dedent("""\
            [tool.kagglekit]
            kernel = "demo/tiny-src-project"
            entry = "tinypkg.train"
            args = ["--epochs", "3"]
            test-args = ["--epochs", "1", "--rows", "8"]
        """),
        "src/tinypkg/__init__.py": "",
        "src/tinypkg/model.py": "def fit(rows, epochs):\n    return [round(1 / (e + 1), 3) for e in range(epochs)]\n",
        "src/tinypkg/train.py": ARGPARSE_TRAIN,
    })


# --- src layout -------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    '[tool.setuptools.packages.find]\nwhere = ["src"]\n',
    '[tool.setuptools]\npackage-dir = {"" = "src"}\n',
    '[tool.hatch.build.targets.wheel]\npackages = ["src/tinypkg"]\n',
    '[tool.pdm.build]\npackage-dir = "src"\n',
    "",  # no declaration: a src/ folder holding a package
])
def test_src_layout_is_found_from_pyproject_or_the_folder(tmp_path: Path, extra: str) -> None:
    root = src_project(tmp_path / "p", extra)
    files = ["src/tinypkg/__init__.py", "src/tinypkg/train.py", "pyproject.toml"]
    assert source_roots(root, files) == ["src"]


def test_a_flat_project_has_no_source_root(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"train.py": "print(1)\n", "pkg/__init__.py": ""})
    assert source_roots(root, ["train.py", "pkg/__init__.py"]) == []


def test_src_layout_module_entry_imports_its_package_and_gets_args(tmp_path: Path) -> None:
    root = src_project(tmp_path / "p")
    result = build_bundle(load_project(root), mode="test", out_dir=tmp_path / "out", args=["--fold", "2"])
    assert result.source_roots == ["src"]
    assert result.argv == ["--epochs", "3", "--epochs", "1", "--rows", "8", "--fold", "2"]
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "run" / "kaggle" / "working" / "result.json").read_text())
    assert seen == {"epochs": 1, "rows": 8, "fold": 2, "losses": [1.0]}
    manifest = json.loads((tmp_path / "run" / "kaggle" / "working" / "kagglekit" / "run.json").read_text())
    assert manifest["args"] == result.argv
    assert "Arguments: --epochs 3 --epochs 1 --rows 8 --fold 2" in format_summary(result)


def test_full_mode_uses_args_without_test_args(tmp_path: Path) -> None:
    root = src_project(tmp_path / "p")
    result = build_bundle(load_project(root), mode="full", out_dir=tmp_path / "out")
    assert result.argv == ["--epochs", "3"]
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "kaggle" / "working" / "result.json").read_text())["epochs"] == 3


def test_a_module_missing_from_the_src_layout_names_both_places(tmp_path: Path) -> None:
    root = src_project(tmp_path / "p")
    (root / "kagglekit.toml").write_text('entry = "tinypkg.nope"\nkernel = "demo/tiny-src-project"\n')
    with pytest.raises(BundleError, match=r"tinypkg/nope.py .*in the project root and in src/") as info:
        build_bundle(load_project(root), out_dir=tmp_path / "out")
    # the setting and where it is written come first: the user knows what to fix
    assert info.value.message.startswith(f"entry = 'tinypkg.nope' ({root / 'kagglekit.toml'}): ")


@pytest.mark.parametrize("entry", ["train_nowhere.py", "nowhere.ipynb"])
def test_an_entry_file_that_is_not_bundled_names_the_setting_and_its_file(tmp_path: Path, entry: str) -> None:
    root = write(tmp_path / "p", {"kagglekit.toml": f'kernel = "demo/entry-nowhere"\nentry = "{entry}"\n',
                                  "train.py": "print(1)\n"})
    with pytest.raises(BundleError) as info:
        build_bundle(load_project(root), out_dir=tmp_path / "out")
    assert info.value.message.startswith(f"entry = {entry!r} ({root / 'kagglekit.toml'}): ")
    assert f"{entry} is not among the bundled files" in info.value.message


# --- settings: args / test-args --------------------------------------------------------------

def test_args_settings_accept_numbers_and_the_environment_splits_like_a_shell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "proj-args", {"kagglekit.toml": 'args = ["--lr", 0.5, "--epochs", 3]\n'})
    assert load_project(root).args == ("--lr", "0.5", "--epochs", "3")
    monkeypatch.setenv("KAGGLEKIT_TEST_ARGS", "--epochs 1 --name 'a b'")
    assert load_project(root).test_args == ("--epochs", "1", "--name", "a b")


@pytest.mark.parametrize("value, expected", [
    ('"--epochs 1"', None),  # a string from the file is split as a shell would: accepted
    ("[true]", "is not a string or a number"),
    ("[[1]]", "is not a string or a number"),
    ("{a = 1}", "a list of command-line arguments"),
    ("5", "a list of command-line arguments"),
])
def test_bad_args_values_name_the_field_and_the_file(tmp_path: Path, value: str, expected: str | None) -> None:
    root = write(tmp_path / "proj-args", {"kagglekit.toml": f"test-args = {value}\n"})
    if expected is None:
        assert load_project(root).test_args == ("--epochs", "1")
        return
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert "test-args" in info.value.message and "kagglekit.toml" in info.value.message
    assert expected in info.value.message


def test_an_unclosed_quote_in_the_environment_is_a_field_error(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "proj-args", {"kagglekit.toml": ""})
    monkeypatch.setenv("KAGGLEKIT_ARGS", "--name 'oops")
    with pytest.raises(ConfigError, match="KAGGLEKIT_ARGS"):
        load_project(root)


def test_test_args_give_an_argparse_project_a_test_mode_without_a_config_class(tmp_path: Path) -> None:
    root = write(tmp_path / "argp", {"kagglekit.toml": 'kernel = "demo/argp-project"\ntest-args = ["--epochs", "1"]\n',
                                     "train.py": "import sys\nprint(sys.argv[1:])\n"})
    result = build_bundle(load_project(root), mode="test", out_dir=tmp_path / "out")
    assert result.argv == ["--epochs", "1"] and result.flag_changes == []
    (root / "kagglekit.toml").write_text('kernel = "demo/argp-project"\n')
    with pytest.raises(BundleError) as info:  # no flag and no test-args: the hint says how
        build_bundle(load_project(root), mode="test", out_dir=tmp_path / "out")
    assert "test-args" in (info.value.hint or "")


# --- --set where values live -----------------------------------------------------------------

CFG_PROJECT = {
    "kagglekit.toml": 'kernel = "demo/cfg-project"\nentry = "train.py"\n',
    "config.py": """\
        EPOCHS = 10
        BATCH = 32


        class CFG:
            debug = False
            running_test = False
            epochs = 20
            seed = 42


        if CFG.debug:
            CFG.epochs = 1
    """,
    "configs/base.yaml": """\
        # training settings
        train:
          epochs: 10   # full run
          lr: 0.001
          folds: [0, 1, 2]
        model:
          name: "mlp"  # the architecture
    """,
    "configs/extra.json": '{\n  "b": 1,\n  "a": {"drop": 0.5}\n}\n',
    "configs/opt.toml": '# optimiser\n[opt]\nname = "adam"  # keep\nsteps = 100\n',
    "train.py": """\
        import json, pathlib, tomllib
        import yaml
        from config import CFG, EPOCHS
        here = pathlib.Path(__file__).parent
        cfg = yaml.safe_load(open(here / "configs/base.yaml"))
        extra = json.load(open(here / "configs/extra.json"))
        opt = tomllib.load(open(here / "configs/opt.toml", "rb"))
        json.dump({"yaml_epochs": cfg["train"]["epochs"], "yaml_lr": cfg["train"]["lr"],
                   "folds": cfg["train"]["folds"], "json_drop": extra["a"]["drop"], "toml_steps": opt["opt"]["steps"],
                   "cfg_epochs": CFG.epochs, "cfg_seed": CFG.seed, "EPOCHS": EPOCHS,
                   "test": CFG.running_test}, open("seen.json", "w"))
    """,
}


def test_set_reaches_module_constants_class_attributes_and_config_file_keys(tmp_path: Path) -> None:
    root = write(tmp_path / "cfgp", CFG_PROJECT)
    sets = parse_sets(["EPOCHS=2", "CFG.seed=7", "epochs=5", "configs/base.yaml:train.epochs=1",
                       "configs/base.yaml:train.lr=3e-4", "configs/base.yaml:train.folds.1=9",
                       "configs/extra.json:a.drop=0.1", "configs/opt.toml:opt.steps=3"])
    result = build_bundle(load_project(root), mode="test", overrides=sets, out_dir=tmp_path / "out")
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "run" / "kaggle" / "working" / "seen.json").read_text())
    assert seen == {"yaml_epochs": 1, "yaml_lr": 0.0003, "folds": [0, 9, 2], "json_drop": 0.1, "toml_steps": 3,
                    "cfg_epochs": 5, "cfg_seed": 7, "EPOCHS": 2, "test": True}
    shown = [str(c) for c in result.flag_changes]
    assert "configs/base.yaml:3 train.epochs: 10 → 1" in shown
    assert "config.py:1 EPOCHS: 10 → 2" in shown
    # the local files are untouched; the bundled YAML kept its comments and key order
    assert "epochs: 10   # full run" in (root / "configs/base.yaml").read_text()
    bundled = _bundled(result.script_path, "configs/base.yaml")
    assert bundled.splitlines()[0] == "# training settings" and "# the architecture" in bundled
    assert bundled.index("train:") < bundled.index("model:")
    assert "# keep" in _bundled(result.script_path, "configs/opt.toml")


def _bundled(script: Path, rel: str) -> str:
    import base64
    import io
    import lzma
    import re
    import tarfile

    blob = re.search(r'ARCHIVE = """\n(.*?)"""', script.read_text(), re.S)
    assert blob is not None
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(base64.b64decode(blob.group(1))))) as tar:
        member = tar.extractfile(f"project/{rel}")
        assert member is not None
        return member.read().decode()


# Shapes from competition configs read with PyYAML (Kaggle's image has it): 4-space indentation, an anchor the
# scheduler aliases (T_max: *epochs), floats written 1.0e-5 (PyYAML reads 1e-5 as a string), YAML 1.1 `yes`.
KAGGLE_YAML = """\
# exp001
train:
    epochs: &epochs 30   # full run
    lr: 1.0e-5
    amp: yes
    folds:
        - 0
        - 1
    backbone: resnet18
scheduler:
    name: cosine
    T_max: *epochs
"""


def _yaml_project(root: Path) -> Path:
    return write(root, {
        "kagglekit.toml": 'kernel = "demo/yaml-project"\nentry = "train.py"\ntest-flag = false\n',
        "configs/exp001.yaml": KAGGLE_YAML,
        "train.py": """\
            import json, pathlib
            import yaml
            cfg = yaml.safe_load(open(pathlib.Path(__file__).parent / "configs/exp001.yaml"))
            json.dump({k: [v, type(v).__name__] for k, v in
                       {**cfg["train"], "T_max": cfg["scheduler"]["T_max"]}.items()}, open("seen.json", "w"))
        """,
    })


def test_yaml_set_writes_what_pyyaml_reads_back_and_follows_anchors(tmp_path: Path) -> None:
    root = _yaml_project(tmp_path / "yp")
    sets = {"configs/exp001.yaml:train.epochs": "1", "configs/exp001.yaml:train.lr": "2e-5",
            "configs/exp001.yaml:train.amp": "false", "configs/exp001.yaml:train.backbone": "on"}
    result = build_bundle(load_project(root), mode="test", overrides=sets, out_dir=tmp_path / "out")
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "run" / "kaggle" / "working" / "seen.json").read_text())
    assert seen == {"epochs": [1, "int"], "lr": [2e-05, "float"], "amp": [False, "bool"],
                    "folds": [[0, 1], "list"], "backbone": ["on", "str"], "T_max": [1, "int"]}
    shown = [str(c) for c in result.flag_changes]
    assert "configs/exp001.yaml:3 train.epochs: 30 → 1" in shown
    assert "configs/exp001.yaml:12 scheduler.T_max (via an alias): 30 → 1" in shown
    assert "configs/exp001.yaml:5 train.amp: yes → false" in shown
    bundled = _bundled(result.script_path, "configs/exp001.yaml")
    before, after = KAGGLE_YAML.splitlines(), bundled.splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [2, 3, 4, 8]
    assert after[2] == "    epochs: &epochs 1    # full run" and after[11] == "    T_max: *epochs"
    assert after[3] == "    lr: 2.0e-05" and after[8] == "    backbone: 'on'"


def test_setting_an_alias_gives_that_key_its_own_value_only(tmp_path: Path) -> None:
    root = _yaml_project(tmp_path / "yp")
    result = build_bundle(load_project(root), overrides={"configs/exp001.yaml:scheduler.T_max": "5"},
                          out_dir=tmp_path / "out")
    assert [str(c) for c in result.flag_changes] == ["configs/exp001.yaml:12 scheduler.T_max: 30 → 5"]
    after = _bundled(result.script_path, "configs/exp001.yaml").splitlines()
    assert after[2] == "    epochs: &epochs 30   # full run" and after[11] == "    T_max: 5"


@pytest.mark.parametrize("layout", [
    "a:\n  b: 1  # c\n  l:\n  - 1\n  - x: 1\n    y: 2\n",      # 2 spaces, dashes flush with the key
    "a:\n  b: 1  # c\n  l:\n    - 1\n    - 2\n",               # 2 spaces, dashes indented
    "a:\n    b: 1  # c\n    l:\n    - 1\n",                     # 4 spaces, flush
    "a:\n    b: 1  # c\n    l:\n        - 1\n        - x: 1\n          y: 2\n",  # 4 spaces, indented
    "a: {b: 1, c: [1, 2]}\n",
])
def test_yaml_set_keeps_the_files_indentation(layout: str) -> None:
    from kagglekit.configfiles import apply_config_sets

    out, _ = apply_config_sets({"c.yaml": layout.encode()}, {"c.yaml:a.b": "2"})
    assert out["c.yaml"].decode() == layout.replace("b: 1", "b: 2")


def test_a_yaml_11_boolean_takes_only_booleans(tmp_path: Path) -> None:
    root = _yaml_project(tmp_path / "yp")
    with pytest.raises(ConfigError) as info:
        build_bundle(load_project(root), overrides={"configs/exp001.yaml:train.amp": "maybe"}, out_dir=tmp_path / "o")
    assert "is not true or false" in info.value.message


def test_a_class_attribute_a_config_file_overrides_is_reported(tmp_path: Path) -> None:
    # defaults in a dataclass, the experiment's YAML fills it: Config(**yaml.safe_load(f)) (a common competition shape)
    root = write(tmp_path / "dcp", {
        "kagglekit.toml": 'kernel = "demo/dataclass-yaml"\nentry = "train.py"\ntest-flag = false\n'
                          'working-files = ["conf/exp.yaml"]\n',  # the code opens it from its working directory
        "config.py": """\
            from dataclasses import dataclass

            import yaml


            @dataclass
            class Config:
                epochs: int = 30
                lr: float = 1e-3


            def load_config(path):
                with open(path) as fp:
                    return Config(**yaml.safe_load(fp))
        """,
        "conf/exp.yaml": "epochs: 60\n",
        "train.py": """\
            import json
            from config import load_config
            conf = load_config("conf/exp.yaml")
            json.dump({"epochs": conf.epochs, "lr": conf.lr}, open("seen.json", "w"))
        """,
    })
    result = build_bundle(load_project(root), overrides={"config.py:Config.epochs": "1", "Config.lr": "0.5"},
                          out_dir=tmp_path / "out")
    hits = [w for w in result.warnings if "never used" in w]
    assert hits == ["--set Config.epochs: conf/exp.yaml has the key epochs: 60; if the code fills Config from that "
                    "file, its value wins and config.py:8 is never used: --set conf/exp.yaml:epochs instead"]
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "kaggle" / "working" / "seen.json").read_text()) == {"epochs": 60, "lr": 0.5}
    fixed = build_bundle(load_project(root), overrides={"conf/exp.yaml:epochs": "1", "Config.lr": "0.5"},
                         out_dir=tmp_path / "out2")
    assert not [w for w in fixed.warnings if "never used" in w]


def test_a_reassigned_attribute_is_reported_before_pushing(tmp_path: Path) -> None:
    root = write(tmp_path / "cfgp", CFG_PROJECT)
    result = build_bundle(load_project(root), overrides={"epochs": "5"}, out_dir=tmp_path / "out")
    hits = [w for w in result.warnings if "assigns it again" in w]
    assert len(hits) == 1 and "config.py:13" in hits[0] and "if CFG.debug:" in hits[0]
    quiet = build_bundle(load_project(root), overrides={"seed": "5"}, out_dir=tmp_path / "out2")
    assert not [w for w in quiet.warnings if "assigns it again" in w]


def test_a_module_constant_reassigned_under_a_flag_is_reported(tmp_path: Path) -> None:
    root = write(tmp_path / "constp", {
        "kagglekit.toml": 'kernel = "demo/const-project"\nentry = "train.py"\n',
        "settings.py": "DEBUG = False\nEPOCHS = 10\nif DEBUG:\n    EPOCHS = 1\n",
        "train.py": "import settings\nsettings.EPOCHS = 3\n"})
    result = build_bundle(load_project(root), overrides={"EPOCHS": "4"}, out_dir=tmp_path / "out")
    lines = sorted(w.split(" assigns")[0] for w in result.warnings if "assigns it again" in w)
    assert lines == ["--set EPOCHS: settings.py:4", "--set EPOCHS: train.py:2"]


def test_a_classmethod_reassigning_through_cls_is_reported(tmp_path: Path) -> None:
    # kagglekit init's own Config: test mode sets cls.n_epoch, so `--test --set n_epoch=1` would silently train 10
    root = write(tmp_path / "clsp", {
        "kagglekit.toml": 'kernel = "demo/cls-project"\nentry = "train.py"\n',
        "config.py": textwrap.dedent("""\
            class Config:
                running_test = True
                n_epoch = 30
                seed = 1

                @classmethod
                def apply(cls):
                    if cls.running_test:
                        cls.n_example, cls.n_epoch = 400, 10

                @staticmethod
                def other(cls):
                    cls.seed = 2
            """),
        "train.py": "from config import Config\nConfig.apply()\n"})
    result = build_bundle(load_project(root), overrides={"n_epoch": "1"}, out_dir=tmp_path / "out")
    hits = [w for w in result.warnings if "assigns it again" in w]
    assert len(hits) == 1 and "config.py:9" in hits[0] and "in method Config.apply" in hits[0]
    quiet = build_bundle(load_project(root), overrides={"seed": "5"}, out_dir=tmp_path / "out2")
    assert not [w for w in quiet.warnings if "assigns it again" in w]


@pytest.mark.parametrize("sets, message", [
    ({"configs/base.yaml:train.epoch": "1"}, "has no key 'epoch' (did you mean 'epochs'?)"),
    ({"configs/base.yaml:train.epochs": "fast"}, "is not an integer"),
    ({"configs/base.yaml:train.folds.7": "1"}, "is a list of 3 items"),
    ({"configs/nope.yaml:a": "1"}, "not among the bundled files"),
    ({"configs/extra.json:a.drop": "true"}, "is not a number"),
    ({"configs/opt.toml:opt.name.x": "1"}, "is a value"),
    ({"config.py:EPOCH": "1"}, "no module-level EPOCH = <literal> in config.py"),
    ({"Nope.epochs": "1"}, "no class Nope with an attribute epochs"),
    ({"nothing_here": "1"}, "no .py file assigns it a literal at module level"),
])
def test_bad_set_targets_say_what_is_wrong(tmp_path: Path, sets: dict[str, str], message: str) -> None:
    root = write(tmp_path / "cfgp", CFG_PROJECT)
    with pytest.raises(ConfigError) as info:
        build_bundle(load_project(root), overrides=sets, out_dir=tmp_path / "out")
    assert message in info.value.message


@pytest.mark.parametrize("item", ["a b=1", "notes.txt:a=1", "/abs/x.yaml:a=1", "x.yaml:=1", "x.yaml:a..b=1",
                                  "x.py:1bad=1", "a.b.c=1", "noequals"])
def test_malformed_set_options_are_refused_before_bundling(item: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_sets([item])


# --- nothing kagglekit wrote is shipped ------------------------------------------------------

def test_bundle_folders_inside_the_project_are_never_shipped_and_bundles_are_identical(tmp_path: Path) -> None:
    root = src_project(tmp_path / "p")
    first = build_bundle(load_project(root), out_dir=root / "b1")
    second = build_bundle(load_project(root), out_dir=root / "b2")
    assert first.script_path.read_bytes() == second.script_path.read_bytes()
    assert [f.path for f in second.files] == [f.path for f in first.files]
    assert ("b1/", "written by kagglekit") in [(x.path, x.reason) for x in second.left_out]


def test_files_kagglekit_wrote_are_remembered_and_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kagglekit.written import remember

    root = src_project(tmp_path / "p")
    before = build_bundle(load_project(root), out_dir=tmp_path / "o1")
    (root / "quota.png").write_bytes(b"\x89PNG fake")
    (root / "reports").mkdir()
    (root / "reports" / "run.html").write_text("<html></html>")
    (root / "notes.txt").write_text("mine")
    monkeypatch.chdir(root)
    remember(root / "quota.png")
    remember(root / "reports" / "run.html")
    after = build_bundle(load_project(root), out_dir=tmp_path / "o2")
    assert sorted(f.path for f in after.files) == sorted([f.path for f in before.files] + ["notes.txt"])
    assert {"quota.png", "reports/run.html"} <= {x.path for x in after.left_out}
    pulled = root / "elsewhere" / "v1"
    pulled.mkdir(parents=True)
    (pulled / ".kagglekit-manifest.json").write_text("{}")
    (pulled / "model.bin").write_bytes(b"w")
    again = build_bundle(load_project(root), out_dir=tmp_path / "o3")
    assert "elsewhere/v1/" in {x.path for x in again.left_out}
    assert not any(f.path.startswith("elsewhere/") for f in again.files)


# --- on the emulator: push -- ARGS, the ledger, pull-outputs and the report ------------------

def test_push_passes_arguments_and_they_reach_ledger_outputs_and_report(tmp_path: Path, kk: Callable[..., Any]) -> None:
    from kagglekit.ledger import Ledger

    root = src_project(tmp_path / "p")
    run = kk
    code, out, err = run("push", "--test", "--wait", "--interval", "0.2", "--set", "x=1", cwd=root)
    assert code != 0 and "no Config-like class" in err  # --set on a name nothing defines is refused first
    code, out, err = run("push", "--test", "--wait", "--interval", "0.2", "--", "--fold", "2", cwd=root)
    assert code == 0, err
    assert "arguments: --epochs 3 --epochs 1 --rows 8 --fold 2" in out
    record = Ledger().runs(kernel="demo/tiny-src-project")[-1]
    assert record.args == ["--epochs", "3", "--epochs", "1", "--rows", "8", "--fold", "2"]
    code, out, err = run("pull-outputs", cwd=root)
    assert code == 0, err
    pulled = root / "outputs" / "tiny-src-project" / f"v{record.version}"
    assert json.loads((pulled / "result.json").read_text())["fold"] == 2
    code, out, err = run("report", cwd=root)
    assert code == 0, err
    assert "arguments --epochs 3 --epochs 1 --rows 8 --fold 2" in out
    assert "--rows 8 --fold 2" in (pulled / "report.html").read_text()
    code, out, err = run("push", "--dry-run", "--full", cwd=root)
    assert code == 0, err
    assert "would ship 4 files" in out and "src/tinypkg/train.py" in out
    assert "outputs/ (outputs)" in out  # pulled outputs are listed as left out


# --- notebooks as entry ------------------------------------------------------------------------

def notebook_project(root: Path) -> Path:
    import nbformat

    write(root, {"kagglekit.toml": 'kernel = "demo/nb-project"\nentry = "train.ipynb"\n'
                                   'test-flag = "train.ipynb:CFG.debug"\n',
                 "helpers.py": "def loss(e):\n    return 1.0 / (e + 1)\n"})
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Train"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport json, os\nfrom helpers import loss\n"
                                  "class CFG:\n    debug = False\n    epochs = 5\n    lr = 0.1\n"
                                  "if CFG.debug:\n    CFG.epochs = 2"),
        nbformat.v4.new_code_cell("!echo shell escapes stay\nfor e in range(CFG.epochs):\n"
                                  "    print(json.dumps({'epoch': e, 'loss': loss(e)}))\n"
                                  "json.dump({'debug': CFG.debug, 'epochs': CFG.epochs, 'lr': CFG.lr, "
                                  "'cwd': os.getcwd()}, open('seen.json', 'w'))"),
    ]
    nb.metadata["kernelspec"] = {"name": "my-local-env", "display_name": "Mine", "language": "python"}
    nbformat.write(nb, str(root / "train.ipynb"))
    return root


def test_a_notebook_entry_becomes_a_notebook_kernel_with_the_bundle_first(tmp_path: Path) -> None:
    root = notebook_project(tmp_path / "nb")
    result = build_bundle(load_project(root), mode="test", overrides={"lr": "0.5"}, out_dir=tmp_path / "out")
    assert result.metadata["kernel_type"] == "notebook" and result.script_path.name == "nb-project.ipynb"
    kernel = json.loads(result.script_path.read_text())
    assert kernel["metadata"]["kernelspec"]["name"] == "python3"
    first, *cells, last = kernel["cells"]
    assert "ARCHIVE_SHA256" in first["source"] and "finish_notebook()" in last["source"]
    sources = [c["source"] for c in cells]
    assert "    debug = True" in sources[1] and "    lr = 0.5" in sources[1]
    assert sources[1].startswith("%matplotlib inline") and sources[2].startswith("!echo shell escapes stay")
    assert [str(c) for c in result.flag_changes] == ["train.ipynb cell 1:5 debug: False → True",
                                                     "train.ipynb cell 1:7 lr: 0.1 → 0.5"]
    again = build_bundle(load_project(root), mode="test", overrides={"lr": "0.5"}, out_dir=tmp_path / "out2")
    assert again.script_path.read_bytes() == result.script_path.read_bytes()


def test_a_notebook_runs_on_the_emulator_and_logs_and_report_work(tmp_path: Path, kk: Callable[..., Any]) -> None:
    root = notebook_project(tmp_path / "nb")
    code, out, err = kk("push", "--test", "--wait", "--interval", "0.3", "--set", "epochs=4", cwd=root)
    assert code == 0, err
    assert "train.ipynb cell 1:9 assigns it again" in err  # `if CFG.debug: CFG.epochs = 2` under --test
    code, out, err = kk("logs", cwd=root)
    assert code == 0 and '{"epoch": 1, "loss": 0.5}' in out and "shell escapes stay" in out
    assert kk("pull-outputs", cwd=root)[0] == 0
    pulled = root / "outputs" / "nb-project" / "v1"
    seen = json.loads((pulled / "seen.json").read_text())
    assert (seen["debug"], seen["epochs"], seen["lr"]) == (True, 2, 0.1)  # the cell reassigned the --set value
    assert seen["cwd"].endswith("/kaggle/working")
    run = json.loads((pulled / "kagglekit" / "run.json").read_text())
    assert run["status"] == "complete" and run["exit_code"] == 0 and run["overrides"] == {"epochs": "4"}
    code, out, err = kk("report", cwd=root)
    assert code == 0, err
    assert "(test), complete" in out and (pulled / "report.html").is_file()


def test_a_failing_notebook_cell_marks_the_run_as_error(tmp_path: Path, kk: Callable[..., Any]) -> None:
    import nbformat

    root = write(tmp_path / "nbfail", {"kagglekit.toml": 'kernel = "demo/nb-failing"\nentry = "run.ipynb"\n'})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('before')"), nbformat.v4.new_code_cell("1 / 0"),
                nbformat.v4.new_code_cell("print('never')")]
    nbformat.write(nb, str(root / "run.ipynb"))
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    assert code == 8, (out, err)
    assert kk("pull-outputs", cwd=root)[0] == 0
    run = json.loads((root / "outputs" / "nb-failing" / "v1" / "kagglekit" / "run.json").read_text())
    assert run["status"] == "error" and "ZeroDivisionError" in run["traceback_tail"]


# --- one kernel identity per folder ------------------------------------------------------------

def test_a_folder_without_settings_finds_the_kernel_its_push_used(tmp_path: Path, kk: Callable[..., Any]) -> None:
    root = write(tmp_path / "plain-project", {"train.py": "import sys\nprint('argv', sys.argv[1:])\n"})
    code, out, err = kk("status", cwd=root)
    assert code != 0 and "no push from here was recorded" in err
    code, out, err = kk("push", "--wait", "--interval", "0.3", "--", "--epochs", "1", cwd=root)
    assert code == 0, err
    code, out, err = kk("status", cwd=root)
    assert code == 0 and "demo/plain-project v1: COMPLETE" in out
    code, out, err = kk("logs", cwd=root)
    assert "argv ['--epochs', '1']" in out
    assert kk("pull-outputs", cwd=root)[0] == 0
    assert (root / "outputs" / "plain-project" / "v1" / "kagglekit" / "run.json").is_file()
    code, out, err = kk("report", cwd=root)
    assert code == 0 and "demo/plain-project v1" in out
    other = write(tmp_path / "other-project", {"train.py": "print(2)\n"})
    assert kk("push", "--wait", "--interval", "0.3", cwd=other)[0] == 0
    code, out, err = kk("--json", "runs", cwd=root)
    assert [r["kernel"] for r in json.loads(out)] == ["demo/plain-project"]
    code, out, err = kk("--json", "runs", "--all", cwd=root)
    assert sorted(r["kernel"] for r in json.loads(out)) == ["demo/other-project", "demo/plain-project"]
    # nothing kagglekit wrote (pulled outputs, the report, its own records) ships with the next push
    code, out, err = kk("push", "--dry-run", cwd=root)
    assert "would ship 1 files" in out and "    train.py" in out


# --- set / test-set / working-files ------------------------------------------------------------

TOML_PROJECT = {
    "kagglekit.toml": """\
        kernel = "demo/toml-config-project"
        entry = "app"
        working-files = ["config.toml"]
        [set]
        "config.toml:trainer.device" = "cpu"
        [test-set]
        "config.toml:trainer.max_epochs" = 1
    """,
    "config.toml": '[trainer]\nmax_epochs = 10\ndevice = "mps"   # Apple\n',
    "src/app/__init__.py": "",
    "src/app/__main__.py": """\
        import json, tomllib
        cfg = tomllib.load(open("config.toml", "rb"))  # relative to the working directory, as written
        json.dump(cfg["trainer"], open("trainer.json", "w"))
        with open("config.toml", "a") as f:
            f.write("# touched\\n") if cfg["trainer"]["max_epochs"] == 10 else None
    """,
}


def test_set_and_test_set_from_the_file_and_working_files_for_relative_opens(tmp_path: Path) -> None:
    root = write(tmp_path / "tomlp", TOML_PROJECT)
    test = build_bundle(load_project(root), mode="test", out_dir=tmp_path / "o1")
    assert test.overrides == {"config.toml:trainer.device": "cpu", "config.toml:trainer.max_epochs": "1"}
    proc = run_kernel(test.script_path, tmp_path / "r1")
    assert proc.returncode == 0, proc.stderr
    working = tmp_path / "r1" / "kaggle" / "working"
    assert json.loads((working / "trainer.json").read_text()) == {"max_epochs": 1, "device": "cpu"}
    assert not (working / "config.toml").exists()  # an unchanged copy is tidied away: only outputs remain
    full = build_bundle(load_project(root), mode="full", overrides={"config.toml:trainer.max_epochs": "10"},
                        out_dir=tmp_path / "o2")
    proc = run_kernel(full.script_path, tmp_path / "r2")
    assert proc.returncode == 0, proc.stderr
    working = tmp_path / "r2" / "kaggle" / "working"
    assert json.loads((working / "trainer.json").read_text()) == {"max_epochs": 10, "device": "cpu"}
    assert (working / "config.toml").read_text().endswith("# touched\n")  # changed by the run: kept


@pytest.mark.parametrize("toml, message", [
    ('set = ["a=1"]', "a table of --set NAME = VALUE pairs"),
    ('test-set = {"x.txt:a" = 1}', "neither a .py file"),
    ('set = {"configs/a.yaml:" = 1}', "key path"),
    ('set = {"a" = [1]}', "not a string, number or boolean"),
    ('working-files = ["../secrets.toml"]', "relative to the project root"),
    ('working-files = "config.toml"', "a list of strings"),
])
def test_bad_set_tables_and_working_files_are_field_errors(tmp_path: Path, toml: str, message: str) -> None:
    root = write(tmp_path / "badp", {"kagglekit.toml": toml + "\n"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert message in info.value.message and "kagglekit.toml" in info.value.message


@pytest.mark.parametrize("table, target, message", [
    ("test-set", "configs/missing.yaml:train.epochs", "configs/missing.yaml is not among the bundled files"),
    ("test-set", "config.toml:trainer.max_epoch", "has no key 'max_epoch' (did you mean 'max_epochs'?)"),
    ("set", "max_stepz", "no .py file assigns it a literal at module level"),
])
def test_a_set_target_from_the_file_that_cannot_apply_names_the_file_and_table(
        tmp_path: Path, table: str, target: str, message: str) -> None:
    """A [set]/[test-set] entry that cannot apply is reported as that entry of that file, not as a --set the
    user would look for on a command line that has none; the same target given as --set stays '--set ...'."""
    files = dict(TOML_PROJECT)
    files["kagglekit.toml"] = files["kagglekit.toml"].replace(f"[{table}]\n", f'[{table}]\n        "{target}" = 1\n')
    root = write(tmp_path / "fromfile", files)
    with pytest.raises(ConfigError) as info:
        build_bundle(load_project(root), mode="test", out_dir=tmp_path / "out")
    assert info.value.message.startswith(f"{root / 'kagglekit.toml'} [{table}] {target!r}: "), info.value.message
    assert message in info.value.message and not info.value.message.startswith("--set")
    assert info.value.hint is not None and info.value.hint.startswith(f"Fix {table} in {root / 'kagglekit.toml'}.")
    with pytest.raises(ConfigError) as given:  # given on the command line (over the file's value): still --set
        build_bundle(load_project(root), mode="test", overrides={target: "2"}, out_dir=tmp_path / "out")
    assert given.value.message.startswith(f"--set {target}") and message in given.value.message


def test_the_env_setting_reaches_the_kernel_its_log_and_run_json(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "envp", {
        "kagglekit.toml": """\
            kernel = "demo/env-project"
            [env]
            WANDB_MODE = "offline"
            SEED = 3
            FAST = true
        """,
        "train.py": """\
            import json, os
            json.dump({k: os.environ.get(k) for k in ("WANDB_MODE", "SEED", "FAST")}, open("env.json", "w"))
        """,
    })
    result = build_bundle(load_project(root), out_dir=tmp_path / "out")
    proc = run_kernel(result.script_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    expected = {"FAST": "true", "SEED": "3", "WANDB_MODE": "offline"}
    assert json.loads((tmp_path / "run" / "kaggle" / "working" / "env.json").read_text()) == expected
    assert "environment FAST=true SEED=3 WANDB_MODE=offline" in proc.stdout
    assert read_run_json(tmp_path / "run")["env"] == expected
    monkeypatch.setenv("KAGGLEKIT_ENV", "WANDB_MODE=disabled,EXTRA=1")  # the environment replaces the table
    assert load_project(root).env == {"WANDB_MODE": "disabled", "EXTRA": "1"}


@pytest.mark.parametrize("toml, message", [
    ('env = ["A=1"]', "a table of environment variables"),
    ('env = {"1A" = "x"}', "'1A' is not a variable name"),
    ('env = {WANDB_API_KEY = "abc"}', "WANDB_API_KEY looks like one"),
    ('env = {HF_TOKEN = "abc"}', "HF_TOKEN looks like one"),
    ('env = {KAGGLEKIT_MODE = "test"}', "KAGGLEKIT_MODE is set by kagglekit or Kaggle"),
    ('env = {PYTHONPATH = "/x"}', "PYTHONPATH is set by kagglekit or Kaggle"),
    ('env = {A = [1]}', "the value of 'A' is not a string, number or boolean"),
])
def test_bad_env_tables_are_field_errors_and_secrets_never_ship(tmp_path: Path, toml: str, message: str) -> None:
    root = write(tmp_path / "badenv", {"kagglekit.toml": toml + "\n", "train.py": "print(1)\n"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert message in info.value.message and "kagglekit.toml: env" in info.value.message
    assert "abc" not in info.value.message  # a refused secret's value is not printed either


YAML_FILLED_CONFIG = {  # the shape of detkov/BirdCLEFplus_2025 (docs/projects.md), written for this test
    "kagglekit.toml": """\
        kernel = "demo/yaml-config-class"
        entry = "src.train"
        args = ["-c", "configs/exp2.yaml"]
        working-files = ["configs/exp2.yaml"]
        [test-set]
        "configs/exp2.yaml:debug" = true
        [env]
        WANDB_MODE = "offline"
    """,
    "configs/exp1.yaml": "debug: false\nepochs: 30\nfolds: [0]\n",
    "configs/exp2.yaml": "# exp2\ndebug: false\nepochs: 10  # full run\nfolds: [0]\n",
    "src/__init__.py": "",
    "src/config.py": """\
        import yaml


        class Config:
            def __init__(self, path):
                for key, value in yaml.safe_load(open(path)).items():
                    setattr(self, key, value)

            def update_debug_settings(self):
                if self.debug:
                    self.epochs = 2
                    self.folds = [0, 1]
    """,
    "src/train.py": """\
        import argparse, json, os
        from src.config import Config

        parser = argparse.ArgumentParser()
        parser.add_argument("-c", "--config", default="configs/debug.yaml")
        cfg = Config(parser.parse_args().config)
        cfg.update_debug_settings()
        json.dump({"epochs": cfg.epochs, "folds": cfg.folds, "wandb": os.environ.get("WANDB_MODE")},
                  open("trained.json", "w"))
    """,
}


def test_a_config_class_filled_from_yaml_runs_its_debug_mode_and_set_points_at_the_key(tmp_path: Path) -> None:
    root = write(tmp_path / "yamlcls", YAML_FILLED_CONFIG)
    for mode, expected in (("test", {"epochs": 2, "folds": [0, 1]}), ("full", {"epochs": 3, "folds": [0]})):
        result = build_bundle(load_project(root), mode=mode, overrides={"configs/exp2.yaml:epochs": "3"},
                              out_dir=tmp_path / f"o-{mode}")
        proc = run_kernel(result.script_path, tmp_path / mode)
        assert proc.returncode == 0, proc.stderr
        trained = json.loads((tmp_path / mode / "kaggle" / "working" / "trained.json").read_text())
        assert trained == {**expected, "wandb": "offline"}
    # the class has no epochs attribute to set: the hint names the key in the file the entry is given (exp2),
    # not the first file in name order (exp1), with the value asked for
    for target in ("Config.epochs", "epochs"):
        with pytest.raises(ConfigError) as info:
            build_bundle(load_project(root), mode="full", overrides={target: "1"}, out_dir=tmp_path / "o")
        assert info.value.hint is not None
        assert info.value.hint.startswith("configs/exp2.yaml has the key epochs: 10 (and 1 more)")
        assert info.value.hint.endswith("--set configs/exp2.yaml:epochs=1")


@pytest.mark.parametrize("train, code, why", [
    ("import threading, time\nthreading.Thread(target=time.sleep, args=(600,), name='uploader').start()\n",
     0, "threads still running: uploader"),
    ("import atexit, time\natexit.register(time.sleep, 600)\nraise ValueError('no data')\n",  # as wandb-core
     1, "an exit hook or a child process it waits on"),
])
def test_a_finished_run_whose_process_hangs_is_ended_after_exit_grace(tmp_path: Path, train: str, code: int,
                                                                       why: str) -> None:
    """A run that ended but whose process would not exit (on Kaggle: RUNNING to the 12 h limit) ends with the
    run's own exit code once exit-grace has passed."""
    root = write(tmp_path / "hangs", {"kagglekit.toml": 'kernel = "demo/hangs-at-exit"\nexit-grace = "1s"\n',
                                      "train.py": train})
    result = build_bundle(load_project(root), out_dir=tmp_path / "out")
    proc = run_kernel(result.script_path, tmp_path / "run", timeout=60)
    assert proc.returncode == code, proc.stderr
    assert f"still alive 1s after the run ended ({why}); ending it with exit code {code}" in proc.stderr
    assert read_run_json(tmp_path / "run")["status"] == ("complete" if code == 0 else "error")


def test_working_files_must_be_bundled(tmp_path: Path) -> None:
    root = write(tmp_path / "wf", {"kagglekit.toml": 'kernel = "demo/wf-project"\nworking-files = ["nope.toml"]\n',
                                   "train.py": "print(1)\n"})
    with pytest.raises(BundleError, match=r"working-files names nope\.toml"):
        build_bundle(load_project(root), out_dir=tmp_path / "out")


# --- what Kaggle's image has: kernel_python and the missing-module advice -----------------------

@pytest.mark.parametrize("log, advised", [
    ("wandb: ERROR To use W&B in kaggle you must enable internet in the settings panel on the right.", True),
    ("wandb.errors.errors.CommError: Run initialization has timed out after 90.0 sec.", True),
    ("wandb.errors.errors.UsageError: No API key configured. Use `wandb login` to log in.", True),
    ("ValueError: No API key configured for the weather service", False),  # not wandb's
    ("RuntimeError: CUDA out of memory", False),
])
def test_a_run_failed_by_wandb_without_network_or_key_is_told_what_to_set(log: str, advised: bool) -> None:
    from kagglekit.errors import RunFailedError
    from kagglekit.watch import StatusReport, raise_for_outcome

    report = StatusReport(kernel="demo/bird-project", version=3, status="ERROR",
                          failure_message="The kernel process exited with code 1", log_tail=log)
    with pytest.raises(RunFailedError) as info:
        raise_for_outcome(report, cli="kagglekit --local")
    hint = info.value.hint or ""
    assert ('add [env] WANDB_MODE = "offline"' in hint and "WANDB_API_KEY through Kaggle's Secrets" in hint) is advised
    assert hint.endswith("Full log: kagglekit --local logs demo/bird-project/3")


def test_missing_module_advice_depends_on_the_image_and_the_backend() -> None:
    from kagglekit.image import in_image, missing_module_advice

    assert in_image("sklearn") is not None and in_image("surely_not_a_module_xyz") is None
    text = "ModuleNotFoundError: No module named 'tensorboard'"
    local = missing_module_advice(text, emulator=True)
    assert local is not None and "Kaggle's image has tensorboard==" in local and "kernel_python" in local
    assert missing_module_advice(text, emulator=False) is None  # on Kaggle it is there: nothing to say
    absent = missing_module_advice("No module named 'surely_not_a_module_xyz'", emulator=False)
    assert absent is not None and "does not have it" in absent
    assert missing_module_advice("ValueError: boom", emulator=True) is None


def test_kernel_python_runs_kernels_with_the_chosen_interpreter(tmp_path: Path, emulator: Any,
                                                                kk: Callable[..., Any]) -> None:
    import sys

    from tests.fixtures_emulator import EmulatorError

    with pytest.raises(EmulatorError) as info:
        emulator.control("config", {"kernel_python": "relative/python"})
    assert info.value.status == 400 and "absolute path" in info.value.body
    with pytest.raises(EmulatorError):
        emulator.control("config", {"kernel_python": str(tmp_path / "missing-python")})
    # an interpreter that is not the emulator's: a wrapper that marks the environment
    wrapper = tmp_path / "kaggle-like" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f"#!/bin/sh\nKAGGLE_LIKE=yes exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    assert emulator.control("config", {"kernel_python": str(wrapper)})["kernel_python"] == str(wrapper)
    root = write(tmp_path / "which-python", {
        "train.py": "import os, sys\nprint('kaggle-like', os.environ.get('KAGGLE_LIKE'))\nimport surely_not_a_module_xyz\n"})
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    assert code == 8
    assert "does not have it either" in err  # the emulator runs it, and Kaggle's image lacks it too
    code, out, err = kk("logs", cwd=root)
    assert "kaggle-like yes" in out


def test_bundle_takes_arguments_after_the_double_dash_with_or_without_a_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from kagglekit.cli import cli

    root = src_project(tmp_path / "p")
    monkeypatch.chdir(root)
    runner = CliRunner()
    plain = runner.invoke(cli, ["--json", "bundle", "--", "--fold", "3"])
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.output)["argv"] == ["--epochs", "3", "--fold", "3"]
    named = runner.invoke(cli, ["--json", "bundle", str(root), "--", "--fold", "4"])
    assert json.loads(named.output)["argv"] == ["--epochs", "3", "--fold", "4"]
    missing = runner.invoke(cli, ["bundle", "no-such-folder"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
