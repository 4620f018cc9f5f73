"""Helpers used everywhere: random seed and RNG states, the Kaggle runtime shims, atomic saves, strict JSON,
time and space."""

import json
import math
import os
import platform
import random
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


# --- errors ------------------------------------------------------------------------------
class RunError(Exception):
    """A problem the run cannot go on with: main() prints the message (no traceback) and exits non-zero.

    exit_code 1: the training failed (bad data, non-finite loss); 2: the run refused to start
    (e.g. --resume with a checkpoint of another configuration). Kaggle shows either as ERROR.
    """

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


# --- random seed (as the notes define it, plus Python's random and the deterministic switches) ----
def random_seed(seed, deterministic=True):
    """Seed every RNG the code may draw from; with `deterministic`, also ask CUDA for repeatable kernels.

    The deterministic switches cost GPU speed (Config.deterministic explains; False turns them off).
    """
    random.seed(seed)  # Python's random (user augmentation)
    np.random.seed(seed)  # numpy's global RNG (user augmentation)
    torch.manual_seed(seed)  # CPU (and, in recent torch, every GPU)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)  # every GPU
    torch.backends.cudnn.deterministic = deterministic  # always the same convolution algorithm
    torch.backends.cudnn.benchmark = not deterministic  # benchmark = a (timing-dependent) algorithm search
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this when its first handle is made,
        # which is later (the first matmul on the GPU).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an operation with no deterministic version warns (once) instead of failing a long run.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def rng_states():
    """Every RNG state a resumed run needs (plain types and CPU tensors: loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available():
        states["cuda"] = [state.cpu() for state in torch.cuda.get_rng_state_all()]  # one per GPU
    return states


def set_rng_states(states):
    """Restore what rng_states() saved. Returns a note when the CUDA states could not all be restored."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = states["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(states["torch"].cpu())  # must be a CPU ByteTensor
    saved_cuda = states.get("cuda")
    if not torch.cuda.is_available():
        return "the checkpoint has CUDA RNG states but there is no GPU now" if saved_cuda else None
    if not saved_cuda:
        return ("the checkpoint has no CUDA RNG state (saved without a GPU): "
                "GPU randomness restarts from the seed")
    count = min(len(saved_cuda), torch.cuda.device_count())
    for index in range(count):
        torch.cuda.set_rng_state(saved_cuda[index].cpu(), device=index)
    if count != len(saved_cuda) or count != torch.cuda.device_count():
        return (f"CUDA RNG states restored for {count} GPU(s): saved {len(saved_cuda)}, "
                f"present {torch.cuda.device_count()}")
    return None


# --- files ----------------------------------------------------------------------------
def save_atomic(obj, path):
    """torch.save to a temporary file, then rename: a kill leaves the old file or the new one."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def json_safe(obj):
    """NaN and infinities become null: strict JSON parsers refuse the bare tokens NaN / Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.generic, torch.Tensor)) and getattr(obj, "ndim", 0) == 0:
        return json_safe(obj.item())  # numpy / torch scalars (e.g. from a metric)
    return obj


def to_json(obj, indent=None):
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json(obj, path):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(to_json(obj, indent=2) + "\n")
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
    """Peak GPU memory held by tensors (what the model and batches needed)."""
    return torch.cuda.max_memory_allocated() / 1024**2 if torch.cuda.is_available() else 0.0


def peak_gpu_reserved_mb():
    """Peak GPU memory PyTorch's caching allocator reserved (what the GPU had to have; >= allocated)."""
    return torch.cuda.max_memory_reserved() / 1024**2 if torch.cuda.is_available() else 0.0


def gpu_info():
    """The GPU and the CUDA / cuDNN versions this torch uses (None without a GPU)."""
    cuda = torch.cuda.is_available()
    return {
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else None,
        "cuda": torch.version.cuda,  # the CUDA torch was built with (None for a CPU-only torch)
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


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
    return {"python": platform.python_version(), **gpu_info(), "packages": dict(sorted(versions.items()))}
