"""Error hierarchy of the cookbook package.

Mirrors ``tinker_cookbook.exceptions``: each class also inherits the stdlib error it replaces,
so code written against the reference (``except ValueError``) keeps working after switching the
import. The CLI turns any :class:`CookbookError` into a one-line message and exit code 2.
"""

from __future__ import annotations


class CookbookError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigurationError(CookbookError, ValueError):
    """A setting, model name or renderer name is not usable."""


class RendererError(CookbookError, ValueError):
    """A conversation cannot be rendered or a response cannot be parsed."""


class TrainableFlagError(RendererError, AssertionError):
    """``trainable`` is present without ``CUSTOMIZED`` or missing with it.

    The reference enforces this with a bare ``assert``; inheriting ``AssertionError`` keeps
    ``except AssertionError`` callers working while the check survives ``python -O``.
    """


class TokenizerError(ConfigurationError):
    """No tokenizer can be provided for a model, online or offline."""


class SpecError(ConfigurationError):
    """A spec file is unreadable or invalid; ``str()`` is ``file:line: field: message``."""

    def __init__(self, path: str, line: int | None, field: str, message: str):
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        location = f"{path}:{line}" if line is not None else path
        super().__init__(f"{location}: {field}: {message}" if field else f"{location}: {message}")


class GoldenError(CookbookError, ValueError):
    """A golden file is missing, corrupted, stale or unused."""


class DataFormatError(ConfigurationError):
    """Training data is not in the expected shape; ``str()`` names ``file:line: field``."""


class DatasetUnavailableError(ConfigurationError):
    """A dataset cannot be loaded (no hub, no cache, asset package missing); the message names
    the offline fallback."""
