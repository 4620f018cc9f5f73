"""The kernel's world: Kaggle's input layout, read-only inputs, batch env vars, internet off, two modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_emulator import SHORTEST_WINDOWS, EmulatorHandle

pytestmark = pytest.mark.emulator_prod  # Kaggle as it really is: the prod-shaped defaults


@pytest.fixture
def emulator_config() -> dict[str, Any]:
    """These tests are about the sandbox's layout, not a kernel's first moments or its save phase: those
    windows stay on but shorter (test_emulator_prod tests the defaults)."""
    return dict(SHORTEST_WINDOWS)

PROBE = """\
import json, os, socket
root = os.environ.get("KAGGLE_KERNEL_ROOT", "/kaggle")
found = {{}}
for dirpath, dirs, files in os.walk(os.path.join(root, "input"), followlinks=True):
    for name in files:
        p = os.path.join(dirpath, name)
        found[os.path.relpath(p, os.path.join(root, "input"))] = open(p).read()
try:
    open(os.path.join(root, "input", next(iter(found)) if found else "x"), "a").write("tamper")
    writable = True
except OSError:
    writable = False
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    reached = True
except OSError:
    reached = False
os.makedirs(os.path.join(root, "temp"), exist_ok=True)
json.dump({{"cwd": os.getcwd(), "root": root, "found": found, "input_writable": writable, "reached": reached,
           "env": {{k: v for k, v in os.environ.items() if k.startswith(("KAGGLE", "DISABLE"))}}}},
          open("probe.json", "w"))
"""


def probe(emulator: EmulatorHandle, slug: str, **fields: Any) -> dict[str, Any]:
    host, port = emulator.url.rsplit("//", 1)[1].split(":")
    emulator.push(PROBE.format(host=host, port=int(port)), slug=slug, **fields)
    assert emulator.wait_for_status("demo", slug) == "COMPLETE", emulator.status("demo", slug)
    return dict(json.loads((emulator.output_dir("demo", slug) / "probe.json").read_text()))


@pytest.fixture
def sources(emulator: EmulatorHandle, tmp_path: Path) -> dict[str, Any]:
    """A dataset, a competition, a model and a finished kernel whose output can be mounted."""
    for name in ("ds", "comp", "model"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(f"{name} data")
    emulator.control("datasets", {"ref": "alice/cats", "path": str(tmp_path / "ds")})
    emulator.control("competitions", {"slug": "titanic", "path": str(tmp_path / "comp")})
    emulator.control("models", {"ref": "google/gemma/pyTorch/2b/1", "path": str(tmp_path / "model")})
    emulator.push("open('ckpt.txt','w').write('from v1')", slug="producer-kernel")
    emulator.wait_for_status("demo", "producer-kernel")
    return {"datasetDataSources": ["alice/cats"], "competitionDataSources": ["titanic"],
            "modelDataSources": ["google/gemma/pyTorch/2b/1"], "kernelDataSources": ["demo/producer-kernel"]}


def test_current_mount_layout_and_batch_env(emulator: EmulatorHandle, sources: dict[str, Any]) -> None:
    seen = probe(emulator, "probe-kernel", **sources)
    assert seen["found"] == {
        "datasets/alice/cats/ds.txt": "ds data",
        "competitions/titanic/comp.txt": "comp data",
        "models/google/gemma/pyTorch/2b/1/model.txt": "model data",
        "notebooks/demo/producer-kernel/ckpt.txt": "from v1",
    }
    assert "kaggle/working" in seen["cwd"] and seen["cwd"] == f"{seen['root']}/working"
    env = seen["env"]
    assert env["KAGGLE_KERNEL_RUN_TYPE"] == "Batch" and env["KAGGLE_URL_BASE"] == "https://www.kaggle.com"
    assert env["KAGGLE_DOCKER_IMAGE"].startswith("gcr.io/kaggle-images/python")
    assert env["KAGGLE_KERNEL_ROOT"] == seen["root"]
    for secret in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_DATA_PROXY_URL", "KAGGLE_DATA_PROXY_TOKEN",
                   "KAGGLE_USER_SECRETS_TOKEN", "KAGGLE_API_V1_TOKEN"):
        assert secret not in env


def test_legacy_flat_layout(emulator: EmulatorHandle, sources: dict[str, Any]) -> None:
    emulator.control("config", {"legacy_layout": True})
    seen = probe(emulator, "legacy-probe", **sources)
    assert set(seen["found"]) == {"cats/ds.txt", "titanic/comp.txt", "gemma/pyTorch/2b/1/model.txt",
                                  "producer-kernel/ckpt.txt"}


def test_namespace_mode_mounts_real_kaggle_readonly_and_cuts_internet(emulator: EmulatorHandle,
                                                                     sources: dict[str, Any]) -> None:
    """Where the OS allows it: the sandbox is at /kaggle, inputs are read-only, internet off is enforced."""
    sandbox = emulator.get("state")["sandbox"]
    if not sandbox["namespace_available"]:
        pytest.skip(f"no user+mount namespaces here: {sandbox['reason']}")
    host_had_kaggle = Path("/kaggle").exists()
    seen = probe(emulator, "ns-probe", enableInternet=False, **sources)
    assert seen["cwd"] == "/kaggle/working" and seen["root"] == "/kaggle"
    assert seen["input_writable"] is False
    assert seen["reached"] is False  # not even the emulator on the host's loopback
    assert Path("/kaggle").exists() == host_had_kaggle  # nothing was mounted on the host
    running_state = emulator.server.backend.versions_of(emulator.server.backend.kernel_by_ref("demo", "ns-probe").id)
    assert running_state[-1].sandbox_mode == "namespace" and running_state[-1].internet_enforced
    online = probe(emulator, "ns-online-probe", enableInternet=True)
    assert online["reached"] is True


@pytest.mark.emulator_config({"sandbox": "relative"})
def test_relative_mode(emulator: EmulatorHandle, sources: dict[str, Any]) -> None:
    """Without namespaces: cwd <sandbox>/kaggle/working, KAGGLE_KERNEL_ROOT points at the sandbox's kaggle dir."""
    seen = probe(emulator, "rel-probe", **sources)
    assert seen["root"] != "/kaggle" and seen["root"].endswith("/sandbox/kaggle")
    assert seen["cwd"] == seen["root"] + "/working"
    assert seen["found"]["datasets/alice/cats/ds.txt"] == "ds data"
    assert emulator.get("state")["sandbox"]["mode"] == "relative"
