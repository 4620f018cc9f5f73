"""The second channel to Kaggle, as ``push`` uses it: requirements and code over 1 MiB through datasets.

``plan_deps`` decides, offline, what a run needs beyond Kaggle's image and how it will get it (nothing;
``pip install`` in the kernel when internet is on; wheels vendored into ``<owner>/<slug>-wheels`` when it is
off; or a clear refusal), so ``push --dry-run`` can say it. ``vendor_wheels`` and ``upload_code`` do the
uploads (content-addressed: unchanged wheels or code upload nothing) and wait until Kaggle has processed
the version, since a kernel mounts only a READY version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit.deps import DepsReport, check, install_lines
from kagglekit.errors import ConfigError, DependencyError

if TYPE_CHECKING:
    from kagglekit.api.client import KaggleApiClient
    from kagglekit.api.datasets import SyncResult
    from kagglekit.settings import ProjectSettings

NONE, INSTALL, VENDOR, SKIP = "none", "install", "vendor", "skip"


@dataclasses.dataclass
class DepsPlan:
    report: DepsReport
    action: str  # none | install | vendor | skip
    lines: list[str]  # what the kernel installs
    wheels_dataset: str | None = None

    def requirements_config(self) -> dict[str, Any] | None:
        """What the bundle's config carries for the runtime (None: nothing to install)."""
        if self.action not in (INSTALL, VENDOR) or not self.lines:
            return None
        out: dict[str, Any] = {"install": list(self.lines)}
        if self.action == VENDOR:
            out["wheels"] = self.wheels_dataset
        return out

    def describe(self) -> str:
        head = self.report.summary()
        if self.action == NONE:
            return head
        if self.action == INSTALL:
            return f"{head}; the kernel pip-installs them before the entry (internet on)"
        if self.action == VENDOR:
            where = f"dataset {self.wheels_dataset}" if self.wheels_dataset else "a private dataset"
            return (f"{head}; their wheels for Kaggle's Python go to {where} and the kernel installs them "
                    "offline before the entry")
        return f"{head}; NOT installed (deps = \"none\"): the run fails at the first import of one of them"


def wheels_dataset_ref(settings: ProjectSettings) -> str | None:
    if not settings.kernel_owner or not settings.kernel_slug:
        return None
    return f"{settings.kernel_owner}/{settings.kernel_slug[:43].rstrip('-')}-wheels"


def plan_deps(settings: ProjectSettings, internet: bool) -> DepsPlan:
    """What the run needs beyond Kaggle's image, and how it will get it (no network)."""
    report = check(settings.root, settings.requirements)
    lines = install_lines(report)
    if not lines:
        return DepsPlan(report, NONE, [])
    if settings.deps == "none":
        return DepsPlan(report, SKIP, lines)
    if internet and settings.deps in ("auto", "install"):
        return DepsPlan(report, INSTALL, lines)
    if not internet and settings.deps == "install":
        raise DependencyError(
            f"Internet is off for this run, so the kernel cannot pip install what Kaggle's image lacks: "
            f"{', '.join(lines)}. It would fail at its first import.",
            "Set deps = \"vendor\" (or \"auto\") to upload their wheels as a private dataset, or push with "
            "--internet if the competition allows it.")
    return DepsPlan(report, VENDOR, lines, wheels_dataset_ref(settings))


def vendor_wheels(client: KaggleApiClient | None, settings: ProjectSettings, plan: DepsPlan,
                  info: Callable[[str], None], *, upload: bool = True) -> SyncResult | None:
    """Resolve the wheels (cached per requirement set) and make the wheels dataset hold exactly them."""
    from kagglekit.vendor import vendor

    if plan.wheels_dataset is None:  # named after the kernel: owner/<slug>-wheels
        raise ConfigError(
            f"No kernel id to name the wheels dataset after: set one (the folder name '{settings.root.name}' "
            "does not make a slug of 5+ characters, or the id has no owner).",
            'Set kernel = "owner/my-kernel" in [tool.kagglekit] or kagglekit.toml (or KAGGLEKIT_KERNEL).')
    result = vendor(plan.lines, settings.root, plan.report.image)
    info(f"wheels for Kaggle's Python: {len(result.wheels)} ({', '.join(result.wheels)})"
         + (" [cached]" if result.cached else "")
         + (f"; already in the image, not downloaded: {', '.join(result.skipped_in_image)}"
            if result.skipped_in_image else ""))
    if not upload or client is None:
        return None
    return sync_folder(client, plan.wheels_dataset, result.folder, [f"wheels/{w}" for w in result.wheels], info,
                       what="wheels")


def upload_code(client: KaggleApiClient, ref: str, folder: Path, info: Callable[[str], None]) -> SyncResult:
    return sync_folder(client, ref, folder, None, info, what="code")


def sync_folder(client: KaggleApiClient, ref: str, folder: Path, rels: list[str] | None,
                info: Callable[[str], None], *, what: str) -> SyncResult:
    from kagglekit.api.datasets import DatasetsApi, dataset_title, env_workers, scan

    api = DatasetsApi(client, workers=env_workers(), notify=info)
    files = scan(folder, rels)
    slug = ref.split("/", 1)[1]
    result = api.sync(ref, dataset_title(slug), folder, files)
    size = sum(f.size for f in files)
    if result.changed:
        info(f"{what} dataset {ref}: uploaded {_mb(result.stats.bytes_sent)} ({result.stats.files} files) and "
             f"Kaggle processed it in {result.seconds:.1f} s")
    else:
        info(f"{what} dataset {ref}: unchanged ({_mb(size)}, content {result.digest[:12]}), uploaded 0 bytes")
    return result


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
