"""kagglekit against Kaggle as it really is (docs/kaggle-facts.md), one test per behaviour.

Each test shows the emulator doing the prod-shaped thing (read over HTTP, as a client sees it) and
the kagglekit command that meets it doing the right thing: its exit code and its message. Every
command is the real entry point (``cli.main``) driving the real kagglesdk client over HTTP against
an emulator that runs the kernels in subprocesses.
"""

from __future__ import annotations

import json
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from kagglekit.cli import main
from tests.fixtures_emulator import EmulatorError
from tests.helpers import run_main

# Quick but prod-shaped: the run starts 2 s after the push, a new private kernel answers 403 for 1 s,
# saving the output takes at least 2 s.
pytestmark = pytest.mark.emulator_prod

PROD_FAST = {"run_start_delay_seconds": 2.0, "new_private_403_seconds": 1.0, "save_min_seconds": 2.0}


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    return dict(PROD_FAST)


def project(root: Path, slug: str, main_py: str, **settings: str) -> Path:
    """A one-file kagglekit project whose entry is ``main.py``."""
    root.mkdir(parents=True, exist_ok=True)
    extra = "".join(f'{k} = {v}\n' for k, v in settings.items())
    (root / "kagglekit.toml").write_text(f'kernel = "{slug}"\nentry = "main.py"\ntest-flag = false\n{extra}')
    (root / "main.py").write_text(textwrap.dedent(main_py))
    return root


def rpc_error(emulator: Any, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        emulator.rpc(method, body)
    except EmulatorError as exc:
        return exc.status, json.loads(exc.body)
    raise AssertionError(f"{method} answered 200")


# --- item 7: the nested error envelope ------------------------------------------------------------


def test_nested_error_envelope_is_read_never_shown_raw(kk: Any, emulator: Any, tmp_path: Path) -> None:
    status, body = rpc_error(emulator, "GetKernelSessionStatus", {"userName": "someone", "kernelSlug": "not-mine"})
    assert status == 403
    assert body == {"error": {"code": 403, "message": "Permission 'kernels.get' was denied",
                              "status": "PERMISSION_DENIED"}}

    code, _, err = kk("status", "someone/not-mine", cwd=tmp_path)
    assert code == 5, err
    assert "Permission 'kernels.get' was denied" in err and "PERMISSION_DENIED" in err
    assert '{"error"' not in err and '"code"' not in err


# --- item 8: the post-push 404, the short 403, --start-grace, --max-wait ------------------------------


def test_status_right_after_a_push_waits_for_kaggle_to_start_the_run(kk: Any, emulator: Any,
                                                                      tmp_path: Path) -> None:
    root = project(tmp_path / "p", "fresh-kernel", "print('hi')\n")
    assert kk("push", "--cpu", cwd=root)[0] == 0
    status, body = rpc_error(emulator, "GetKernelSessionStatus", {"userName": "demo", "kernelSlug": "fresh-kernel"})
    assert status in (403, 404)  # the new private kernel's 403, then "No runs found"
    assert body["error"]["message"] in ("No runs found for this kernel.", "Permission 'kernels.get' was denied")

    code, out, err = kk("status", cwd=root)
    assert code == 0, err
    assert "waiting for Kaggle to start the run" in out

    code, out, err = kk("status", "--watch", "--interval", "0.3", cwd=root)
    assert code == 0, err
    assert "waiting for Kaggle to start the run" in out and "COMPLETE" in out


def test_a_push_that_starts_no_run_ends_with_its_own_exit_code(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"run_start_delay_seconds": 3600})
    root = project(tmp_path / "p", "never-starts", "print('hi')\n")
    code, out, err = kk("push", "--cpu", "--wait", "--interval", "0.3", "--start-grace", "2s", cwd=root)
    assert code == 16, (out, err)
    assert "waiting for Kaggle to start the run" in out
    assert "The push of demo/never-starts v1 started no run" in err
    assert "No runs found for this kernel." in err and "--start-grace" in err

    code, out, err = kk("status", "--start-grace", "1s", cwd=root)
    assert code == 16, (out, err)
    assert "started no run" in err


def test_the_short_403_of_a_new_private_kernel_is_waited_through(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"new_private_403_seconds": 4, "run_start_delay_seconds": 0})
    root = project(tmp_path / "p", "private-new", "print('private hello')\n")
    assert kk("push", "--cpu", cwd=root)[0] == 0
    status, body = rpc_error(emulator, "GetKernelSessionStatus", {"userName": "demo", "kernelSlug": "private-new"})
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")

    code, out, err = kk("logs", "-f", cwd=root)
    assert code == 0, err
    assert "private hello" in out
    assert "waiting for Kaggle to start the run" in err


