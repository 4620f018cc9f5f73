"""The second channel, as a new user meets it: requirements the image lacks, runs without internet, big code.

Real ``kagglekit`` commands over HTTP against the emulator, which really runs the kernels: online
installs (from PyPI, skipped when it cannot be reached), offline installs from a vendored wheels dataset
(wheels resolved from a local index, no network), a 3 MiB project through a code dataset, and the
refusals that keep a run from failing at its first import.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    return {"dataset_processing_seconds": 0.5}


def make_wheel(folder: Path, name: str, version: str, body: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (py3-none-any), as a local package index holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}/__init__.py": body,
             f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def project(root: Path, requirements: str, train: str, extra: str = "") -> Path:
    return write(root, {
        "kagglekit.toml": f'kernel = "demo/{root.name}"\nentry = "train.py"\ntest-flag = false\n{extra}',
        "requirements.txt": requirements,
        "train.py": train,
    })


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def log_of(emulator: Any, kernel: str) -> str:
    owner, slug = kernel.split("/")
    _, v = emulator.server.backend.resolve(owner, owner, slug, None)
    return str(emulator.server.backend.log_text(v.id))


def test_deps_check_reads_as_sentences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """No "(2026-06-17).):" and no "Requirements from no requirements.txt": the header says what was read."""
    from tests.audit_helpers import run_cli

    root = project(tmp_path / "deps-words", "numpy\n", "print('x')\n")
    monkeypatch.chdir(root)
    code, out, err = run_cli(["deps", "check"], capsys)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("Requirements from requirements.txt, against Kaggle's image (") and first.endswith("):")
    assert ".)" not in first and "(2026-06-17)):" in first
    (root / "requirements.txt").unlink()
    code, out, err = run_cli(["deps", "check"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == ("Nothing to check against Kaggle's image: no requirements.txt or "
                                   "[project].dependencies.")
    assert "Requirements from no" not in out
    (root / "requirements.txt").write_text("# nothing yet\n")
    code, out, err = run_cli(["deps", "check"], capsys)
    assert "Nothing to check against Kaggle's image: requirements.txt lists no requirements." in out
    assert "requirements: none listed in requirements.txt" in out


def test_deps_check_sorts_requirements_against_the_image(kk: Any, tmp_path: Path) -> None:
    root = project(tmp_path / "deps-check", """\
        numpy>=1.26          # in the image (2.x)
        torch==2.10.0        # the image's 2.10.0+cpu is that version
        pandas<2             # the image has 2.3
        cowsay==6.1
        pywin32; sys_platform == "win32"
        --extra-index-url https://example.org/simple
        -e .
        git+https://github.com/example/tool.git@v1#egg=tool
        mylib @ https://example.org/mylib-1.0.tar.gz
    """, "print('x')\n")
    code, out, err = kk("deps", "check", cwd=root)
    assert code == 0, err
    assert "ok             numpy>=1.26" in out and "ok             torch==2.10.0" in out
    assert "other version  pandas<2" in out and "missing        cowsay==6.1" in out
    assert "pywin32" in out and "marker excludes" in out and "pip option" in out
    assert out.count("not checked, not installed by kagglekit") == 2  # the git URL and the direct URL
    assert "the kernel pip-installs them before the entry (internet on)" in out
    code, out, _ = kk("--json", "deps", "check", "--no-internet", cwd=root)
    data = json.loads(out)
    assert data["push_will"] == "vendor" and data["install"] == ["pandas<2", "cowsay==6.1"]
    assert data["wheels_dataset"] == "demo/deps-check-wheels"
    assert "2026-06-17" in data["image"]  # the dated package list shipped with kagglekit
    # `bundle` writes what push sends: the kernel installs what the image lacks (internet on)...
    code, _, err = kk("bundle", "-o", str(tmp_path / "out"), cwd=root)
    assert code == 0, err
    script = (tmp_path / "out" / "deps-check.py").read_text()
    assert "'requirements': {'install': ['pandas<2', 'cowsay==6.1']}" in script
    # ... and with internet off it mounts the wheels dataset `deps vendor` uploads.
    code, _, err = kk("bundle", "--no-internet", "-o", str(tmp_path / "off"), cwd=root)
    assert code == 0, err
    meta = json.loads((tmp_path / "off" / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["demo/deps-check-wheels"] and meta["enable_internet"] is False
    assert "'wheels': 'demo/deps-check-wheels'" in (tmp_path / "off" / "deps-check.py").read_text()


TRAIN_COWSAY = """\
    import cowsay
    print(cowsay.get_output_string("cow", "installed in the kernel"))
    open("ok.txt", "w").write("ok")
