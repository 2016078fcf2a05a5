"""Nemotron 3 renderers: not implemented in cookbook yet (issue 15)."""

from cookbook.renderers.not_ported import not_ported

Nemotron3Renderer = not_ported("Nemotron3Renderer", __name__)
Nemotron3DisableThinkingRenderer = not_ported("Nemotron3DisableThinkingRenderer", __name__)
Nemotron3LowThinkingRenderer = not_ported("Nemotron3LowThinkingRenderer", __name__)
Nemotron3PreserveThinkingRenderer = not_ported("Nemotron3PreserveThinkingRenderer", __name__)
Nemotron3UltraRenderer = not_ported("Nemotron3UltraRenderer", __name__)
Nemotron3UltraDisableThinkingRenderer = not_ported(
    "Nemotron3UltraDisableThinkingRenderer", __name__
)
Nemotron3UltraMediumThinkingRenderer = not_ported("Nemotron3UltraMediumThinkingRenderer", __name__)
Nemotron3UltraPreserveThinkingRenderer = not_ported(
    "Nemotron3UltraPreserveThinkingRenderer", __name__
)