def test_max_wait_gives_up_watching_and_leaves_the_run_going(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = project(tmp_path / "p", "long-runner", "import time\ntime.sleep(60)\n")
    assert kk("push", "--cpu", cwd=root)[0] == 0
    t0 = time.monotonic()
    code, out, err = kk("status", "--watch", "--interval", "0.3", "--max-wait", "4s", cwd=root)
    assert code == 17, (out, err)
    assert time.monotonic() - t0 < 15
    assert "after --max-wait 4s; the run goes on" in err
    assert emulator.status("demo", "long-runner")[0] == C.STATUS_RUNNING


# --- item 9: used up vs projected -----------------------------------------------------------------------


def test_projected_refusal_names_the_reserving_sessions(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"gpu_quota_seconds": 100, "max_sessions": {"gpu": 2},
                                "run_start_delay_seconds": 0, "new_private_403_seconds": 0})
    first = project(tmp_path / "a", "gpu-first", "import time\ntime.sleep(60)\n")
    second = project(tmp_path / "b", "gpu-second", "print('never')\n")
    assert kk("push", "--gpu", cwd=first)[0] == 0
    emulator.wait_for_status("demo", "gpu-first", statuses={C.STATUS_RUNNING})
    quota = emulator.rpc("GetAcceleratorQuotaStatistics", {})
    assert float(quota["gpuQuota"]["timeReserved"].rstrip("s")) > 50  # the running session's reservation

    # The preflight sees the reservation and warns; --strict refuses before sending anything.
    code, out, err = kk("push", "--gpu", "--strict", cwd=second)
    assert code == 6, (out, err)
    assert "projected" in err and "demo/gpu-first v1" in err
    assert not [r for r in emulator.requests() if r["path"].endswith("SaveKernel") and r["status"] == 200][1:]

    code, out, err = kk("push", "--gpu", cwd=second)
    assert code == 6, (out, err)
    assert "Session cannot start because currently running sessions are projected to exceed" in err
    assert "not used up" in err
    assert "demo/gpu-first v1" in err and "reserve" in err
    assert "ends or is stopped" in err
    assert f"wait for it (kagglekit --endpoint {emulator.url} status --watch)" in err  # as kk invoked it


def test_used_up_refusal_says_when_the_quota_refreshes(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("usage", {"username": C.DEMO_USERNAME, "kind": "gpu", "seconds": 30 * 3600})
    root = project(tmp_path / "p", "gpu-late", "print('never')\n")
    code, out, err = kk("push", "--gpu", cwd=root)
    assert code == 6, (out, err)
    assert "Maximum weekly GPU quota of 30.00 hours reached." in err
    assert "used up" in err and "refreshes" in err and "Sat" in err
    assert "projected" not in err


# --- item 10: outputs of a running version, cancels, the save phase -------------------------------------


def test_pull_outputs_of_a_running_version_offers_the_newest_finished_one(kk: Any, emulator: Any,
                                                                         tmp_path: Path) -> None:
    root = project(tmp_path / "p", "pull-early", """\
        import os, time
        open("model.pt", "wb").write(b"w" * 100)
        if os.path.exists("/kaggle/input") and False:
            pass
        time.sleep(float(os.environ.get("SLEEP", "0")))
    """)
    assert kk("push", "--cpu", "--wait", "--interval", "0.3", cwd=root)[0] == 0
    (root / "main.py").write_text("import time\nopen('model.pt', 'wb').write(b'x')\ntime.sleep(60)\n")
    assert kk("push", "--cpu", cwd=root)[0] == 0
    emulator.wait_for_status("demo", "pull-early", 2, statuses={C.STATUS_RUNNING})
    listing = emulator.rpc("ListKernelSessionOutput", {"userName": "demo", "kernelSlug": "pull-early",
                                                        "versionLabel": "v2"})
    assert listing.get("files", []) == [] and not listing.get("log")

    code, out, err = kk("pull-outputs", cwd=root)
    assert code == 17, (out, err)
    assert "lists a version's outputs only after the run and its save end" in err
    assert "pull-outputs demo/pull-early/1" in err and "--version 1" in err

    code, out, err = kk("pull-outputs", "--version", "1", cwd=root)
    assert code == 0, err
    assert (root / "outputs" / "pull-early" / "v1" / "model.pt").stat().st_size == 100


def test_pull_after_a_cancel_waits_for_cancel_acknowledged(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"save_min_seconds": 3})
    root = project(tmp_path / "p", "cancelled-run", """\
        import time
        for i in range(5):
            open(f"ckpt-{i}.pt", "wb").write(b"c" * 1000)
        time.sleep(60)
    """)
    assert kk("push", "--cpu", cwd=root)[0] == 0
    emulator.wait_for_status("demo", "cancelled-run", statuses={C.STATUS_RUNNING})
    time.sleep(1.0)
    emulator.control("cancel", {"owner": "demo", "slug": "cancelled-run"})
    assert emulator.status("demo", "cancelled-run")[0] == C.STATUS_CANCEL_REQUESTED

    code, out, err = kk("pull-outputs", cwd=root)
    assert code == 0, (out, err)
    assert "CANCEL_REQUESTED" in err and "waiting" in err
    assert emulator.status("demo", "cancelled-run")[0] == C.STATUS_CANCEL_ACKNOWLEDGED
    assert sorted(p.name for p in (root / "outputs" / "cancelled-run" / "v1").glob("ckpt-*.pt")) == \
        [f"ckpt-{i}.pt" for i in range(5)]


