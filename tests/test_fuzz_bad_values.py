"""Issue 10: generated bad values through the real CLI must give a documented exit code, never a bug report.

Four families, each driven through ``cli.main`` (the one error boundary) exactly as a user types them:
settings (pyproject.toml and KAGGLEKIT_* variables, via ``bundle``), kernel references (``status``,
``pull-outputs`` and ``logs`` against a real emulator), ``--set`` overrides (``bundle``) and output paths
(``bundle -o``, ``pull-outputs -o``, ``report -o``, ``quota --plot``). Each value is bad by
construction; what is asserted is the documented exit code for its family, an ``Error:`` line, no
traceback and no "unexpected ... report it as a kagglekit bug". Values come from fixed lists (the
audit's cases) plus a seeded random generator, so a failure names a reproducible value.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from tests.audit_helpers import run_cli, write_project

SEED = 10


def junk(rng: random.Random, n: int) -> list[str]:
    return [v for v in _junk(rng, n * 2) if not v.strip().isascii() or not v.strip().isdigit()][:n]


def _junk(rng: random.Random, n: int) -> list[str]:
    """Random strings built from the characters that break parsers: digits of other scripts, controls, ..."""
    alphabet = [*"09azAZ-_./\\ :;=~!?*[]{}()'\"\t\n", "\x00", "\x7f", "\u00b2", "\u0661", "\u0967", "\U0001d7d9",
                "\u2603", "\ufeff", "\u202e", "\u00e9"]
    out = []
    for _ in range(n):
        size = rng.choice([1, 3, 8, 40, 300])
        out.append("".join(rng.choice(alphabet) for _ in range(size)))
    return out


def check(results: list[tuple[str, int, str]], allowed: set[int]) -> None:
    bad = [(value, code, err.strip().splitlines()[-1:] if err.strip() else "")
           for value, code, err in results
           if code not in allowed or "Traceback" in err or "unexpected" in err.lower() or "Error" not in err]
    print(f"{len(results) - len(bad)}/{len(results)} bad values handled cleanly")
    assert not bad, f"{len(bad)} of {len(results)} values misbehaved: " + "; ".join(
        f"{v!r:.80} -> exit {c} {e}" for v, c, e in bad[:15])


# --------------------------------------------------------------------------- settings

def _toml(value: Any) -> str:
    if isinstance(value, str) and value.startswith("RAW:"):
        return value[4:]
    return json.dumps(value)


SETTING_VALUES: list[tuple[str, Any]] = [
    ("timeout", "RAW:inf"), ("timeout", "RAW:-inf"), ("timeout", "RAW:nan"), ("timeout", "RAW:" + "9" * 400),
    ("timeout", "9" * 400), ("timeout", "RAW:0.1"), ("timeout", "0.4s"), ("timeout", "0"), ("timeout", "-5m"),
    ("timeout", "13h"), ("timeout", "1e999"), ("timeout", "\u00b2h"), ("timeout", ""), ("timeout", "RAW:true"),
    ("timeout", "RAW:[1]"), ("timeout", "RAW:{a = 1}"), ("timeout", "5 parsecs"), ("timeout", "1h\x00"),
    ("output-budget", "9" * 400 + "B"), ("output-budget", "0.4"), ("output-budget", "RAW:1e400"),
    ("output-budget", "nan"), ("output-budget", "21GB"), ("output-budget", "-1"), ("output-budget", "1 XB"),
    ("kernel", "../xxxxx"), ("kernel", "./xxxxx"), ("kernel", "a b/xxxxx"), ("kernel", "al\u00efce/xxxxx"),
    ("kernel", "a/b/c"), ("kernel", "abc"), ("kernel", "/xxxxx"), ("kernel", "owner/UPPER-case"),
    ("kernel", "RAW:42"), ("accelerator", "quantum"), ("accelerator", ""), ("entry", "../../etc/passwd.py"),
    ("entry", "/abs.py"), ("entry", "1bad.module"), ("code-file", "a/b.py"), ("test-flag", "config.py"),
    ("datasets", "RAW:[\"nope\"]"), ("datasets", "not-a-list"), ("models", "RAW:[\"a/b/c/d/x\"]"),
    ("title", "abc"), ("internet", "yes"), ("private", "RAW:1"),
    ("exit-grace", "0"), ("exit-grace", "RAW:inf"), ("exit-grace", "forever"), ("exit-grace", "13h"),
    ("env", "RAW:[\"A=1\"]"), ("env", "RAW:{ \"9x\" = 1 }"), ("env", "RAW:{ GH_TOKEN = \"ghp_1\" }"),
    ("env", "RAW:{ A = { b = 1 } }"), ("env", "not-a-table"),
]


def test_fuzz_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(SEED)
    values = SETTING_VALUES + [(rng.choice(["timeout", "output-budget", "kernel"]), v) for v in junk(rng, 15)]
    results = []
    for i, (key, value) in enumerate(values):
        root = write_project(tmp_path / f"p{i}", kernel="fuzz-kernel")
        lines = [ln for ln in (root / "pyproject.toml").read_text().splitlines() if not ln.startswith(key + " ")]
        (root / "pyproject.toml").write_text("\n".join(lines) + f"\n{key} = {_toml(value)}\n")
        monkeypatch.chdir(root)
        code, _out, err = run_cli(["bundle", "-o", str(tmp_path / f"out{i}")], capsys)
        results.append((f"{key} = {_toml(value)}", code, err))
    # The same values through the environment (KAGGLEKIT_TIMEOUT=..., strings only, no NUL: env can't hold it).
    root = write_project(tmp_path / "env", kernel="fuzz-kernel")
    monkeypatch.chdir(root)
    for key, value in values:
        if not isinstance(value, str) or value.startswith("RAW:") or "\x00" in value or not value.strip() \
                or key in ("kernel", "internet", "private"):  # file-only checks (TOML types, owner)
            continue
        name = "KAGGLEKIT_" + key.upper().replace("-", "_")
        monkeypatch.setenv(name, value)
        code, _out, err = run_cli(["bundle", "-o", str(tmp_path / "out-env")], capsys)
        monkeypatch.delenv(name)
        results.append((f"{name}={value}", code, err))
    assert len(results) >= 60
    check(results, {3, 11})


# --------------------------------------------------------------------------- kernel references

REFS = [
    "\u00b2", "demo/base-proj/\u00b2", "demo/base-proj/" + "9" * 5000, "demo/base-proj/\u0661\u0662",
    "demo/base-proj/\U0001d7d9", "demo/base-proj/0", "demo/base-proj/-1", "demo/base-proj/v", "demo/base-proj/1.5",
    "demo/base-proj/1e3", "a/b/c/d", " ", "/", "//", "demo//base-proj", "demo/../base-proj", "../../etc/passwd",
    "demo/\u015blug-name", "demo/slug name", "demo/slug-name\x00", "demo/base-proj\n", "https://www.kaggle.com/code/",
    "https://evil.example/code/demo/base-proj/../../x", "demo/" + "a" * 5000, "demo/xx", "de mo/base-proj",
    "\u202edemo/base-proj", "demo/base-proj/v\u00b2", "demo/base-proj/99999999999999999999",
]


def test_fuzz_kernel_refs(as_demo: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    refs = REFS + junk(rng, 15)
    results = []
    for ref in refs:
        for command in (["status", ref], ["pull-outputs", ref, "-o", str(tmp_path / "o")], ["logs", ref]):
            code, _out, err = run_cli(command, capsys)
            results.append((f"{command[0]} {ref}", code, err))
    # --test-accelerator names itself, --resume-from takes a ref too
    write_project(tmp_path / "proj", kernel="fuzz-kernel")
    monkeypatch.chdir(tmp_path / "proj")
    for ref in REFS[:12]:
        code, _out, err = run_cli(["push", "--cpu", "--resume-from", ref], capsys)
        results.append((f"push --resume-from {ref}", code, err))
    code, _out, err = run_cli(["push", "--gpu", "--after-test", "--test-accelerator", "quantum"], capsys)
    results.append(("--test-accelerator quantum", code, err))
    assert "--test-accelerator" in err
    assert len(results) >= 100
    check(results, {2, 3, 5})


# --------------------------------------------------------------------------- --set

SETS = [
    "n_epoch=" + "9" * 5000, "=1", "n_epoch", "1abc=2", "n_epoch=import os", "n_epoch=__import__('os')",
    "n_epoch=[1,", "n_epoch=" + "(" * 300 + "1" + ")" * 300, "n_epoch=" + "[" * 5000, "n_epoch=\U0001f600",
    "n_epoch='unterminated", "n_epoch=1;import os", "n_epoch=1\nimport os", "n_epoch=\x00", "n_epoch='text'",
    "n_epoch=1.5", "n_epoch=[1, 2]", "n_epoch={'a': 1}", "no_such_attribute=1", "n_epoch=" + "1" * 100 + "x",
    "lr=abc", "lr='0.1'", "n\u00e9poch=1", "n_epoch=\u00b2", "n_epoch=True or 1",
]


CONFIG_FILE_SETS = [  # --set into config files (YAML/TOML) besides Python sources
    "configs/base.yaml:train.epochs=" + "9" * 5000, "configs/base.yaml:train.epochs=[", "configs/bad.yaml:a=1",
    "nonexist.yaml:a=1", "../x.yaml:a=1", "/etc/passwd:a=1", "configs/base.yaml:=1", "configs/base.yaml:train..epochs=1",
    "c.toml:a=inf", "c.toml:a.b.c=1", "configs/base.yaml:train.epochs.x=1", "main.py:=1", ":a=1",
    "configs/base.yaml:train[0]=1",
]


def test_fuzz_set_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p", files={"main.py": """\
        class Config:
            running_test = True
            n_epoch = 2
            lr = 0.01

        print(Config.n_epoch)
    """})
    (root / "configs").mkdir()
    (root / "configs" / "base.yaml").write_text("train:\n  epochs: 3\n")
    (root / "configs" / "bad.yaml").write_bytes(b"\xff\xfe\x00bin: [")
    (root / "c.toml").write_text("a = 1\n")
    monkeypatch.chdir(root)
    rng = random.Random(SEED)
    values = SETS + CONFIG_FILE_SETS + [f"n_epoch={v}" for v in junk(rng, 10)] + [f"{v}=1" for v in junk(rng, 5)] \
        + [f"configs/base.yaml:train.epochs={v}" for v in junk(rng, 5)]
    results = []
    for value in values:
        code, _out, err = run_cli(["bundle", "--test", "--set", value, "-o", str(tmp_path / "out")], capsys)
        results.append((value, code, err))
    assert len(results) >= 40
    # A --set that names nothing or gives a value that does not fit is a settings error (3); 2: an argument
    # holding a NUL is a usage error. Only a project file kagglekit cannot edit is a bundle error (11).
    unreadable = [r for r in results if r[0] == "configs/bad.yaml:a=1"]
    check([r for r in results if r not in unreadable], {2, 3})
    check(unreadable, {11})


def test_a_set_naming_nothing_is_a_settings_error_that_lists_the_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p", files={"main.py": """\
        EPOCHS = 3

        class CFG:
            running_test = True
            epochs = 2
            lr = 0.01

        print(CFG.epochs, EPOCHS)
    """})
    monkeypatch.chdir(root)
    code, _out, err = run_cli(["bundle", "--test", "--set", "n_epochs=1", "-o", str(tmp_path / "out")], capsys)
    assert code == 3, err  # the same code as a malformed --set (docs/exit-codes.md)
    assert "CFG has no attribute n_epochs" in err and "did you mean epochs" in err
    assert "main.py class CFG has: epochs, lr; module constants: EPOCHS." in err
    code, _out, err = run_cli(["bundle", "--test", "--set", "CFG.n_epochs=1", "-o", str(tmp_path / "out")], capsys)
    assert code == 3 and "Class CFG has: epochs, lr." in err, err
    code, _out, err = run_cli(["bundle", "--test", "--set", "n_epochs", "-o", str(tmp_path / "out")], capsys)
    assert code == 3 and "is not NAME=VALUE" in err, err


# --------------------------------------------------------------------------- output paths

def test_fuzz_output_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p")
    (root / "afile").write_text("x")
    (root / "adir").mkdir()
    os.mkfifo(root / "afifo")
    run_dir = root / "outputs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 0.5}) + "\n")
    monkeypatch.chdir(root)
    # Never a real device as a FILE target: a failing check must not be able to replace one.
    folders = ["afile", "afile/sub", "afile/a/b/c", "/dev/null", "/dev/kagglekit-fuzz", "/proc/1/x", "/proc/self/x",
               "/sys/kernel/x", "/sys", "a\x00b", "x" * 300, "d/" * 2100, "afifo", "afifo/sub"]
    files = ["afile/q.png", "adir", "afifo", "/proc/1/q.png", "/proc/self/q.png", "/sys/kernel/q.png",
             "a\x00b.png", "x" * 300 + ".png", "adir/" + "y" * 300 + ".md", "afile/" * 3 + "r.md"]
    results = []
    for folder in folders:
        for command in (["bundle", "-o", folder], ["pull-outputs", "demo/some-kernel", "-o", folder]):
            code, _out, err = run_cli(command, capsys)
            results.append((" ".join(command), code, err))
    for file in files:
        for command in (["quota", "--plot", file], ["report", str(run_dir), "-o", file]):
            code, _out, err = run_cli(command, capsys)
            results.append((" ".join(command), code, err))
    assert not (root / "afifo").is_file()
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()
    assert len(results) >= 40
    check(results, {2, 3})


def test_a_typed_value_is_shown_cut_short_with_its_length() -> None:
    """The one helper behind every "not valid: 'xxx...'" message (settings, --set, kernel references)."""
    from kagglekit.errors import shown

    assert shown("abc") == "'abc'"
    text = shown("9" * 5000)
    assert len(text) < 80 and text.startswith("'999") and text.endswith("999' (5000 characters)")
    assert shown("9" * 5000, 80).startswith("'" + "9" * 59 + "...")  # callers keep their own limits
    assert shown(10 ** 400).endswith("(401 characters)")
