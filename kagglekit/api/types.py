"""What the Kaggle API answers, as plain frozen dataclasses (no kagglesdk import: cheap to import anywhere)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from kagglekit.constants import FINAL_STATUSES
from kagglekit.errors import ApiError
from kagglekit.kernel_ref import KernelRef


class PushOutcomeUnknown(ApiError):
    """SaveKernel was sent but its answer was lost (cut, dropped, timed out): the push may have been accepted.

    An ``ApiError`` (exit 7), not a new error class: never retried blindly (that could create a second
    version); ``push.find_accepted_push`` looks for the version instead.
    """


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What SaveKernel answered: the new version and anything Kaggle dropped from the request."""

    ref: KernelRef  # with the version Kaggle created
    version: int | None
    url: str
    kernel_id: int | None
    invalid_tags: list[str] = dataclasses.field(default_factory=list)
    invalid_dataset_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_competition_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_kernel_sources: list[str] = dataclasses.field(default_factory=list)
    invalid_model_sources: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class KernelStatus:
    """A run's state by KernelWorkerStatus name (QUEUED when Kaggle omits it)."""

    ref: KernelRef
    status: str
    failure_message: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclasses.dataclass(frozen=True)
class OutputFile:
    """One output file: its relative name (from Kaggle, untrusted) and a signed download URL."""

    name: str
    url: str


@dataclasses.dataclass(frozen=True)
class OutputListing:
    ref: KernelRef
    files: list[OutputFile]
    log: str


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """A kernel's metadata (GetKernel / ListKernels); ``source`` only from GetKernel."""

    ref: KernelRef
    id: int | None
    title: str
    author: str
    language: str
    kernel_type: str
    is_private: bool
    enable_gpu: bool
    enable_tpu: bool
    enable_internet: bool
    machine_shape: str
    docker_image: str
    current_version: int | None
    last_run_time: datetime | None
    dataset_sources: list[str]
    competition_sources: list[str]
    kernel_sources: list[str]
    model_sources: list[str]
    keywords: list[str]
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class AcceleratorQuota:
    """One accelerator's weekly allowance, in seconds. ``reported`` is False when Kaggle sent none."""

    used_seconds: float
    total_seconds: float
    reserved_seconds: float = 0.0
    minimum_seconds: float = 0.0
    has_ever_run: bool = False
    pay_to_scale: bool = False
    reported: bool = True

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.total_seconds - self.used_seconds)


@dataclasses.dataclass(frozen=True)
class QuotaInfo:
    gpu: AcceleratorQuota
    tpu: AcceleratorQuota
    refresh_time: datetime | None
