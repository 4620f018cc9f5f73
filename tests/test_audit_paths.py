"""Issue 10, item 13: odd output paths, ignore lines, binary metrics and BOM sources are handled, not crashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.audit_helpers import assert_clean_failure, run_cli, write_project

BAD_DIRS = ["afile/sub", "afile", "/dev/null", "/proc/1/x", "/sys/kernel/x", "/dev/kagglekit-x"]
# "afifo" stands for /dev/null and other devices: a test that fails must not replace a real device (an
# atomic write renames a regular file over whatever is there, and tests may run as root).
BAD_FILES = ["/proc/1/q.png", "/sys/kernel/q.png", "afile/q.png", "adir", "afifo"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_project(tmp_path / "p")
    (root / "afile").write_text("a file, not a folder")
    (root / "adir").mkdir()
    os.mkfifo(root / "afifo")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("target", BAD_DIRS)
def test_bundle_into_a_bad_folder(project: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["bundle", "-o", target], capsys)
    assert_clean_failure(code, err, (2, 3))  # 2: click's own check of the path type
    assert target in err


@pytest.mark.parametrize("target", BAD_DIRS)
def test_pull_outputs_into_a_bad_folder_fails_before_any_network(project: Path, target: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # No credentials and no server: the path is checked first.
    code, _out, err = run_cli(["pull-outputs", "demo/some-kernel", "-o", target], capsys)
    assert_clean_failure(code, err, (2, 3))  # 2: click's own check of the path type
    assert target in err


@pytest.mark.parametrize("target", BAD_FILES)
def test_quota_plot_to_a_bad_file(project: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["quota", "--plot", target], capsys)
    assert_clean_failure(code, err, (2, 3))  # 2: click's own check of the path type
    assert "--plot" in err


@pytest.mark.parametrize("target", BAD_FILES)
def test_report_to_a_bad_file(project: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = project / "outputs" / "run"
    out_dir.mkdir(parents=True)
    (out_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 0.5}) + "\n")
    code, _out, err = run_cli(["report", str(out_dir), "-o", target], capsys)
    assert_clean_failure(code, err, (2, 3))  # 2: click's own check of the path type
    assert not (project / "afifo").is_file()  # a device or pipe is never replaced by a file


def test_report_on_a_binary_metrics_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = project / "outputs" / "run"
    out_dir.mkdir(parents=True)
    (out_dir / "metrics.jsonl").write_bytes(b"\xff\xfe\x00\x80binary\x81\n"
                                            + json.dumps({"epoch": 1, "train_loss": 0.5}).encode() + b"\n")
    code, out, err = run_cli(["report", str(out_dir), "-o", str(project / "r.md")], capsys)
    assert code == 0, err
    assert "1 unreadable line" in out + err
    assert (project / "r.md").is_file()


def test_kaggleignore_with_a_lone_bang_is_skipped_with_a_warning(project: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (project / ".kaggleignore").write_text("!\n*.txt\n")
    (project / "notes.txt").write_text("left out")
    code, out, err = run_cli(["--json", "bundle", "-o", str(project / "out")], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert "notes.txt" not in {f["path"] for f in result["files"]}  # the other lines still apply
    assert any(".kaggleignore line 1" in w for w in result["warnings"])


def test_config_with_a_utf8_bom_takes_the_test_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "p", extra_settings='test-flag = "config.py:Config.running_test"\n',
                         files={"main.py": "import config\nprint(config.Config.running_test)\n"})
    (root / "config.py").write_bytes("\ufeffclass Config:\n    running_test = False  # é\n".encode())
    monkeypatch.chdir(root)
    code, out, err = run_cli(["--json", "bundle", "--test", "-o", str(root / "out")], capsys)
    assert code == 0, err
    changes = json.loads(out)["flag_changes"]
    assert [(c["file"], c["name"], c["old"], c["new"]) for c in changes] == [("config.py", "running_test", "False",
                                                                              "True")]
