"""Error hierarchy of the cookbook package.

Mirrors ``tinker_cookbook.exceptions``: each class also inherits the stdlib error it replaces,
so code written against the reference (``except ValueError``) keeps working after switching the
import. The CLI turns any :class:`CookbookError` into a one-line message: exit code 1 for a
:class:`BackendError` (the run started and failed; it can be resumed), 2 for everything else
(bad input; nothing was written). :class:`RunInterrupted` is Ctrl-C with a note: exit 130.
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


class UnsupportedContentError(RendererError, AssertionError):
    """Content of a shape the renderer's format cannot carry (Nemotron 3's low-effort note
    needs a string user message); the reference refuses it with a bare ``assert``."""


class TokenizerError(ConfigurationError):
    """No tokenizer can be provided for a model, online or offline."""


class SpecError(ConfigurationError):
    """A spec file is unreadable or invalid; ``str()`` is ``file:line: field: message``."""

    def __init__(self, path: str, line: int | None, field: str, message: str):
        # One line whatever the input: a YAML problem or a key may hold line breaks.
        path, field, message = (" ".join(str(part).splitlines()) for part in (path, field, message))
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


class BackendError(CookbookError, RuntimeError):
    """The service or backend failed while a run was under way (a request failed for good, a
    replay diverged from its recording): not the input's fault, so exit code 1, not 2."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``str()`` says where the last checkpoint is and how to resume."""
