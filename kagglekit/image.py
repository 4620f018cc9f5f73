"""What Kaggle's image has: the package list of its CPU image, and the advice for a missing module.

``data/kaggle-image-packages.txt`` is the ``pip freeze`` of Kaggle's CPU notebook image (Python
3.12; its header names the public source and commit). A kernel that fails with
``ModuleNotFoundError`` gets advice that depends on where it ran: on the emulator, a module
Kaggle's image has means the emulator's interpreter lacks it (so: a venv like Kaggle's image,
set as the emulator's ``kernel_python``); a module the image lacks needs installing on Kaggle too.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

PACKAGES_FILE = Path(__file__).resolve().parent / "data" / "kaggle-image-packages.txt"
# import name -> distribution name, where they differ (the common cases)
IMPORT_TO_DIST = {
    "sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "PyYAML",
    "skimage": "scikit-image", "bs4": "beautifulsoup4", "attr": "attrs", "dateutil": "python-dateutil",
    "google.protobuf": "protobuf", "Crypto": "pycryptodome", "OpenSSL": "pyOpenSSL", "jwt": "PyJWT",
    "git": "GitPython", "box": "python-box", "dotenv": "python-dotenv", "lightning": "lightning",
    "pytorch_lightning": "pytorch-lightning", "tensorflow_hub": "tensorflow-hub", "sentencepiece": "sentencepiece",
    "Levenshtein": "levenshtein", "magic": "python-magic", "slugify": "python-slugify", "docx": "python-docx",
    "umap": "umap-learn", "ruamel": "ruamel.yaml", "pkg_resources": "setuptools",
}
_MISSING = re.compile(r"No module named '([A-Za-z_][A-Za-z0-9_.]*)'")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def image_packages() -> dict[str, tuple[str, str]]:
    """normalised distribution name -> (name as listed, version)."""
    out: dict[str, tuple[str, str]] = {}
    try:
        lines = PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            out[_norm(name)] = (name, version)
    return out


def distribution_for(module: str) -> str:
    """The distribution that most likely provides ``module`` (``sklearn`` -> ``scikit-learn``)."""
    if module in IMPORT_TO_DIST:
        return IMPORT_TO_DIST[module]
    top = module.split(".")[0]
    return IMPORT_TO_DIST.get(top, top)


def in_image(module: str) -> tuple[str, str] | None:
    """(distribution, version) when Kaggle's image has the package that provides ``module``."""
    return image_packages().get(_norm(distribution_for(module)))


def missing_module(text: str | None) -> str | None:
    """The module a ``ModuleNotFoundError`` in ``text`` names (its top-level name), or None."""
    found = _MISSING.findall(text or "")
    return found[-1] if found else None


def missing_module_advice(text: str | None, *, emulator: bool) -> str | None:
    """What to do about ``No module named 'X'`` in a failed run's message or log (None: no such error)."""
    module = missing_module(text)
    if module is None:
        return None
    top = module.split(".")[0]
    dist = distribution_for(module)
    have = in_image(module)
    if emulator and have is not None:
        pinned = f"{have[0]}=={have[1]}"
        return (f"'{top}' is missing from the interpreter the emulator runs kernels with, but Kaggle's image has "
                f"{pinned}, so on Kaggle this import works. To run it here as well, give the emulator an "
                f"interpreter with it: python3 -m venv ~/.kaggle-like && ~/.kaggle-like/bin/pip install "
                f"'{pinned}' (and the project's other imports), then kagglekit emulator config "
                f"kernel_python=$HOME/.kaggle-like/bin/python (docs/emulator.md, 'A chosen interpreter').")
    if have is None:
        where = "Kaggle's image does not have it either" if emulator else "Kaggle's image does not have it"
        return (f"'{top}' is not installed. {where} (its package list has no {dist}): install it at the "
                f"start of the run, e.g. subprocess.run([sys.executable, '-m', 'pip', 'install', '{dist}']) with "
                "internet on, or attach a dataset of wheels and pip install --no-index --find-links from it.")
    return None
