"""Project settings: discovery, precedence (command line > env > file > defaults) and clear errors.

Bad values must fail with the field, the file and what is allowed, because these errors
are what a new user meets first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kagglekit import constants
from kagglekit.errors import ConfigError
from kagglekit.settings import load_project, parse_duration, parse_size


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_pyproject_table_found_from_a_subfolder(tmp_path: Path) -> None:
    """The root is the nearest folder whose pyproject has [tool.kagglekit], even from deep inside it."""
    write(tmp_path / "pyproject.toml", """
[project]
name = "x"
[tool.kagglekit]
kernel = "alice/mnist-baseline"
title = "MNIST Baseline"
entry = "mypkg.train"
datasets = ["alice/mnist-png"]
accelerator = "gpu"
timeout = "11h"
output-budget = "15GB"
internet = false
test-flag = "config.py:Config.running_test"
""")
    sub = tmp_path / "mypkg" / "deep"
    sub.mkdir(parents=True)
    s = load_project(sub, environ={})
    assert s.root == tmp_path.resolve()
    assert s.config_file == tmp_path.resolve() / "pyproject.toml"
    assert (s.kernel_owner, s.kernel_slug, s.kernel_id) == ("alice", "mnist-baseline", "alice/mnist-baseline")
    assert s.title == "MNIST Baseline" and s.entry == "mypkg.train"
    assert s.machine_shape == "NvidiaTeslaT4" and s.accelerator_kind == "gpu"
    assert s.timeout_s == 11 * 3600 and s.session_limit_s == 11 * 3600
    assert s.output_budget_bytes == 15 * 10**9
    assert s.enable_internet is False
    assert s.datasets == ("alice/mnist-png",)
    assert s.test_flag == "config.py:Config.running_test"
    assert s.origin("kernel") == str(s.config_file)


def test_kagglekit_toml_wins_over_pyproject_and_defaults_apply(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.kagglekit]\nkernel = \"bob/other-kernel\"\n")
    write(tmp_path / "kagglekit.toml", "kernel = \"my-first-kernel\"\n")
    s = load_project(tmp_path, environ={})
    assert s.config_file is not None and s.config_file.name == "kagglekit.toml"
    assert s.kernel_owner is None and s.kernel_slug == "my-first-kernel"  # owner comes from the account later
    assert s.resolved_title == "My First Kernel"
    assert s.resolved_code_file == "my-first-kernel.py"
    assert s.machine_shape == "None" and s.accelerator_kind == "cpu"
    assert s.private is True
    assert s.session_limit_s == constants.SESSION_LIMIT_SECONDS["cpu"]
    assert s.checkpoints == constants.DEFAULT_CHECKPOINT_PATTERNS
    assert s.output_budget_bytes == constants.OUTPUT_BUDGET_BYTES


def test_precedence_command_line_over_env_over_file(tmp_path: Path) -> None:
    write(tmp_path / "kagglekit.toml", 'kernel = "alice/file-kernel"\naccelerator = "cpu"\ntimeout = "2h"\n'
                                       "internet = true\n")
    env = {"KAGGLEKIT_ACCELERATOR": "tpu", "KAGGLEKIT_TIMEOUT": "3h", "KAGGLEKIT_KERNEL": "alice/env-kernel",
           "KAGGLEKIT_DATASETS": "alice/one-set, alice/two-set"}
    s = load_project(tmp_path, environ=env)
    assert s.kernel_slug == "env-kernel" and s.machine_shape == "TpuV5E8" and s.timeout_s == 3 * 3600
    assert s.datasets == ("alice/one-set", "alice/two-set")
    assert s.origin("accelerator") == "the environment variable KAGGLEKIT_ACCELERATOR"
    s = load_project(tmp_path, overrides={"accelerator": "gpu", "timeout": "90m", "internet": None}, environ=env)
    assert s.machine_shape == "NvidiaTeslaT4" and s.timeout_s == 90 * 60
    assert s.enable_internet is True  # None on the command line means "not given": the file's value stays
    assert s.origin("timeout") == "the command line"


def test_internet_defaults_off_for_competition_kernels(tmp_path: Path) -> None:
    write(tmp_path / "kagglekit.toml", 'kernel = "alice/titanic-run"\ncompetitions = ["titanic"]\n')
    assert load_project(tmp_path, environ={}).enable_internet is False
    write(tmp_path / "kagglekit.toml", 'kernel = "alice/titanic-run"\n')
    assert load_project(tmp_path, environ={}).enable_internet is True


def test_kernel_slug_derived_from_the_folder_name(tmp_path: Path) -> None:
    proj = tmp_path / "My Project"
    proj.mkdir()
    s = load_project(proj, environ={})
    assert s.kernel_slug == "my-project" and s.config_file is None
    assert "folder name" in s.origin("kernel")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('kernel = "alice/abc"', ["kernel", "at least 5", "'abc' has 3"]),
        ('kernel = "/mnist-run"', ["kernel", "owner"]),
        ('kernel = "alice/My_Kernel"', ["kernel", "lowercase"]),
        ('kernel = "alice/mnist-run"\ntitle = "Something Else"', ["title", "does not match", "mnist-run",
                                                                  "something-else", "Mnist Run"]),
        ('kernel = "alice/mnist-run"\ntitle = "abc"', ["title", "at least 5"]),
        ('timeout = "eleven hours"', ["timeout", "'11h'"]),
        ('timeout = "13h"', ["timeout", "12h"]),
        ('accelerator = "tpu"\ntimeout = "10h"', ["timeout", "9h", "TPU"]),
        ("internet = \"maybe\"", ["internet", "true or false"]),
        ("private = 1", ["private", "true or false"]),
        ('datasets = "alice/x"', ["datasets", "list of strings"]),
        ("datasets = [1, 2]", ["datasets", "list of strings"]),
        ('datasets = ["no-owner"]', ["datasets", "owner/dataset-slug"]),
        ('models = ["google/gemma/pyTorch/2b"]', ["models", "owner/model/framework/variation/version"]),
        ('accelerator = "NvidiaTesla4"', ["accelerator", "NvidiaTeslaT4"]),
        ('output-budget = "lots"', ["output-budget", "20GB"]),
        ('output-budget = "25GB"', ["output-budget", "20GB"]),
        ('entry = "mypkg/train"', ["entry", "mypkg.train"]),
        ('entry = "../train.py"', ["entry", "relative to the project root"]),
        ('test-flag = "config.py"', ["test-flag", "config.py:Config.running_test"]),
        ('acelerator = "gpu"', ["unknown setting 'acelerator'", "Did you mean 'accelerator'"]),
        ('output_budget = "5GB"', ["unknown setting 'output_budget'", "Did you mean 'output-budget'"]),
    ],
)
def test_bad_values_name_the_field_the_file_and_what_is_allowed(tmp_path: Path, toml: str,
                                                                needles: list[str]) -> None:
    cfg = write(tmp_path / "kagglekit.toml", toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    text = f"{err.value.message} {err.value.hint}"
    assert str(cfg) in text
    for needle in needles:
        assert needle in text, (needle, text)


def test_pyproject_error_names_the_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.kagglekit]\nprivate = \"sometimes\"\n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    assert "pyproject.toml [tool.kagglekit]: private" in err.value.message


def test_env_and_command_line_errors_name_their_origin(tmp_path: Path) -> None:
    write(tmp_path / "kagglekit.toml", 'kernel = "alice/mnist-run"\n')
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={"KAGGLEKIT_TIMEOUT": "soon"})
    assert "KAGGLEKIT_TIMEOUT" in err.value.message and "'11h'" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, overrides={"accelerator": "quantum"}, environ={})
    assert "--accelerator" in err.value.message and "gpu" in err.value.message


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path / "kagglekit.toml", "kernel = \n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    assert "not valid TOML" in err.value.message and "kagglekit.toml" in err.value.message


def test_retired_shape_warns(tmp_path: Path) -> None:
    write(tmp_path / "kagglekit.toml", 'kernel = "alice/mnist-run"\naccelerator = "NvidiaTeslaP100"\n')
    s = load_project(tmp_path, environ={})
    assert s.machine_shape == "NvidiaTeslaP100"
    assert any("retired" in w for w in s.warnings)


@pytest.mark.parametrize(("text", "seconds"), [("11h", 39600), ("90m", 5400), ("1h30m", 5400), ("45s", 45),
                                                ("3600", 3600), (7200, 7200), ("1.5h", 5400)])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "n"), [("20GB", 20 * 10**9), ("500 MB", 500 * 10**6), ("1.5GiB", 1536 * 2**20),
                                         (1000, 1000), ("2tb", 2 * 10**12)])
def test_sizes(text: object, n: int) -> None:
    assert parse_size(text) == n


def test_quoted_booleans_in_the_project_file_are_refused(tmp_path: Path) -> None:
    """Strings like "yes" are for environment variables; in TOML a boolean is written true/false."""
    (tmp_path / "kagglekit.toml").write_text('kernel = "alice/bool-check"\ninternet = "yes"\n')
    with pytest.raises(ConfigError) as exc:
        load_project(tmp_path)
    assert "internet = 'yes'" in exc.value.message and "TOML boolean" in exc.value.message
    (tmp_path / "kagglekit.toml").write_text('kernel = "alice/bool-check"\ninternet = true\n')
    assert load_project(tmp_path, environ={"KAGGLEKIT_INTERNET": "no"}).enable_internet is False


@pytest.mark.parametrize(("after", "written", "fix"), [
    ('[test-set]\nn_epoch = 1\n', "[test-set] is a kagglekit setting outside [tool.kagglekit]",
     "[tool.kagglekit.test-set]"),
    ('[set]\n"CFG.lr" = 0.1\n', "[set] is a kagglekit setting outside [tool.kagglekit]", "[tool.kagglekit.set]"),
    ('[experiments.small]\nset = {n_epoch = 1}\n', "[experiments] is a kagglekit setting",
     "[tool.kagglekit.experiments]"),
])
def test_a_kagglekit_table_outside_tool_kagglekit_is_an_error(tmp_path: Path, after: str, written: str,
                                                              fix: str) -> None:
    """A top-level [test-set] in pyproject.toml was read nowhere: the test mode silently kept its values."""
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\n\n[tool.kagglekit]\nkernel = "alice/outside"\n\n'
          + after)
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    assert written in err.value.message and str(tmp_path / "pyproject.toml") in err.value.message
    assert fix in (err.value.hint or "")


def test_unknown_keys_inside_tool_kagglekit_and_other_top_level_tables(tmp_path: Path) -> None:
    """Unknown keys in [tool.kagglekit] are errors (as in kagglekit.toml); another tool's non-standard
    top-level table is not kagglekit's business, so it is only a warning."""
    write(tmp_path / "pyproject.toml", '[tool.kagglekit]\nkernel = "alice/outside"\ntest_sets = {a = 1}\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'test_sets'\. Did you mean 'test-set'"):
        load_project(tmp_path)
    write(tmp_path / "pyproject.toml", '[tool.kagglekit]\nkernel = "alice/outside"\n\n[mytool]\nx = 1\n')
    settings = load_project(tmp_path)
    assert any("top-level [mytool]" in w and "reads only [tool.kagglekit]" in w for w in settings.warnings)
    write(tmp_path / "pyproject.toml", '[tool.kagglekit]\nkernel = "alice/outside"\n[tool.ruff]\nline-length = 1\n')
    assert load_project(tmp_path).warnings == ()
