"""The experiment queue: experiments and grids, the ledger-backed queue and its lease, the admission rule,
compare, and ``queue run`` against the prod-shaped emulator (real kernels, real relay sessions)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kagglekit import constants as C
from kagglekit.errors import ConfigError, QueueBusyError
from kagglekit.experiments import Experiment, experiment_kernel, experiment_slug, parse_grid, parse_table
from kagglekit.ledger import Ledger
from kagglekit.queue import QUEUED, RUNNING, QueueStore, refusal_kind
from kagglekit.quota import admits
from tests.queue_project import write_project

REPO = Path(__file__).resolve().parent.parent


# --- experiments ----------------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_in_order() -> None:
    grid = parse_grid(["lr=1e-3,3e-4", "fold=0,1,2"])
    assert [e.name for e in grid] == ["lr-1e-3-fold-0", "lr-1e-3-fold-1", "lr-1e-3-fold-2",
                                      "lr-3e-4-fold-0", "lr-3e-4-fold-1", "lr-3e-4-fold-2"]
    assert grid[4].sets == {"lr": "3e-4", "fold": "1"}


@pytest.mark.parametrize("bad", ["lr", "lr=", "1x=1,2", "lr=1,2 lr=3"])
def test_bad_grid_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_grid(bad.split(" "))


def test_experiment_table_and_slugs() -> None:
    exps = parse_table([{"name": "small lr", "set": {"lr": 1e-4, "amp": True}, "accelerator": "gpu"},
                        {"name": "big", "set": {"lr": "0.1"}, "mode": "full", "timeout": "2h"}])
    assert exps[0].sets == {"lr": "0.0001", "amp": "True"} and exps[0].accelerator == "gpu"
    assert experiment_kernel("alice/mnist", "small lr") == "alice/mnist-small-lr"
    long = experiment_slug("a-rather-long-project-name", "with an even longer experiment name, fold 3")
    assert len(long) <= 44 and long != experiment_slug("a-rather-long-project-name", "with an even longer experiment "
                                                                                      "name, fold 4")
    with pytest.raises(ConfigError, match="share the kernel slug"):
        parse_table([{"name": "a b"}, {"name": "a-b"}])
    with pytest.raises(ConfigError, match="unknown key"):
        parse_table([{"name": "x", "sets": {}}])
    with pytest.raises(ConfigError, match="mode"):
        parse_table([{"name": "x", "mode": "fast"}])


def test_settings_read_the_experiments_table(tmp_path: Path) -> None:
    from kagglekit.experiments import from_settings
    from kagglekit.settings import load_project

    root = write_project(tmp_path / "p", experiments='[tool.kagglekit.experiments.base]\nset = { lr = "0.1" }\n'
                                                      '[tool.kagglekit.experiments.slow]\nset = { lr = "0.01" }\n'
                                                      'timeout = "30"\n')
    exps = from_settings(load_project(root))
    assert [(e.name, dict(e.sets), e.timeout) for e in exps] == [("base", {"lr": "0.1"}, None),
                                                                 ("slow", {"lr": "0.01"}, "30")]


# --- the store and its lease -----------------------------------------------------------------------

def test_store_adds_once_and_keeps_order(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    store = QueueStore(ledger, "demo/p", "demo")
    store.add(parse_grid(["lr=1,2"]), "demo/p")
    store.add(parse_grid(["lr=1,2,3"]), "demo/p")  # only lr-3 is new
    items = store.items()
    assert [(i.name, i.kernel, i.state) for i in items] == [("lr-1", "demo/p-lr-1", QUEUED),
                                                            ("lr-2", "demo/p-lr-2", QUEUED),
                                                            ("lr-3", "demo/p-lr-3", QUEUED)]
    with pytest.raises(Exception, match="other settings"):
        store.add([Experiment("lr-1", {"lr": "9"})], "demo/p")
    # a transition only from the states given: a cancel meanwhile wins over a push that finishes later
    assert store.transition(items[0].id, [QUEUED], state="cancelled")
    assert not store.transition(items[0].id, [QUEUED], state=RUNNING)
    assert ledger.schema_version >= 6


def test_items_are_read_again_only_when_the_ledger_changed(tmp_path: Path) -> None:
    """A tick asks for the items several times: one read while nothing changed; a change made here, by
    another connection, or by another process is seen at the next ask."""
    path = tmp_path / "l.sqlite"
    ledger = Ledger(path)
    store = QueueStore(ledger, "demo/p", "demo")
    reads: list[str] = []
    ledger._conn.set_trace_callback(lambda sql: reads.append(sql) if "SELECT * FROM queue_items" in sql else None)
    store.add(parse_grid(["lr=1,2"]), "demo/p")
    first = store.items()
    assert store.items() == first and store.items() == first and len(first) == 2
    assert len(reads) == 1
    assert store.transition(first[0].id, [QUEUED], state=RUNNING)  # this process
    assert [i.state for i in store.items()] == [RUNNING, QUEUED] and len(reads) == 2
    other = QueueStore(Ledger(path), "demo/p", "demo")  # another connection, as another tool would hold
    assert other.transition(first[1].id, [QUEUED], state=RUNNING)
    assert [i.state for i in store.items()] == [RUNNING, RUNNING] and len(reads) == 3
    script = ("import sys; from kagglekit.ledger import Ledger; from kagglekit.queue import QueueStore; "
              "s = QueueStore(Ledger(sys.argv[1]), 'demo/p', 'demo'); "
              "assert s.transition(s.items()[0].id, ['running'], state='done')")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=REPO, timeout=60)
    assert [i.state for i in store.items()] == ["done", RUNNING] and len(reads) == 4
    assert store.items() == store.items() and len(reads) == 4


def test_lease_one_runner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = QueueStore(Ledger(path), "demo/p", "demo")
    second = QueueStore(Ledger(path), "demo/p", "demo")
    first.acquire()
    with pytest.raises(QueueBusyError, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()  # free again
    with pytest.raises(QueueBusyError):
        first.renew()  # the lease is the second's now: the first must push nothing more
    second.release()


def test_a_dead_process_lease_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    ledger = Ledger(path)
    with ledger.transaction() as conn:
        conn.execute("INSERT INTO queue_leases VALUES (?,?,?,?,?,NULL)",
                     ("demo/p", "gone", QueueStore(ledger, "x", "y").host, pid, time.time() + 600))
    QueueStore(ledger, "demo/p", "demo").acquire()  # no wait for the expiry: the holder is gone


# --- the admission rule and refusals ----------------------------------------------------------------

def test_admission_rule_counts_reservations() -> None:
    hour = 3600.0
    assert admits(17 * hour, 10 * hour, 30 * hour)
    assert not admits(18 * hour, 12 * hour, 30 * hour)  # §4: 18 h used + a running session = refused
    assert not admits(30 * hour, 0, 30 * hour)


def test_refusals_that_mean_later() -> None:
    assert refusal_kind("Maximum batch GPU session count of 2 reached.") == "session count"
    assert refusal_kind(C.MSG_WEEKLY_QUOTA.format(kind="GPU", hours=30)) == "used up"
    assert refusal_kind("Session cannot start because currently running sessions are projected to exceed maximum "
                        "weekly GPU quota of 30.") == "projected"
    assert refusal_kind("Kernel source is larger than 1 megabyte") is None


# --- compare ---------------------------------------------------------------------------------------

def test_compare_reads_a_resumed_history_once(tmp_path: Path) -> None:
    from kagglekit.compare import lower_is_better, plot_losses, read_metrics

    one, two = tmp_path / "v1", tmp_path / "v2"
    one.mkdir()
    two.mkdir()
    (one / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.9}\n{"epoch": 2, "loss": 0.7}\n')
    (two / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.9}\n{"epoch": 2, "loss": 0.7}\n'
                                       '{"epoch": 3, "loss": 0.8, "acc": 0.5}\n')
    history = read_metrics([one, two])
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["loss"] == 0.8
    assert lower_is_better("val_loss") and not lower_is_better("acc")
    png = plot_losses({"a": history}, tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- queue run on the emulator -------------------------------------------------------------------------

QUEUE_CONFIG = {
    "queue_seconds": 0.05,
    "run_start_delay_seconds": 1.0,
    "new_private_403_seconds": 0.5,
    "save_min_seconds": 1.0,
    "session_limit_seconds": {"cpu": 60, "gpu": 60, "tpu": 60},
}


def _env(emulator: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KAGGLE_USERNAME=C.DEMO_USERNAME, KAGGLE_KEY=C.DEMO_KEY, KAGGLEKIT_ENDPOINT=emulator.url,
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


class QueueProcess:
    """``kagglekit queue run`` in its own process (so that it can be killed), its stderr in a file."""

    def __init__(self, emulator: Any, root: Path, *args: str) -> None:
        self.err_path = root.parent / f"queue-{time.monotonic_ns()}.err"
        self.err_file = self.err_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "kagglekit", "queue", "run", "--interval", "0.3", *args],
                                     cwd=root, env=_env(emulator), stdout=subprocess.DEVNULL, stderr=self.err_file,
                                     text=True)

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def err(self) -> str:
        self.err_file.flush()
        return self.err_path.read_text()

    def kill(self) -> str:
        self.proc.kill()  # SIGKILL: no cleanup, no lease released
        self.proc.wait()
        return self.err()

    def wait(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("queue run did not end:\n" + self.err()[-4000:]) from None
        return self.err()


def _queue_run(emulator: Any, root: Path, *args: str) -> QueueProcess:
    return QueueProcess(emulator, root, *args)


def _store(root: Path) -> QueueStore:
    from kagglekit.queue import open_store
    from kagglekit.settings import load_project

    ledger = Ledger()
    accounts = [r["account"] for r in ledger.query("SELECT DISTINCT account FROM queue_items")]
    return open_store(ledger, load_project(root), accounts[0] if accounts else C.DEMO_USERNAME)


@pytest.mark.emulator_prod
@pytest.mark.emulator_config({**QUEUE_CONFIG, "gpu_quota_seconds": 3600})
def test_queue_runs_a_grid_two_at_a_time_and_compares(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "qtrain")
    code, out, err = kk("--json", "queue", "run", "--interval", "0.3", "--timeout", "20",
                        "--grid", "lr=0.1,0.5,1.0", cwd=root)
    assert code == 0, err[-3000:]
    result = json.loads(out)
    rows = {r["name"]: r for r in result["queue"]["rows"]}
    assert {n: r["state"] for n, r in rows.items()} == {"lr-0.1": "done", "lr-0.5": "done", "lr-1.0": "done"}
    assert rows["lr-0.5"]["session"] == "demo/qtrain-lr-0-5 v1"
    pulled = sorted(p.name for p in (root / "outputs").iterdir())
    assert pulled == ["qtrain-lr-0-1", "qtrain-lr-0-5", "qtrain-lr-1-0"]
    summary = json.loads((root / "outputs" / "qtrain-lr-0-5" / "v1" / "summary.json").read_text())
    assert summary["epochs"] == 3
    # never more than two at once: the emulator's own record of when each session ran
    versions = [v for v in emulator.get("versions")["versions"] if "/qtrain-" in v["ref"]]
    assert len(versions) == 3 and _max_overlap(versions) <= 2

    code, out, err = kk("--json", "compare", cwd=root)
    assert code == 0, err
    table = {r["experiment"]: r for r in json.loads(out)["experiments"]}
    assert table["lr-1.0"]["final.loss"] == pytest.approx(1 / (1 + 1.0 * 3))
    assert table["lr-0.1"]["best.loss"] == pytest.approx(1 / (1 + 0.1 * 3))
    assert table["lr-0.1"]["overrides"] == "lr=0.1" and table["lr-0.1"]["gpu_hours"] > 0
    assert (root / "outputs" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def _max_overlap(versions: list[dict[str, Any]]) -> int:
    events = []
    for v in versions:
        if v.get("started") is None:
            continue
        events += [(v["started"], 1), (v.get("ended") or float("inf"), -1)]
    best = current = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        best = max(best, current)
    return best


LONG = 'timeout = "5"\nset = { epochs = "7", step_s = "1.0" }\n'
EXPERIMENTS = "".join(f'[tool.kagglekit.experiments.{name}]\n{body}' for name, body in [
    ("e1", 'set = { epochs = "2", lr = "0.1" }\n'),
    ("long", LONG),
    ("e3", 'set = { epochs = "4", lr = "0.2" }\n'),
    ("e4", 'set = { epochs = "1", lr = "0.3" }\n'),
    ("e5", 'set = { epochs = "3", lr = "0.4" }\n'),
    ("e6", 'set = { epochs = "2", lr = "0.5" }\n'),
    ("e7", 'set = { epochs = "4", lr = "0.6" }\n'),
    ("e8", 'set = { epochs = "1", lr = "0.7" }\n'),
])
OUTSIDE = "import time\nprint('a notebook the queue does not know about', flush=True)\ntime.sleep(4)\n"


def _wait(what: str, check: Any, proc: QueueProcess, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"queue run ended (rc {proc.returncode}) before {what}:\n{proc.err()[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{proc.kill()[-4000:]}")


@pytest.mark.slow
@pytest.mark.emulator_prod
@pytest.mark.emulator_config({**QUEUE_CONFIG, "gpu_quota_seconds": 30})
def test_eight_experiments_through_refusals_kills_relay_and_quota_reset(emulator: Any, tmp_path: Path) -> None:
    """The issue's "done when": 2 GPU slots, a 30-second weekly quota, 5-12 second sessions."""
    root = write_project(tmp_path / "qtrain", experiments=EXPERIMENTS)
    backend = emulator.server.backend
    # A GPU session the queue does not know about (a notebook in the browser): its first pushes meet
    # Kaggle's "Maximum batch GPU session count of 2 reached" and must wait, not fail.
    emulator.push(OUTSIDE, "browser-notebook", machineShape="NvidiaTeslaT4", enableGpu=True, sessionTimeoutSeconds=8)
    logs = []
    kills: list[tuple[float, set[str]]] = []  # when each runner was killed; the files it had landed by then

    # 1st run: killed once two experiments run
    proc = _queue_run(emulator, root, "--timeout", "12")
    _wait("two running experiments", lambda: sum(i.state == RUNNING for i in _store(root).items()) >= 2, proc)
    logs.append(proc.kill())
    kills.append((time.time(), _landed(emulator, root)))
    assert "Maximum batch GPU session count of 2 reached" in logs[0]  # met, and retried

    # 2nd run: killed while the long experiment runs its second session, on the relay sibling
    proc = _queue_run(emulator, root, "--timeout", "12")
    _wait("the long experiment's second session", lambda: (_store(root).get("long").cur_kernel or "").endswith(
        "-relay"), proc)
    logs.append(proc.kill())
    kills.append((time.time(), _landed(emulator, root)))
    with pytest.raises(QueueBusyError):  # a dead lease holder is taken over; a live one is not
        holder = QueueStore(Ledger(), _store(root).queue, _store(root).account)
        proc = _queue_run(emulator, root, "--timeout", "12")
        _wait("the new run's lease", lambda: (_store(root).lease_holder() or {}).get("pid") == proc.proc.pid, proc)
        holder.acquire()

    # 3rd run (started above): meets the quota, the week ends (clock advanced), the rest runs
    def quota_wait() -> bool:
        waiting = (_store(root).lease_holder() or {}).get("waiting") or ""
        return "used up" in waiting and not [v for v in backend.active_versions() if v.kind == "gpu"]

    _wait("the quota wait", quota_wait, proc, timeout=180)
    used, _ = backend.usage(C.DEMO_USERNAME, "gpu")
    assert used >= 30
    emulator.control("clock", {"advance_seconds": 7 * 24 * 3600})  # next Saturday: the quota is back
    err = proc.wait(timeout=240)
    logs.append(err)
    assert proc.returncode == 0, err[-4000:]
    every = "\n".join(logs)
    assert "projected" in every  # a reservation-caused wait was predicted too, before the reset

    store = _store(root)
    items = {i.name: i for i in store.items()}
    assert {n: i.state for n, i in items.items()} == {n: "done" for n in
                                                      ["e1", "long", "e3", "e4", "e5", "e6", "e7", "e8"]}
    from kagglekit.queue import sessions_of

    long_sessions = sessions_of(store.ledger, items["long"])
    assert len(long_sessions) >= 3
    assert {r.kernel for r in long_sessions} == {"demo/qtrain-long", "demo/qtrain-long-relay"}
    # never more than two GPU sessions at once, the outside one included
    versions = [v for v in emulator.get("versions")["versions"] if v["kind"] == "gpu"]
    assert len(versions) == 7 + len(long_sessions) + 1 and _max_overlap(versions) <= 2
    # every session's outputs pulled, each file downloaded once: again only when a SIGKILL cut its first GET
    # short (a file that had landed under its name, the pull state or its journal knows, is never fetched again)
    sessions = [r for i in items.values() for r in sessions_of(store.ledger, i)]
    assert all(store.pulled(r.kernel, r.version) for r in sessions)
    gets = [e for e in emulator.requests("file") if e["status"] == 200]
    assert gets and {e["path"] for e in gets} == _landed(emulator, root)
    bounds = [0.0, *(t for t, _ in kills), float("inf")]
    for start, end in itertools.pairwise(bounds):  # one runner's lifetime: no file twice
        paths = [e["path"] for e in gets if start <= e["ts"] < end]
        assert len(paths) == len(set(paths)), f"a file fetched twice by one runner: {sorted(paths)}"
    for t, landed in kills:  # what a killed runner had landed is not fetched by the next ones
        again = [e["path"] for e in gets if e["ts"] >= t and e["path"] in landed]
        assert not again, f"fetched again although pulled before the kill: {again}"
    final = json.loads((Path(store.pulled(long_sessions[-1].kernel, long_sessions[-1].version) or "")
                        / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["epoch"] == 7

    env = _env(emulator)
    res = subprocess.run([sys.executable, "-m", "kagglekit", "--json", "compare"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    table = {r["experiment"]: r for r in json.loads(res.stdout)["experiments"]}
    assert len(table) == 8 and table["long"]["epochs"] == 7 and table["long"]["sessions"] == len(long_sessions)
    assert table["e4"]["final.loss"] == pytest.approx(1 / (1 + 0.3 * 1))
    assert (root / "outputs" / "compare.png").stat().st_size > 1000


@pytest.mark.emulator_prod
@pytest.mark.emulator_config({**QUEUE_CONFIG, "gpu_quota_seconds": 3600})
def test_budget_leaves_the_rest_queued_and_cancel_dequeues(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "qtrain")
    code, out, err = kk("--json", "queue", "run", "--interval", "0.3", "--timeout", "20", "--slots", "1",
                        "--max-gpu-hours", "0.0002", "--grid", "lr=0.1,0.5,1.0", cwd=root)
    assert code == 0, err[-3000:]
    states = {r["name"]: r["state"] for r in json.loads(out)["queue"]["rows"]}
    assert states == {"lr-0.1": "done", "lr-0.5": "queued", "lr-1.0": "queued"}
    assert "Budget reached" in err
    assert len([v for v in emulator.get("versions")["versions"] if "/qtrain-" in v["ref"]]) == 1

    code, out, _ = kk("--json", "queue", "status", cwd=root)
    assert code == 0 and [r["state"] for r in json.loads(out)[0]["rows"]] == ["done", "queued", "queued"]
    assert kk("queue", "cancel", "lr-0.5", cwd=root)[0] == 0
    code, _, err = kk("queue", "cancel", "lr-9", cwd=root)
    assert code == 5 and "has no experiment 'lr-9'" in err
    # the rest runs without the budget; the cancelled one never does
    code, out, err = kk("--json", "queue", "run", "--interval", "0.3", "--timeout", "20", cwd=root)
    assert code == 0, err[-3000:]
    states = {r["name"]: r["state"] for r in json.loads(out)["queue"]["rows"]}
    assert states == {"lr-0.1": "done", "lr-0.5": "cancelled", "lr-1.0": "done"}
    assert not (root / "outputs" / "qtrain-lr-0-5").exists()


@pytest.mark.emulator_prod
@pytest.mark.emulator_config({**QUEUE_CONFIG, "gpu_quota_seconds": 3600})
def test_cancel_stops_a_running_experiment(kk: Any, emulator: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "qtrain", experiments='[tool.kagglekit.experiments.slow]\n'
                                                          'set = { epochs = "40" }\n')
    proc = _queue_run(emulator, root, "--timeout", "30")
    try:
        _wait("the slow experiment to train", lambda: "epoch" in _log_of(emulator, "demo/qtrain-slow"), proc)
        code, _, err = kk("queue", "cancel", "slow", cwd=root)
        assert code == 0, err
        assert proc.wait(timeout=60) is not None and proc.returncode == 0, proc.err()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    item = _store(root).get("slow")
    assert item is not None and item.state == "cancelled"
    assert emulator.status("demo", "qtrain-slow")[0] == "CANCEL_ACKNOWLEDGED"
    assert (root / "outputs" / "qtrain-slow" / "v1" / "metrics.jsonl").exists()  # what it saved, pulled


def _landed(emulator: Any, root: Path) -> set[str]:
    """The emulator's file paths (``/__files/<version id>/<name>``) of the files that pulls have landed under
    ``root/outputs/<slug>/v<N>/``: a download takes its final name only once complete."""
    ids = {(v["ref"].rsplit("/", 1)[-1], f"v{v['version']}"): v["version_id"]
           for v in emulator.get("versions")["versions"]}
    out = set()
    for target in (root / "outputs").glob("*/v*"):
        vid = ids.get((target.parent.name, target.name))
        out |= {f"/__files/{vid}/{p.relative_to(target).as_posix()}" for p in target.rglob("*")
                if vid is not None and p.is_file() and p.name not in ("log.txt", f"{target.parent.name}.log")}
    return out


def _log_of(emulator: Any, kernel: str) -> str:
    owner, slug = kernel.split("/")
    try:
        return (emulator.output_dir(owner, slug) / "metrics.jsonl").read_text()
    except Exception:
        return ""


def test_status_and_compare_read_the_ledger_only(kk: Any, tmp_path: Path) -> None:
    """No Kaggle needed (the emulator fixture is up, but neither command sends it a request)."""
    root = write_project(tmp_path / "qtrain")
    code, out, _ = kk("queue", "status", cwd=root)
    assert code == 0 and "The queue is empty" in out
    assert kk("compare", cwd=root)[0] == 1
    store = QueueStore(Ledger(), "qtrain", "demo")
    store.add(parse_grid(["lr=0.1,0.2"]), "demo/qtrain")
    store.acquire()
    store.renew(note="the weekly GPU quota is used up")
    code, out, _ = kk("queue", "status", cwd=root)
    assert code == 0 and "lr-0.1" in out and "lr-0.2" in out and "waiting: the weekly GPU quota is used up" in out
    assert f"run by pid {os.getpid()}" in out
    code, _, err = kk("compare", "lr-9", cwd=root)
    assert code == 5 and "no experiment lr-9" in err


def test_the_live_view_says_what_runs_and_what_waits(tmp_path: Path) -> None:
    from kagglekit.queue import build_view, render

    store = QueueStore(Ledger(tmp_path / "l.sqlite"), "qtrain", "demo")
    items = store.add(parse_grid(["lr=0.1,0.2,0.3"]), "demo/qtrain")
    store.transition(items[2].id, [QUEUED], state="failed", note="Kaggle refused: too large")
    view = build_view(store, slots={"gpu": 2, "tpu": 2, "cpu": 5}, max_gpu_hours=3.0,
                      quota={"used": 3600.0 * 29, "reserved": 3600.0 * 10, "total": 3600.0 * 30},
                      waiting="Kaggle would refuse a GPU session (projected ...)")
    text = render(view)
    assert "Queue qtrain: 1 failed, 2 queued" in text
    assert "slots GPU 0/2, TPU 0/2" in text and "of --max-gpu-hours 3" in text
    assert "waiting: Kaggle would refuse a GPU session (projected ...)" in text
    assert "Kaggle refused: too large" in text
    assert view.as_dict()["rows"][0]["overrides"] == "lr=0.1"


@pytest.mark.emulator_prod
@pytest.mark.emulator_config({**QUEUE_CONFIG, "gpu_quota_seconds": 3600})
def test_a_session_too_short_to_train_is_not_continued_forever(kk: Any, emulator: Any, tmp_path: Path) -> None:
    # 3-second sessions whose epochs need more: every session stops at its time guard having trained nothing
    root = write_project(tmp_path / "qtrain", experiments='[tool.kagglekit.experiments.tight]\n'
                                                          'timeout = "3"\nset = { epochs = "5", step_s = "2.0" }\n')
    code, out, err = kk("--json", "queue", "run", "--interval", "0.3", cwd=root)
    assert code == 0, err[-3000:]
    row = json.loads(out)["queue"]["rows"][0]
    # the second session finds no checkpoint to resume from (the runtime stops it, exit 3) or trains nothing
    # more: either way the queue stops carrying it on
    assert row["state"] in ("halted", "failed") and row["sessions"] == 2, (row, err[-3000:])
    assert "without training an epoch more" in row["note"] or "checkpoint" in row["note"]
