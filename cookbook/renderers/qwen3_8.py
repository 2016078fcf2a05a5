"""Qwen3.8 renderers: not implemented in cookbook yet (issue 15)."""

from cookbook.renderers.not_ported import not_ported

Qwen3_8Renderer = not_ported("Qwen3_8Renderer", __name__)
Qwen3_8DisableThinkingRenderer = not_ported("Qwen3_8DisableThinkingRenderer", __name__)
