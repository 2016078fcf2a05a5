"""Kimi K2.6 (Moonshot AI), with the semantics of ``tinker_cookbook.renderers.kimi_k26`` (0.5.8).

K2.6 renders as K2.5 does: ``kimi_k26`` and ``kimi_k26_disable_thinking`` are K2.5's classes in
the registry. The only template difference is Moonshot's opt-in ``preserve_thinking`` flag, which
keeps every historical assistant turn's reasoning instead of emptying it to ``<think></think>``:
that is ``strip_thinking_from_history=False``, exposed as its own renderer name.
"""

from __future__ import annotations

from typing import Any

from cookbook.renderers.kimi_k25 import KimiK25Renderer
from cookbook.tokenizers import Tokenizer


class KimiK26PreserveThinkingRenderer(KimiK25Renderer):
    """Kimi K2.6 with thinking on and every turn's reasoning kept (HF ``preserve_thinking``)."""

    def __init__(self, tokenizer: Tokenizer, image_processor: Any = None):
        super().__init__(
            tokenizer, image_processor=image_processor, strip_thinking_from_history=False
        )
