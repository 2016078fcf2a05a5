"""DeepSeek V4.1 renderers: not implemented in cookbook yet (issue 15)."""

from cookbook.renderers.not_ported import not_ported

DeepSeekV4_1Renderer = not_ported("DeepSeekV4_1Renderer", __name__)
DeepSeekV4_1LowReasoningRenderer = not_ported("DeepSeekV4_1LowReasoningRenderer", __name__)
DeepSeekV4_1MaxReasoningRenderer = not_ported("DeepSeekV4_1MaxReasoningRenderer", __name__)
DeepSeekV4_1DisableThinkingRenderer = not_ported("DeepSeekV4_1DisableThinkingRenderer", __name__)
