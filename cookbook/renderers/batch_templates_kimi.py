"""Kimi K2.5 and K2.6 on the batch template path (``batch_template.py``): Kimi K2's template.

Why it is exact: for a plain message (string content, no tool calls, no other field) the K2.5
renderers (``kimi_k25``, ``kimi_k25_disable_thinking``, ``kimi_k26``, ``kimi_k26_disable_thinking``)
and ``kimi_k26_preserve_thinking`` write what K2 writes, default system message included: they
differ only in parts, images and tool declarations (not plain, so handed to the renderer), in
what the generation prompt prefills (``<think>`` or ``<think></think>``; the template path runs
the renderer's own generation-prompt check) and in keeping history reasoning, which string
content never carries (every assistant turn gets ``<think></think>``).
"""

from __future__ import annotations

from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_template import ChatTemplate
from cookbook.renderers.batch_templates_core import TEMPLATES as _CORE
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.kimi_k25 import KimiK25DisableThinkingRenderer, KimiK25Renderer
from cookbook.renderers.kimi_k26 import KimiK26PreserveThinkingRenderer

TEMPLATES: dict[type[Renderer], ChatTemplate] = dict.fromkeys(
    (KimiK25Renderer, KimiK25DisableThinkingRenderer, KimiK26PreserveThinkingRenderer),
    _CORE[KimiK2Renderer],
)

__all__ = ["TEMPLATES"]
