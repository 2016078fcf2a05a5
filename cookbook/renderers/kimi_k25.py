"""Kimi K2.5 renderers: not implemented in cookbook yet (issue 15)."""

from cookbook.renderers.not_ported import not_ported

KimiK25Renderer = not_ported("KimiK25Renderer", __name__)
KimiK25DisableThinkingRenderer = not_ported("KimiK25DisableThinkingRenderer", __name__)
