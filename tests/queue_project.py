"""A tiny training project for the queue's tests and bench: standard library only, seconds per session.

It trains ``epochs`` epochs of ``step_s`` seconds each, writes ``metrics.jsonl`` (rewritten from its
checkpoint's history, so a resumed session continues it), ``checkpoint.json`` and ``summary.json``,
reports progress to kagglekit, and stops itself (COMPLETE, ``reason="time"``) when the session's
time is nearly up, so that the queue continues it on the relay sibling.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

CONFIG = """\
    class Config:
        epochs = 3
        step_s = 0.5
        lr = 0.1
"""

TRAIN = """\
    import json, os, time

    from config import Config

    try:
        from kagglekit_runtime import report_progress, time_left
    except ImportError:  # run locally
        def report_progress(*a, **k): return {}
        def time_left(): return 1e9

    state = {"epoch": 0, "history": []}
    if os.path.exists("checkpoint.json"):
        state = json.load(open("checkpoint.json"))
        print("resumed from epoch", state["epoch"], flush=True)
    start = time.time()
    for epoch in range(state["epoch"] + 1, Config.epochs + 1):
        if time_left() < 1.6 * Config.step_s + 0.5:
            report_progress(state["epoch"], Config.epochs, finished=False, reason="time")
            print("stopping after epoch", state["epoch"], "for time", flush=True)
            raise SystemExit(0)
        time.sleep(Config.step_s)
        loss = 1.0 / (1 + Config.lr * epoch)
        state["history"].append({"epoch": epoch, "loss": round(loss, 6), "val_loss": round(loss * 1.1, 6)})
        state["epoch"] = epoch
        with open("metrics.jsonl.tmp", "w") as f:
            f.writelines(json.dumps(h) + "\\n" for h in state["history"])
        os.replace("metrics.jsonl.tmp", "metrics.jsonl")
        json.dump(state, open("checkpoint.json.tmp", "w"))
        os.replace("checkpoint.json.tmp", "checkpoint.json")
        report_progress(epoch, Config.epochs)
    json.dump({"epochs": state["epoch"], "final_loss": state["history"][-1]["loss"],
               "session_s": round(time.time() - start, 3)}, open("summary.json", "w"))
    report_progress(state["epoch"], Config.epochs, finished=True, reason="completed")
    print("done", flush=True)
"""

PYPROJECT = """\
    [project]
    name = "qtrain"
    version = "0"

    [tool.kagglekit]
    kernel = "{kernel}"
    entry = "train.py"
    accelerator = "gpu"
    test-flag = false
    checkpoints = ["checkpoint*"]
{experiments}
"""


def write_project(root: Path, kernel: str = "demo/qtrain", experiments: str = "") -> Path:
    """The project in ``root`` (created), with an optional ``experiments`` TOML fragment."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"config.py": CONFIG, "train.py": TRAIN,
             "pyproject.toml": PYPROJECT.format(kernel=kernel, experiments=textwrap.indent(experiments, "    "))}
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root
