"""Declarative specs: models (-> JSON Schema), loader with file:line errors."""

from cookbook.specs.loader import load_spec
from cookbook.specs.models import SPEC_KINDS, RendererCase, RendererCasesSpec

__all__ = ["SPEC_KINDS", "RendererCase", "RendererCasesSpec", "load_spec"]
