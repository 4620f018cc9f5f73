"""Helpers used everywhere: random seed, the Kaggle runtime shims, atomic saves, time and space."""

import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

from config import Config

# --- the kagglekit runtime ------------------------------------------------------------
# Inside a kernel pushed by kagglekit the package `kagglekit_runtime` is importable; it
# knows the session limit and where Kaggle mounted the inputs. Locally it is absent, so
# fall back to simple stand-ins that behave the same way off Kaggle.
try:
    from kagglekit_runtime import input_path, report_progress, should_stop, time_left
except ImportError:
    _STARTED = time.monotonic()

    def report_progress(epoch=None, total=None, finished=False, reason=None):
        """On Kaggle this tells `kagglekit push --resume --until-done` whether to start another session."""
        return None

    def time_left():
        """Seconds left in the session (KAGGLEKIT_SESSION_LIMIT_SECONDS, else unlimited)."""
        limit = os.environ.get("KAGGLEKIT_SESSION_LIMIT_SECONDS")
        if not limit:
            return float("inf")
        return float(limit) - (time.monotonic() - _STARTED)

    def should_stop(margin_s=None):
        """True when less than margin_s (default: 10% of the limit, at most 15 min) is left."""
        limit = os.environ.get("KAGGLEKIT_SESSION_LIMIT_SECONDS")
        if margin_s is None:
            margin_s = min(900.0, 0.1 * float(limit)) if limit else 0.0
        return time_left() < margin_s

    def input_path(kind, ref, filename=None):
        """Where an attached input lives: Kaggle's mount points, then data_path/<slug>, then data_path."""
        owner, _, slug = ref.rpartition("/")
        plural = kind if kind.endswith("s") else kind + "s"
        candidates = [
            os.path.join("/kaggle/input", plural, owner, slug),
            os.path.join("/kaggle/input", slug),
            os.path.join(Config.data_path, slug),
            Config.data_path,
        ]
        for folder in candidates:
            path = os.path.join(folder, filename) if filename else folder
            if os.path.exists(path):
                return path
        raise FileNotFoundError(
            f"{kind} {ref!r}: {filename or 'folder'} not found in {candidates}; "
            f"download it with: kaggle {plural} download {ref} -p {os.path.join(Config.data_path, slug)} --unzip"
        )


def out_of_time(last_epoch_s, margin_s):
    """Stop before the session limit: the runtime says so, or one more epoch would not fit."""
    left = time_left()
    return should_stop(margin_s=margin_s) or left < margin_s + 1.5 * last_epoch_s


# --- random seed (as the notes define it) -----------------------------------------------
def random_seed(seed):
    torch.backends.cudnn.deterministic = True  # always the default convolution algorithm
    torch.backends.cudnn.benchmark = False  # no (random) algorithm search
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)  # every GPU


# --- files ----------------------------------------------------------------------------
def save_atomic(obj, path):
    """torch.save to a temporary file, then rename: a kill leaves the old file or the new one."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj, path):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


# --- time and space ---------------------------------------------------------------------
def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def model_size_mb(model):
    n_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return n_bytes / 1024**2


def peak_ram_mb():
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def peak_gpu_mb():
    return torch.cuda.max_memory_allocated() / 1024**2 if torch.cuda.is_available() else 0.0


def package_versions():
    """Versions of the distributions behind the modules this run imported (PIL -> Pillow, ...)."""
    from importlib import metadata

    dists = metadata.packages_distributions()
    imported = {name.split(".")[0] for name in list(sys.modules)}
    versions = {}
    for module in sorted(imported):
        for dist in dists.get(module, []):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return {"python": platform.python_version(), "packages": dict(sorted(versions.items()))}
