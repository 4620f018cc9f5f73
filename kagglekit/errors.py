"""Every failure kagglekit expects, with a hint and a documented exit code.

The CLI's single error boundary (``cli.main``) prints ``Error: <message>`` and
``Hint: <hint>`` and exits with ``exit_code``; docs/exit-codes.md is the table.
Raise the most specific class; add a new one only with a new row in that table.
"""

from __future__ import annotations


def shown(value: object, limit: int = 60) -> str:
    """How a message quotes a value someone typed: ``repr(value)``, cut short past ``limit`` characters (a
    5,000-digit value must not fill the screen), with the count of what was typed."""
    text = repr(value)
    if len(text) <= limit:
        return text
    count = len(value) if isinstance(value, str) else len(text)
    return f"{text[:limit - 20]}...{text[-12:]} ({count} characters)"


class KagglekitError(Exception):
    """An expected failure: what went wrong (message) and what to do (hint).

    Errors made from an API answer also keep the HTTP status, Kaggle's status name
    (``NOT_FOUND``, ``PERMISSION_DENIED``...) and Kaggle's own message, so callers can tell
    "No runs found for this kernel." (a run not started yet) from a kernel that is not there.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, http_status: int | None = None,
                 api_status: str | None = None, api_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.http_status = http_status
        self.api_status = api_status
        self.api_message = api_message

    def __str__(self) -> str:
        return self.message


class ConfigError(KagglekitError):
    """A bad setting: in pyproject.toml / kagglekit.toml, the environment or an option (a `--set` that cannot apply)."""

    exit_code = 3


class CredentialsError(KagglekitError):
    """No Kaggle credentials were found, or Kaggle rejected them (HTTP 401)."""

    exit_code = 4


class NotFoundError(KagglekitError):
    """The kernel, version or file does not exist or is not visible to this account (403/404)."""

    exit_code = 5


class KaggleRefusedError(KagglekitError):
    """Kaggle accepted the request but refused the work: quota, the session cap, a push `error`."""

    exit_code = 6


class CancelDeniedError(KaggleRefusedError):
    """Kaggle refused to cancel a session (403 ``kernelSessions.cancel``): the run goes on; the web UI's
    Stop Session or deleting the kernel stops it (``kagglekit stop`` says how)."""

    exit_code = 15


class ApiError(KagglekitError):
    """The API could not be reached or kept failing (network, timeouts, 5xx, 429 after retries)."""

    exit_code = 7


class RunFailedError(KagglekitError):
    """The run ended in ERROR."""

    exit_code = 8


class RunCancelledError(KagglekitError):
    """The run was stopped (CANCEL_ACKNOWLEDGED), e.g. it hit its session limit."""

    exit_code = 9


class DownloadError(KagglekitError):
    """One or more output files could not be downloaded (the others are kept)."""

    exit_code = 10


class BundleError(KagglekitError):
    """The project cannot be bundled: a secret would ship, the source is over 1 MiB, the test flag is missing."""

    exit_code = 11


class UnsafePathError(KagglekitError):
    """A remote file name would land outside the target folder."""

    exit_code = 12


class EmulatorError(KagglekitError):
    """The local emulator could not be started, reached or stopped."""

    exit_code = 13


class DependencyError(KagglekitError):
    """The project's requirements cannot be met on Kaggle as asked (no wheel for its platform, internet off)."""

    exit_code = 14


class RunNotStartedError(KagglekitError):
    """A push created a version but no run: Kaggle still answers "No runs found" after the start grace."""

    exit_code = 16


class RunNotFinishedError(KagglekitError):
    """The run has not ended yet: ``--max-wait`` passed, or its outputs are not listed until it and its save end."""

    exit_code = 17


EXIT_INTERRUPTED = 130


class QueueBusyError(KagglekitError):
    """Another ``kagglekit queue run`` holds the queue's lease: two would push the same experiments."""

    exit_code = 18