"""


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from here")
def test_online_install_of_a_package_the_image_lacks(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = project(tmp_path / "online-deps", "cowsay==6.1\n", TRAIN_COWSAY)
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, out + err + log_of(emulator, "demo/online-deps")
    assert "missing cowsay==6.1; the kernel pip-installs them before the entry (internet on)" in out  # the summary (stdout) says it once
    log = log_of(emulator, "demo/online-deps")
    assert "installing 1 requirement(s) Kaggle's image lacks from PyPI" in log
    assert "installed cowsay==6.1 in" in log and "installed in the kernel" in log


def test_a_failing_install_stops_before_the_entry_and_names_the_requirement(kk: Any, emulator: Any,
                                                                            tmp_path: Path) -> None:
    emulator.control("config", {})
    root = project(tmp_path / "bad-deps", "kagglekit-no-such-package-zz==9.9\n", "open('ran.txt', 'w')\n")
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root, )
    assert code == 8, out + err  # the run ended in ERROR
    log = log_of(emulator, "demo/bad-deps")
    assert "pip could not install kagglekit-no-such-package-zz" in log
    assert "last lines of pip's log" in log and "The entry was not run" in log
    assert not (emulator.output_dir("demo", "bad-deps") / "ran.txt").exists()


def test_offline_run_installs_vendored_wheels_and_unchanged_wheels_upload_nothing(
        kk: Any, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    make_wheel(index, "kkdemo_hello", "1.0", "def hello():\n    return 'hello from a vendored wheel'\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    root = project(tmp_path / "offline-deps", "kkdemo-hello==1.0\n", """\
        import kkdemo_hello, socket
        print(kkdemo_hello.hello())
        try:
            socket.create_connection(("pypi.org", 443), timeout=3)
            print("NET: reachable")
        except OSError:
            print("NET: unreachable")
    """)
    code, out, err = kk("push", "--no-internet", "--wait", "--interval", "0.3", cwd=root)
    log = log_of(emulator, "demo/offline-deps")
    assert code == 0, out + err + log
    assert "go to dataset demo/offline-deps-wheels" in err
    assert "wheels dataset demo/offline-deps-wheels: uploaded" in err
    assert "offline from the wheels in" in log and "hello from a vendored wheel" in log
    meta = emulator.server.backend.kernel_by_ref("demo", "offline-deps").meta
    assert meta["enableInternet"] is False and "demo/offline-deps-wheels" in meta["datasetDataSources"]
    if emulator.get("state")["sandbox"]["internet_off_enforced"]:
        assert "NET: unreachable" in log
    # Unchanged requirements: the cached wheels, the same content, 0 bytes uploaded.
    code, out, err = kk("push", "--no-internet", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, out + err
    assert "[cached]" in err and "wheels dataset demo/offline-deps-wheels: unchanged" in err
    assert "uploaded 0 bytes" in err


def test_offline_push_refuses_what_cannot_work(kk: Any, emulator: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty-index"))
    (tmp_path / "empty-index").mkdir()
    root = project(tmp_path / "refused-deps", "kkdemo-absent==2.0\n", "print('never')\n", 'deps = "install"\n')
    code, _, err = kk("push", "--no-internet", cwd=root)
    assert code == 14 and "cannot pip install what Kaggle's image lacks: kkdemo-absent==2.0" in err
    (root / "kagglekit.toml").write_text('kernel = "demo/refused-deps"\nentry = "train.py"\ntest-flag = false\n')
    code, _, err = kk("push", "--no-internet", cwd=root)
    assert code == 14 and "kkdemo-absent==2.0 has no wheel for Kaggle's platform" in err
    assert "Options:" in err
    assert emulator.server.backend.kernel_by_ref("demo", "refused-deps") is None  # nothing was pushed


def test_a_3_mib_project_runs_through_a_code_dataset(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write(tmp_path / "big-code", {
        "kagglekit.toml": 'kernel = "demo/big-code"\nentry = "pkg.main"\ntest-flag = false\n',
        "pkg/__init__.py": "",
        "pkg/main.py": """\
            import hashlib
            from pkg import table
            print("big project ran:", hashlib.sha256(table.DATA.encode()).hexdigest()[:12])
        """,
    })
    blob = os.urandom(2_300_000)  # incompressible: ~3 MiB once base64-encoded into a module
    (root / "pkg" / "table.py").write_text(f"DATA = {base64.b64encode(blob).decode()!r}\n")
    expected = hashlib.sha256(base64.b64encode(blob)).hexdigest()[:12]
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    log = log_of(emulator, "demo/big-code")
    assert code == 0, out + err + log
    assert "Code: through dataset demo/big-code-code" in err and "% of Kaggle's source limit), so its archive is uploaded" in err
    assert "code dataset demo/big-code-code: uploaded" in err
    assert f"big project ran: {expected}" in log
    script = emulator.server.backend.source_text(1)
    assert len(script.encode()) < 64 * 1024
    # The same code again: nothing uploaded, a new version runs from the same dataset.
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, out + err
    assert "code dataset demo/big-code-code: unchanged" in err and "uploaded 0 bytes" in err


@pytest.mark.slow
def test_real_code_over_1_mib_runs_unedited_through_the_code_dataset(kk: Any, emulator: Any, tmp_path: Path) -> None:
    """Code we did not write: Pygments' own package (4.5 MB of Python), copied unedited into a project."""
    import shutil

    import pygments

    root = write(tmp_path / "pygments-demo", {
        "kagglekit.toml": 'kernel = "demo/pygments-demo"\nentry = "main.py"\ntest-flag = false\n',
        "main.py": """\
            import pygments
            from pygments import highlight
            from pygments.formatters import NullFormatter
            from pygments.lexers import PythonLexer
            print("pygments from", pygments.__file__)
            print(highlight("print('hi')", PythonLexer(), NullFormatter()).strip())
        """,
    })
    shutil.copytree(Path(pygments.__file__).parent, root / "pygments",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code, out, err = kk("push", "--wait", "--interval", "0.3", cwd=root)
    log = log_of(emulator, "demo/pygments-demo")
    assert code == 0, out + err + log
    assert "Code: through dataset demo/pygments-demo-code" in err
    assert "/kagglekit/" in log and "/project/pygments/__init__.py" in log  # the bundled copy, not the host's
    assert "print('hi')" in log


def test_vendoring_follows_dependencies_and_extras_but_not_what_the_image_has(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kagglekit.deps import load_image
    from kagglekit.vendor import vendor

    index = tmp_path / "index"
    make_wheel(index, "kkdemo_a", "1.0", "", requires=(
        "kkdemo-b>=1", "numpy>=1.20", 'kkdemo-c; extra == "fast"', 'kkdemo-win; sys_platform == "win32"'))
    make_wheel(index, "kkdemo_b", "1.2", "")
    make_wheel(index, "kkdemo_c", "0.3", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    plain = vendor(["kkdemo-a==1.0"], tmp_path / "p1", load_image())
    assert plain.wheels == ["kkdemo_a-1.0-py3-none-any.whl", "kkdemo_b-1.2-py3-none-any.whl"]
    assert plain.skipped_in_image == ["numpy>=1.20"]  # the image's 2.x satisfies it: never downloaded
    fast = vendor(["kkdemo-a[fast]==1.0"], tmp_path / "p2", load_image())
    assert "kkdemo_c-0.3-py3-none-any.whl" in fast.wheels and len(fast.wheels) == 3
    again = vendor(["kkdemo-a[fast]==1.0"], tmp_path / "p2", load_image())
    assert again.cached and again.wheels == fast.wheels
