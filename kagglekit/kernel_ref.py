"""``KernelRef``: the one value for "a kernel, optionally one of its versions", with its one parser.

Light on purpose (stdlib + kagglekit.constants/errors): push, watch, the ledger and downloads pass it
around without importing the Kaggle API package.
"""

from __future__ import annotations

import dataclasses
import re

from kagglekit.constants import MIN_SLUG_LENGTH
from kagglekit.errors import ConfigError, shown

FORM_HINT = "Write it as OWNER/SLUG or OWNER/SLUG/VERSION, e.g. alice/my-model/3."
OWNER_CHARS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")  # never '..', '.', '/', spaces
SLUG_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


@dataclasses.dataclass(frozen=True)
class KernelRef:
    """``owner/slug[/version]``: one kernel, optionally one of its versions."""

    owner: str
    slug: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str, default_owner: str | None = None) -> KernelRef:
        """Parse ``owner/slug``, ``owner/slug/N`` (or ``/vN``), a kernel URL, or a bare ``slug``.

        A bare slug gets ``default_owner`` (the signed-in user), as the official CLI does.
        """
        raw = (text or "").strip()
        if not raw:
            raise ConfigError("No kernel given.", "Pass a kernel as OWNER/SLUG (optionally /VERSION).")
        url_match = re.match(r"^https?://[^/]+/code/(.+?)/*$", raw)
        if url_match:
            raw = url_match.group(1)
        parts = raw.split("/")
        if len(parts) == 1:
            if not default_owner:
                raise ConfigError(f"Kernel '{text}' has no owner.", FORM_HINT)
            owner, slug, version_text = default_owner, parts[0], None
        elif len(parts) == 2 and default_owner and re.fullmatch(r"[vV]?\d+", parts[1]):
            owner, slug, version_text = default_owner, parts[0], parts[1]  # "slug/3": a version of my kernel
        elif len(parts) in (2, 3):
            owner, slug = parts[0], parts[1]
            version_text = parts[2] if len(parts) == 3 else None
        else:
            raise ConfigError(f"Kernel '{text}' has too many parts.", FORM_HINT)
        typed = shown(text, 80)
        if not owner or not slug:
            raise ConfigError(f"Kernel {typed} has an empty owner or slug.", FORM_HINT)
        if owner != default_owner and not OWNER_CHARS.fullmatch(owner):  # a typed owner; the account's is trusted
            raise ConfigError(f"Kernel {typed}: the owner {shown(owner, 80)} is not a Kaggle username (letters, "
                              "digits, '-' and '_').", FORM_HINT)
        if not SLUG_CHARS.fullmatch(slug):
            raise ConfigError(f"Kernel {typed}: the slug {shown(slug, 80)} is not a Kaggle slug (letters, digits "
                              "and '-', as in the kernel's URL).", FORM_HINT)
        if len(slug) < MIN_SLUG_LENGTH:
            raise ConfigError(
                f"Kernel slug '{slug}' is shorter than {MIN_SLUG_LENGTH} characters; Kaggle rejects it.",
                FORM_HINT,
            )
        version: int | None = None
        if version_text is not None:
            digits = version_text[1:] if version_text[:1] in ("v", "V") else version_text
            # ASCII digits only ('\u00b2'.isdigit() is True, int() refuses it) and a sane length.
            if not re.fullmatch(r"[0-9]{1,9}", digits) or int(digits) < 1:
                raise ConfigError(f"Kernel version {shown(version_text, 80)} in {typed} is not a version number "
                                  "(a whole number from 1, in ASCII digits).", FORM_HINT)
            version = int(digits)
        return cls(owner, slug, version)

    @classmethod
    def from_id(cls, kernel_id: str, version: int | None = None) -> KernelRef:
        """``OWNER/SLUG`` text that is already known good (a ledger key, an API answer): split, not checked."""
        owner, _, slug = kernel_id.partition("/")
        return cls(owner, slug, version)

    @property
    def version_label(self) -> str | None:
        """The API's form of the version, ``v<N>`` (a bare number gets 404 from Kaggle)."""
        return None if self.version is None else f"v{self.version}"

    @property
    def kernel_id(self) -> str:
        """``OWNER/SLUG``: kernel-metadata.json's ``id`` and the ledger's kernel key."""
        return f"{self.owner}/{self.slug}"

    def without_version(self) -> KernelRef:
        return KernelRef(self.owner, self.slug)

    def with_version(self, version: int | None) -> KernelRef:
        return KernelRef(self.owner, self.slug, version)

    @property
    def url(self) -> str:
        return f"https://www.kaggle.com/code/{self.owner}/{self.slug}"

    def __str__(self) -> str:
        return self.kernel_id if self.version is None else f"{self.kernel_id}/{self.version}"
