"""The running_test toggle and --set overrides on source text (the bundled copy).

Only the value's span may change: a user reading the bundled config.py must see their
own file, comments and layout included, with just the flag and the overrides changed.
"""

from __future__ import annotations

import pytest

from kagglekit.errors import BundleError, ConfigError
from kagglekit.testflag import apply_flags

SEED_CONFIG = '''\
import os
import torch


class Config:
    """Rarely changed first, often tuned below (the seed notes' convention)."""

    data_path = "/kaggle/input/digits"  # where the data lives
    at_cloud = 'kaggle/working' in os.getcwd()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    seed = 42
    model_save_path = "model.pt"

    n_example = 60000
    n_epoch = 30
    early_stop = 5
    batch_size = 256
    lr: float = 1e-3
    model_name = "résnet"; dropout = 0.1  # two on one line, after non-ASCII text

    runing_test = True  # must be modified by hand
    if runing_test:
        n_example = 20
        n_epoch = 2
'''


def test_full_toggles_the_misspelled_flag_and_keeps_everything_else() -> None:
    new, changes = apply_flags({"config.py": SEED_CONFIG}, mode="full")
    expected = SEED_CONFIG.replace("runing_test = True  # must", "runing_test = False  # must")
    assert new["config.py"] == expected
    assert [str(c) for c in changes] == ["config.py:21 runing_test: True → False"]


def test_test_mode_on_an_already_true_flag_reports_unchanged() -> None:
    new, changes = apply_flags({"config.py": SEED_CONFIG}, mode="test")
    assert new["config.py"] == SEED_CONFIG
    assert len(changes) == 1 and not changes[0].changed and str(changes[0]) == "config.py:21 runing_test = True (already so)"


def test_set_overrides_every_assignment_so_the_value_wins_in_both_modes() -> None:
    """n_epoch is assigned in the body and in the `if runing_test:` block: both must get the override."""
    new, changes = apply_flags({"config.py": SEED_CONFIG}, mode="test",
                               sets={"n_epoch": "1", "lr": "5e-4", "model_name": "vit", "dropout": "0"})
    text = new["config.py"]
    assert "    n_epoch = 1\n    early_stop = 5" in text
    assert "        n_epoch = 1\n" in text and "n_epoch = 2" not in text and "n_epoch = 30" not in text
    assert "lr: float = 5e-4" in text
    assert "model_name = 'vit'; dropout = 0.0  # two on one line, after non-ASCII text" in text
    ns: dict[str, object] = {}
    exec(compile(text.replace("import torch\n", "").replace(
        "device = 'cuda' if torch.cuda.is_available() else 'cpu'", "device = 'cpu'"), "c", "exec"), ns)
    cfg = ns["Config"]
    assert (cfg.n_epoch, cfg.lr, cfg.model_name, cfg.dropout, cfg.runing_test) == (1, 5e-4, "vit", 0.0, True)
    assert [c.line for c in changes] == sorted(c.line for c in changes)
    assert {(c.name, c.old, c.new) for c in changes} >= {("n_epoch", "30", "1"), ("n_epoch", "2", "1"),
                                                         ("model_name", '"résnet"', "'vit'")}


def test_running_test_in_a_cfg_class_and_multiline_values() -> None:
    src = "class TrainCFG:\n    running_test = (\n        False\n    )\n    sizes = [\n        1,\n        2,\n    ]\n"
    new, changes = apply_flags({"pkg/settings.py": src}, mode="test", sets={"sizes": "[3, 4]"})
    assert new["pkg/settings.py"] == "class TrainCFG:\n    running_test = (\n        True\n    )\n    sizes = [3, 4]\n"
    assert [str(c) for c in changes] == ["pkg/settings.py:3 running_test: False → True",
                                         "pkg/settings.py:5 sizes: [ 1, 2, ] → [3, 4]"]


def test_declared_test_flag_in_a_class_not_named_config() -> None:
    src = "class Hyper:\n    smoke = False\n    steps = 1000\n"
    new, changes = apply_flags({"hp.py": src}, mode="test", sets={"steps": "10"},
                               test_flag="hp.py:Hyper.smoke")
    assert new["hp.py"] == "class Hyper:\n    smoke = True\n    steps = 10\n"
    assert len(changes) == 2


def test_missing_flag_says_where_it_looked_and_how_to_declare_it() -> None:
    with pytest.raises(BundleError) as err:
        apply_flags({"train.py": "class Config:\n    n_epoch = 3\n"}, mode="test")
    assert "Config or CFG" in err.value.message and "runing_test" in err.value.message
    assert 'test-flag = "config.py:Config.running_test"' in (err.value.hint or "")


def test_declared_flag_errors() -> None:
    with pytest.raises(BundleError) as err:
        apply_flags({"a.py": "class Config:\n    x = 1\n"}, mode="test", test_flag="b.py:Config.running_test")
    assert "b.py" in err.value.message
    with pytest.raises(BundleError) as err:
        apply_flags({"a.py": "class Config:\n    x = 1\n"}, mode="test", test_flag="a.py:Confg.running_test")
    assert "did you mean Config" in err.value.message
    with pytest.raises(BundleError) as err:
        apply_flags({"a.py": "class Config:\n    x = 1\n"}, mode="full", test_flag="a.py:Config.running_test")
    assert "no assignment to running_test" in err.value.message


def test_two_config_classes_are_ambiguous() -> None:
    sources = {"a.py": "class Config:\n    running_test = True\n", "b.py": "class CFG:\n    running_test = True\n"}
    with pytest.raises(BundleError) as err:
        apply_flags(sources, mode="full")
    assert "ambiguous" in err.value.message and "a.py:2" in err.value.message and "b.py:2" in err.value.message


@pytest.mark.parametrize(("value", "needle"), [("1.5", "float does not fit"), ("True", "bool does not fit"),
                                               ("ten", "not a Python literal")])
def test_set_value_must_fit_the_type(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        apply_flags({"config.py": SEED_CONFIG}, mode=None, sets={"n_epoch": value})
    assert needle in err.value.message and "config.py" in err.value.message


def test_set_unknown_attribute_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as err:
        apply_flags({"config.py": SEED_CONFIG}, mode="full", sets={"n_epochs": "1"})
    assert "did you mean n_epoch" in err.value.message


def test_non_literal_attributes_take_any_literal_and_nothing_happens_without_a_request() -> None:
    new, _ = apply_flags({"config.py": SEED_CONFIG}, mode="full", sets={"device": "cpu"})
    assert "    device = 'cpu'\n" in new["config.py"]
    assert apply_flags({"config.py": SEED_CONFIG}, mode=None, sets={}) == ({}, [])


def test_disabled_flag_leaves_sources_alone_in_any_mode() -> None:
    new, changes = apply_flags({"config.py": SEED_CONFIG}, mode="test", test_flag_enabled=False)
    assert new == {} and changes == []
