"""What to do about a failed run, from the words of its error and log: the hint under ``The run ... failed``."""

from __future__ import annotations

from kagglekit.image import missing_module_advice

# wandb detects Kaggle and, with internet off, logs this and then waits for its init timeout (90 s).
WANDB_NO_INTERNET = "To use W&B in kaggle you must enable internet"
WANDB_NO_KEY = "No API key configured"
WANDB_INIT_TIMEOUT = "Run initialization has timed out"


def wandb_advice(text: str) -> str | None:
    """A run that calls ``wandb.init``/``wandb.login`` with no network or no key (None: not that failure)."""
    if WANDB_NO_INTERNET not in text and not ("wandb" in text and (WANDB_NO_KEY in text or WANDB_INIT_TIMEOUT in text)):
        return None
    return ("wandb could not reach its servers (internet off, or no API key in the kernel). To keep the run's "
            'wandb logs in the output instead, add [env] WANDB_MODE = "offline" to the settings (sync them later '
            "with `wandb sync` on the files pull-outputs brings); to log online, set internet = true and give the "
            "kernel a WANDB_API_KEY through Kaggle's Secrets add-on (never in the settings).")


def failure_advice(text: str | None, *, emulator: bool) -> str | None:
    """The first advice that fits a failed run's message and log tail, or None."""
    text = text or ""
    return missing_module_advice(text, emulator=emulator) or wandb_advice(text)
