"""Facts shared by kagglekit and its emulator (the only module the emulator may import).

Limits are Kaggle's published or observed values (see docs/kaggle-platform.md).
Accounts differ, so quota figures are *defaults for the emulator*,
never assumptions the client makes: the client always reads the live numbers.
"""

from __future__ import annotations

SOURCE_LIMIT_BYTES = 1024 * 1024  # "The kernel source must be less than 1 megabytes in size."
OUTPUT_BUDGET_BYTES = 20 * 1000**3  # /kaggle/working kept as a version's output: 20 GB
MIN_SLUG_LENGTH = 5
MIN_TITLE_LENGTH = 5

SESSION_LIMIT_SECONDS = {"cpu": 12 * 3600, "gpu": 12 * 3600, "tpu": 9 * 3600}
# A finished run whose process does not exit (a thread left running, an atexit hook waiting on a child such as
# wandb-core with no network) is ended this long after it finished, instead of holding the session to its limit.
EXIT_GRACE_SECONDS = 300
MAX_BATCH_SESSIONS = {"gpu": 2, "cpu": 5, "tpu": 2}

# Emulator defaults for the weekly allowance; real accounts vary (30 h, 45 h, 60 h seen).
DEFAULT_WEEKLY_QUOTA_SECONDS = {"gpu": 30 * 3600, "tpu": 20 * 3600}
QUOTA_WEEK_START_WEEKDAY = 5  # Saturday (Monday == 0), 00:00 UTC

SHAPE_GPU_DEFAULT = "NvidiaTeslaT4"  # "GPU T4 x2"
SHAPE_TPU_DEFAULT = "TpuV5E8"
GPU_SHAPES = frozenset(
    {"NvidiaTeslaP100", "NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaA100", "NvidiaL4",
     "NvidiaL4X1", "NvidiaH100", "NvidiaRtxPro6000"}
)
TPU_SHAPES = frozenset({"TpuV38", "Tpu1VmV38", "TpuV5E8", "TpuV6E8", "TpuV232", "TpuV2256"})
RETIRED_SHAPES = frozenset({"NvidiaTeslaP100", "TpuV38", "Tpu1VmV38", "TpuV232", "TpuV2256"})
# What people call each shape, after "GPU"/"TPU" (kagglekit.display.shape_label): Kaggle's "GPU T4 x2", "TPU v5e-8".
SHAPE_LABELS = {
    "NvidiaTeslaT4": "T4 x2", "NvidiaTeslaT4Highmem": "T4 x2 highmem", "NvidiaTeslaP100": "P100",
    "NvidiaTeslaA100": "A100", "NvidiaL4": "L4", "NvidiaL4X1": "L4 x1", "NvidiaH100": "H100",
    "NvidiaRtxPro6000": "RTX Pro 6000", "TpuV5E8": "v5e-8", "TpuV6E8": "v6e-8", "TpuV38": "v3-8",
    "Tpu1VmV38": "v3-8 VM", "TpuV232": "v2-32", "TpuV2256": "v2-256",
}
RETIRED_SHAPE_WARNING = ("machine shape {shape} was retired in September 2026; Kaggle runs it on a replacement. "
                         "Use 'gpu' (T4 x2) or 'tpu' (v5e-8).")


def accelerator_kind(machine_shape: str | None) -> str:
    """Map a ``machine_shape`` to ``gpu``/``tpu``/``cpu`` (empty or "None" means CPU)."""
    if not machine_shape or machine_shape == "None":
        return "cpu"
    if machine_shape in TPU_SHAPES or machine_shape.lower().startswith("tpu"):
        return "tpu"
    return "gpu"


# Run statuses: KernelWorkerStatus names.
STATUS_QUEUED = "QUEUED"
STATUS_RUNNING = "RUNNING"
STATUS_COMPLETE = "COMPLETE"
STATUS_ERROR = "ERROR"
STATUS_CANCEL_REQUESTED = "CANCEL_REQUESTED"
STATUS_CANCEL_ACKNOWLEDGED = "CANCEL_ACKNOWLEDGED"
STATUS_NEW_SCRIPT = "NEW_SCRIPT"
ACTIVE_STATUSES = frozenset({STATUS_QUEUED, STATUS_RUNNING, STATUS_CANCEL_REQUESTED, STATUS_NEW_SCRIPT})
FINAL_STATUSES = frozenset({STATUS_COMPLETE, STATUS_ERROR, STATUS_CANCEL_ACKNOWLEDGED})

# Kaggle's own messages: the emulator reproduces them, the client recognises them.
MSG_SOURCE_TOO_LARGE = "The kernel source must be less than 1 megabytes in size."
MSG_SESSION_CAP = "Maximum batch {kind} session count of {n} reached."
MSG_WEEKLY_QUOTA = "Maximum weekly {kind} quota of {hours:.2f} hours reached."
MSG_TIMEOUT = "Your notebook was stopped because it exceeded the max allowed execution duration."
MSG_OUTPUT_TOO_LARGE = (
    "Your notebook tried to write more than the maximum allowed output size of {limit} to /kaggle/working."
)

# Inside a kernel.
KAGGLE_ROOT = "/kaggle"
RUN_MANIFEST_RELPATH = "kagglekit/run.json"  # under /kaggle/working
ENV_MODE = "KAGGLEKIT_MODE"  # "test" | "full"
ENV_RUNNING_TEST = "KAGGLEKIT_RUNNING_TEST"  # "1" | "0"
ENV_SESSION_LIMIT = "KAGGLEKIT_SESSION_LIMIT_SECONDS"

# The emulator's seeded demo account.
DEMO_USERNAME = "demo"
DEMO_KEY = "d3m0d3m0d3m0d3m0d3m0d3m0d3m0d3m0"
DEMO_TOKEN = "KGAT_demo_0123456789abcdef"

DEFAULT_CHECKPOINT_PATTERNS = ("*.pt", "*.pth", "*.ckpt", "*.safetensors", "checkpoint*")
