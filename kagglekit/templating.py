"""Find and render the Jinja2 templates, from a source checkout or an installed wheel.

The wheel ships ``templates/`` as ``kagglekit/templates`` (see pyproject's
force-include); a checkout or editable install keeps it at the repository root.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from kagglekit.errors import KagglekitError


def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "kernel").is_dir():
            return candidate
    raise KagglekitError(
        "kagglekit's templates are missing from this installation.",
        hint="Reinstall kagglekit (pip install --force-reinstall kagglekit).",
    )


@cache
def environment() -> Any:
    """One strict Jinja2 environment for every template (undefined names fail loudly)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``."""
    text: str = environment().get_template(name).render(**context)
    return text