def test_pull_after_a_cancel_says_why_it_did_not_pull(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"save_min_seconds": 30})
    root = project(tmp_path / "p", "slow-cancel", "import time\nopen('a.pt', 'wb').write(b'a')\ntime.sleep(60)\n")
    assert kk("push", "--cpu", cwd=root)[0] == 0
    emulator.wait_for_status("demo", "slow-cancel", statuses={C.STATUS_RUNNING})
    emulator.control("cancel", {"owner": "demo", "slug": "slow-cancel"})
    code, out, err = kk("pull-outputs", "--max-wait", "2s", cwd=root)
    assert code == 17, (out, err)
    assert "still CANCEL_REQUESTED" in err and "files appear" in err


def test_push_wait_shows_the_save_phase(kk: Any, emulator: Any, tmp_path: Path) -> None:
    emulator.control("config", {"save_min_seconds": 4})
    root = project(tmp_path / "p", "saver-kernel", "open('weights.bin', 'wb').write(b'w' * 2_000_000)\n")
    code, out, err = kk("push", "--cpu", "--wait", "--interval", "0.3", cwd=root)
    assert code == 0, (out, err)
    assert "saving outputs, 2.0 MB" in out
    lines = out.splitlines()
    saving = next(i for i, line in enumerate(lines) if "saving outputs" in line)
    assert any("COMPLETE" in line for line in lines[saving + 1:])


# --- item 11: the emulator's own addresses, env, config, GPU on CPU ---------------------------------------


def test_local_prints_the_emulators_page_for_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", "local-page", "print('on the emulator')\n")
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_info:
        main(["--local", "push", "--gpu", "--wait", "--interval", "0.3"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert "kaggle.com" not in out
    assert "on this machine's CPU" in out + err
    url = next(w for w in out.split() if w.startswith("http://127.0.0.1:") and "/code/demo/local-page" in w)
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "COMPLETE" in page and "on the emulator" in page and "v1" in page

    with pytest.raises(SystemExit) as exit_info:
        main(["--local", "pull-outputs"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["--local", "report"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert "kagglekit emulator, which runs GPU and TPU sessions on the local CPU" in out


def test_emulator_env_and_config_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        return run_main(list(args), capsys)

    code, out, err = run("emulator", "config", "legacy_layout=true", "session_limit_seconds.gpu=600")
    assert code == 0, err
    assert "legacy_layout = true" in out and '"gpu": 600' in out
    code, out, _ = run("--json", "emulator", "config")
    assert json.loads(out)["legacy_layout"] is True
    code, out, err = run("emulator", "config", "no_such_key=1")
    assert code == 13 and "no_such_key" in err

    code, out, err = run("emulator", "env")
    assert code == 0, err
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert env["KAGGLE_USERNAME"] == C.DEMO_USERNAME and env["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST"
    assert env["KAGGLE_EMULATOR_URL"].startswith("http://127.0.0.1:")
    assert urllib.request.urlopen(env["KAGGLE_EMULATOR_URL"] + "/__emulator/health", timeout=5).status == 200


def test_the_kernel_page_escapes_what_the_run_printed(emulator: Any) -> None:
    emulator.control("config", {"run_start_delay_seconds": 0, "new_private_403_seconds": 0})
    emulator.push("print('<script>alert(1)</script> & done')\nopen('w x.bin', 'wb').write(b'1')\n", "page-kernel")
    emulator.wait_for_status("demo", "page-kernel")
    page = urllib.request.urlopen(f"{emulator.url}/code/demo/page-kernel", timeout=10).read().decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in page and "<script>alert" not in page
    assert "COMPLETE" in page and "w x.bin" in page and "CPU" in page
    link = page.split("href='")[-1].split("'")[0].replace("&amp;", "&")
    assert urllib.request.urlopen(link.replace(" ", "%20"), timeout=10).read() == b"1"
    index = urllib.request.urlopen(f"{emulator.url}/code", timeout=10).read().decode()
    assert "demo/page-kernel" in index
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{emulator.url}/code/demo/no-such-kernel", timeout=10)
    assert missing.value.code == 404
