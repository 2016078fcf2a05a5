"""Installed package versions, for the provenance every run, golden and benchmark records."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    return {name: package_version(name) for name in names}
