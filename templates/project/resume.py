"""Resuming: checkpoints that only the run they belong to resumes.

A checkpoint carries a fingerprint: every Config setting (except Config.resume_may_change), the
model's structure and parameter shapes, the optimizer's settings and a hash of the training data.
A run whose fingerprint differs never loads it: it starts afresh and moves the old run's files
aside (outputs/superseded/), or, when resuming was asked for (--resume, or `kagglekit push
--resume` on Kaggle), it refuses to start.
"""

import datetime
import glob
import hashlib
import os

import pandas as pd
import torch

from config import Config
from utils import RunError, save_atomic, set_rng_states

PLAIN = (bool, int, float, str, type(None))
# optimizer options that choose an implementation, not a hyper-parameter
OPTIMIZER_SWITCHES = {"params", "foreach", "fused", "capturable", "differentiable"}


# --- the fingerprint ----------------------------------------------------------------------------
def config_values():
    """Every plain Config setting (numbers, strings, booleans, None, and lists/tuples of them)."""
    values = {}
    for name in sorted(dir(Config)):
        value = getattr(Config, name)
        if name.startswith("_") or callable(value):
            continue
        if isinstance(value, PLAIN):
            values[name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, PLAIN) for v in value):
            values[name] = list(value)
    return values


def data_hash(frame):
    """A short hash of a table's content (a new version of a Kaggle dataset changes it)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def plain(value):
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return repr(value)


def fingerprint(model, optimizer, data):
    """What must be equal for a checkpoint to be resumed, as a flat {name: plain value} dict.

    Take it before anything is loaded or trained: the optimizer's settings are the initial ones.
    """
    ignored = set(Config.resume_may_change)
    found = {name: value for name, value in config_values().items() if name not in ignored}
    structure = hashlib.sha256(repr(model).encode()).hexdigest()[:16]
    found["model structure"] = structure  # layer types and options (e.g. ReLU -> GELU)
    for name, tensor in model.state_dict().items():
        found[f"model {name}"] = f"{'x'.join(map(str, tensor.shape)) or 'scalar'} {str(tensor.dtype)[6:]}"
    found["optimizer"] = type(optimizer).__name__
    for group_index, group in enumerate(optimizer.param_groups):
        for key, value in group.items():
            if key not in OPTIMIZER_SWITCHES:
                found[f"optimizer {group_index} {key}"] = plain(value)
    for key, value in data.items():
        found[f"data {key}"] = plain(value)
    return found


def differences(saved, current):
    """["lr: 0.003 -> 0.03", ...]: what differs between a checkpoint's fingerprint and this run's."""
    if not isinstance(saved, dict):
        return ["the checkpoint has no fingerprint (written by an older template)"]
    found = []
    for key in sorted(set(saved) | set(current)):
        if key.startswith("optimizer ") and (key not in saved or key not in current):
            continue  # an option a newer torch added (or dropped): not a change of the run
        old, new = saved.get(key, "(none)"), current.get(key, "(none)")
        if old != new and key != "model structure":
            found.append(f"{key}: {old} -> {new}")
    if saved.get("model structure") != current.get("model structure") and not any(
            f.startswith("model ") for f in found):
        found.append("the model's structure (model.py: a layer type or option changed)")
    return found


# --- finding, resuming, setting aside ------------------------------------------------------------
def newest_checkpoint():
    found = glob.glob(os.path.join(Config.output_dir, "checkpoint*.pt"))
    return max(found, key=os.path.getmtime) if found else None


def set_aside(path):
    """Move a superseded run's checkpoint, best model and metrics to outputs/superseded/ (nothing is deleted).

    The new names do not match the `checkpoints` patterns, so `push --resume` never carries them.
    """
    folder = os.path.join(Config.output_dir, "superseded")
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    moved = []
    for source in (path, Config.model_save_path, Config.metrics_path):
        if source and os.path.exists(source):
            target = os.path.join(folder, f"{stamp}-{os.path.basename(source)}")
            os.replace(source, target)
            moved.append(target)
    return folder, moved


def load_checkpoint(model, optimizer, scaler, current, required=False, fresh=False):
    """Load the newest checkpoint in the output dir if it belongs to this run; None = start afresh.

    required: the user asked to resume; no checkpoint, or one of another run, is an error (exit 2).
    fresh: the user asked to start over; an existing checkpoint is moved aside.
    """
    path = newest_checkpoint()
    if path is None:
        if required:
            raise RunError(f"asked to resume, but there is no checkpoint*.pt in {Config.output_dir}; "
                           "run without --resume to start afresh", exit_code=2)
        return None
    # Load on the CPU: load_state_dict moves tensors to the model's device, and the RNG states must stay
    # CPU ByteTensors (CUDA ones make torch.set_rng_state fail on every GPU resume).
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file of another format, or a partial copy
        ckpt, why = None, [f"unreadable ({type(exc).__name__}: {exc})"]
    else:
        why = differences(ckpt.get("fingerprint"), current) if isinstance(ckpt, dict) else ["not a dict"]
    if fresh and not required:
        why = ["--fresh was given"]
    if why:
        listed = "; ".join(why[:8]) + (f"; and {len(why) - 8} more" if len(why) > 8 else "")
        if required:
            raise RunError(f"asked to resume, but {path} belongs to another run ({listed}). Resume with the "
                           "checkpoint's settings, or run without --resume to start afresh (the old "
                           "checkpoint is then moved aside)", exit_code=2)
        folder, moved = set_aside(path)
        print(f"not resuming {path}: it belongs to another run ({listed}). Starting afresh; the old run's "
              f"{', '.join(os.path.basename(m) for m in moved)} moved to {folder}", flush=True)
        return None
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):  # empty when the run that saved it had no CUDA (AMP off): keep the fresh scaler
        scaler.load_state_dict(ckpt["scaler"])
    note = set_rng_states(ckpt["rng"])
    if note:
        print(f"note: {note}", flush=True)
    ckpt["best_model"] = None
    if ckpt.get("best_epoch") and os.path.exists(Config.model_save_path):
        # the best weights stay on the CPU: a second model-sized copy on the GPU would only cost memory
        ckpt["best_model"] = torch.load(Config.model_save_path, map_location="cpu", weights_only=True)
    print(f"resumed from epoch {ckpt['epoch']} ({path})", flush=True)
    return ckpt


def save_checkpoint(state, model, optimizer, scaler, current, rng):
    """Everything a resumed run needs, written atomically (a kill leaves the old file or the new one).

    The best weights live in model.pt (also carried by --resume); keeping them out of the checkpoint
    saves a model-sized copy in /kaggle/working, which the 20 GB output limit counts.
    """
    kept = {k: v for k, v in state.items() if k != "best_model"}
    save_atomic({**kept, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict(), "rng": rng, "fingerprint": current}, Config.checkpoint_path)
