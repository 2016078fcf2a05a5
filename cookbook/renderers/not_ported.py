"""Classes the pinned reference has and cookbook does not implement yet (renderers: issue 15).

The names exist, in the reference's module paths, so code that imports them (the reference's
own test files import several at the top) loads and everything else in it runs; constructing
one raises an error that says it is not implemented - never a stand-in.
"""

from __future__ import annotations

from typing import Any

from cookbook.exceptions import RendererError
from cookbook.renderers.base import Renderer

RENDERERS_ISSUE = 15


def not_ported(
    name: str,
    module: str,
    base: type = Renderer,
    error: type[Exception] = RendererError,
    issue: int | None = RENDERERS_ISSUE,
) -> type:
    """A ``base`` subclass called ``name`` whose construction raises ``error``."""

    def __new__(cls: type, *_args: Any, **_kwargs: Any) -> Any:
        reference = module.replace("cookbook.", "tinker_cookbook.", 1)
        where = f" (issue {issue})" if issue is not None else ""
        raise error(f"{cls.__name__} ({reference}) is not implemented in cookbook yet{where}")

    return type(name, (base,), {"__new__": __new__, "__module__": module})
