"""GLM 5.3 renderers: not implemented in cookbook yet (issue 15)."""

from cookbook.renderers.not_ported import not_ported

Glm5_3Renderer = not_ported("Glm5_3Renderer", __name__)
Glm5_3HighReasoningRenderer = not_ported("Glm5_3HighReasoningRenderer", __name__)
Glm5_3LowReasoningRenderer = not_ported("Glm5_3LowReasoningRenderer", __name__)
