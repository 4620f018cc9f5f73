"""Resume chains without a server: the pair of kernels, the ledger's chain records, what an ended session means.

The behaviour against Kaggle (the emulator) is in test_relay.py; these pin the rules it is built on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kagglekit.chain import (
    CONTINUE,
    FAILED,
    FINISHED,
    STOPPED,
    UNKNOWN,
    continuable_chain,
    decide,
    newest_session,
    relay_kernel,
    relay_settings,
    target_kernel,
)
from kagglekit.display import chain_lines, epochs_text
from kagglekit.ledger import Ledger
from kagglekit.settings import load_project, slugify
from kagglekit.stop import session_id_from_log


def test_the_pair_alternates_and_the_sibling_title_slugifies_to_its_slug(tmp_path: Path) -> None:
    assert relay_kernel("alice/my-model") == "alice/my-model-relay"
    assert target_kernel("alice/my-model", "alice/my-model") == "alice/my-model-relay"
    assert target_kernel("alice/my-model", "alice/my-model-relay") == "alice/my-model"
    assert target_kernel("alice/my-model", "bob/pretrained") == "alice/my-model"  # another kernel: no clash

    (tmp_path / "kagglekit.toml").write_text('kernel = "alice/my-model"\ntitle = "My Model"\n'
                                             'datasets = ["alice/data"]\naccelerator = "gpu"\n')
    settings = load_project(tmp_path)
    sibling = relay_settings(settings)
    assert sibling.kernel_id == "alice/my-model-relay" and sibling.title == "My Model Relay"
    assert slugify(sibling.resolved_title or "") == sibling.kernel_slug
    assert (sibling.datasets, sibling.machine_shape) == (settings.datasets, settings.machine_shape)
    assert sibling.resolved_code_file == "my-model-relay.py"

    (tmp_path / "kagglekit.toml").write_text('kernel = "alice/resnet50-v2"\n')
    assert relay_settings(load_project(tmp_path)).resolved_title == "Resnet50 V2 Relay"


@pytest.mark.parametrize(("status", "training", "action"), [
    ("COMPLETE", {"epoch": 8, "first_epoch": 1, "total": 30, "finished": False, "reason": "time"}, CONTINUE),
    ("COMPLETE", {"epoch": 30, "first_epoch": 25, "total": 30, "finished": True, "reason": "completed"}, FINISHED),
    ("COMPLETE", None, UNKNOWN),  # no progress reported: never guess
    ("ERROR", {"epoch": 3, "first_epoch": 1, "finished": False}, FAILED),
    ("CANCEL_ACKNOWLEDGED", {"epoch": 3, "first_epoch": 1, "finished": False}, STOPPED),
])
def test_what_an_ended_session_means(status: str, training: dict[str, object] | None, action: str) -> None:
    decision = decide("a/b v2", status, "boom" if status == "ERROR" else None, training)
    assert decision.action == action
    assert "a/b v2" in decision.message
    if action == STOPPED:
        assert "may not mount" in decision.message
    if action == FAILED:
        assert "boom" in decision.message


def test_epochs_text() -> None:
    assert epochs_text({"epoch": 14, "first_epoch": 8, "total": 40}) == "8-14 of 40"
    assert epochs_text({"epoch": 8, "first_epoch": 8}) == "8"
    assert epochs_text({"epoch": 40, "first_epoch": None, "total": 40}) == "none (at 40)"
    assert epochs_text(None) == "" and epochs_text({"epoch": None}) == ""


def test_ledger_keeps_chains_across_both_kernels_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    clock = [datetime(2026, 11, 30, 12, 0, tzinfo=UTC)]

    def tick() -> datetime:
        clock[0] += timedelta(minutes=1)
        return clock[0]

    with Ledger(path, clock=tick) as ledger:
        for kernel, version in (("a/model", 1), ("a/model-relay", 1), ("a/model", 2)):
            ledger.record_push("a", kernel, version, machine_shape="NvidiaTeslaT4")
        chain = ledger.create_chain("a", "a/model", "a/model-relay")
        for seq, (kernel, version) in enumerate((("a/model", 1), ("a/model-relay", 1), ("a/model", 2)), 1):
            ledger.add_to_chain("a", kernel, version, chain.id, seq)
        ledger.record_manifest("a", "a/model-relay", 1, {"started_at": "2026-11-30T12:00:00Z",
                                                         "ended_at": "2026-11-30T12:30:00Z", "session_id": 42,
                                                         "training": {"epoch": 9, "first_epoch": 5}})
        assert newest_session(ledger, "a", "a/model") is not None
        assert continuable_chain(ledger, "a", "a/model") == ledger.get_chain(chain.id)
    with Ledger(path) as ledger:  # a new process: the chain is still there
        runs = ledger.chain_runs(chain.id)
        assert [(r.kernel, r.version, r.chain_seq) for r in runs] == [
            ("a/model", 1, 1), ("a/model-relay", 1, 2), ("a/model", 2, 3)]
        assert runs[1].session_id == 42 and runs[1].training == {"epoch": 9, "first_epoch": 5}
        newest = newest_session(ledger, "a", "a/model")
        assert newest is not None and (newest.kernel, newest.version) == ("a/model", 2)
        assert [c.id for c in ledger.chains(account="a", kernel="a/model-relay")] == [chain.id]
        ledger.update_chain(chain.id, state=STOPPED, note="kagglekit stop")
        assert continuable_chain(ledger, "a", "a/model") is None
        line = chain_lines([ledger.get_chain(chain.id)], {chain.id: runs})[0]  # type: ignore[list-item]
        assert "3 session(s)" in line and "stopped" in line and "h GPU" in line


def test_session_id_is_read_from_the_runtime_line_or_a_printed_container_name() -> None:
    assert session_id_from_log(["x", "kagglekit: kernel session id 270000042", "y"]) == 270000042
    assert session_id_from_log(["KAGGLE_CONTAINER_NAME=kaggle_ab12-99887766-webtier"]) == 99887766
    assert session_id_from_log(["epoch 1", "kernel 270000042"]) is None
