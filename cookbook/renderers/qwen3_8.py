"""Qwen3.8: ``qwen3_8_{xhigh,medium,low}_reasoning`` and ``qwen3_8_disable_thinking``.

Token for token as the reference's ``Qwen3_8Renderer`` family on text content. Qwen3.8 keeps
Qwen3.5/3.6's tokenizer, turn layout and XML tool calls (so this subclasses
:class:`~cookbook.renderers.qwen3_5.Qwen3_5Renderer`); its chat template differs in three ways:

* a reasoning effort (``xhigh``, the default, ``medium`` or ``low``): ``xhigh`` and ``low``
  put an instruction sentence at the start of the system message, creating one when the
  conversation has none; ``medium`` and thinking-disabled add nothing;
* reasoning is kept in history (the template's ``preserve_thinking`` defaults to true), and
  every assistant turn that did not reason gets the empty ``<think>`` block wherever it stands;
  only structured reasoning counts - an inline ``<think>`` in string content is ordinary text;
* an empty (or whitespace-only) system message renders nothing.

Tool-call arguments that are not strings are written as JSON (``true``/``null``), where
Qwen3.5's template wrote Python's ``True``/``None``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from cookbook.exceptions import RendererError
from cookbook.renderers.qwen3_5 import (
    _EMPTY_THINK_BLOCK,
    Qwen3_5DisableThinkingRenderer,
    Qwen3_5Renderer,
)
from cookbook.renderers.types import (
    Content,
    Message,
    RenderContext,
    TextPart,
)
from cookbook.tokenizers import Tokenizer

REASONING_EFFORT_INSTRUCTIONS: dict[str, str] = {
    "xhigh": (
        "Reasoning effort is set to xhigh. Please think carefully through the task, "
        "validate key assumptions, consider plausible alternatives, and prioritize "
        "correctness, consistency, and clarity in the final answer."
    ),
    "medium": "",
    "low": (
        "Reasoning effort is set to low. Keep your thinking brief and focused, moving "
        "directly to the conclusion without unnecessary elaboration."
    ),
}
"""The sentence the Qwen3.8 template puts first in the system message, per reasoning effort."""


class Qwen3_8Renderer(Qwen3_5Renderer):
    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: Any = None,
        strip_thinking_from_history: bool = False,
        reasoning_effort: str = "xhigh",
    ):
        """``strip_thinking_from_history=True`` is the template's ``preserve_thinking=false``;
        ``reasoning_effort`` its ``reasoning_effort`` (ignored with thinking disabled)."""
        if reasoning_effort not in REASONING_EFFORT_INSTRUCTIONS:
            raise RendererError(
                f"Unexpected reasoning effort {reasoning_effort}. Supported types are "
                "xhigh (default), medium, and low."
            )
        super().__init__(tokenizer, image_processor, strip_thinking_from_history)
        self.reasoning_effort = reasoning_effort

    @property
    def _instructions(self) -> str:
        return (
            "" if self.disables_thinking else REASONING_EFFORT_INSTRUCTIONS[self.reasoning_effort]
        )

    def _normalize_messages(self, messages: list[Message]) -> list[Message]:
        """The conversation with the template's system message: the instruction first in it (or
        as a new one), an empty one dropped. Idempotent, since the supervised path rebuilds the
        generation prompt from normalized messages; a synthetic message is untrainable where
        the conversation carries ``trainable`` flags (CUSTOMIZED requires one everywhere)."""
        instructions = self._instructions
        if not messages or messages[0]["role"] != "system":
            if not instructions:
                return list(messages)
            synthetic = Message(role="system", content=instructions)
            if any("trainable" in m for m in messages):
                synthetic["trainable"] = False
            return [synthetic, *messages]
        first, rest = messages[0], list(messages[1:])
        content: Content = first["content"]
        if isinstance(content, list):
            if any(part["type"] != "text" for part in content):
                # The template refuses these; the instruction goes in front, parts pass through.
                leading = content[0]
                if not instructions or (
                    leading["type"] == "text" and leading["text"].startswith(instructions)
                ):
                    return list(messages)
                parts = [TextPart(type="text", text=f"{instructions}\n\n"), *content]
                return [cast(Message, {**first, "content": parts}), *rest]
            content = "".join(part["text"] for part in content)  # type: ignore[typeddict-item]
        content = content.strip()
        if not content and not instructions:
            return rest
        if instructions and not (
            content == instructions or content.startswith(f"{instructions}\n\n")
        ):
            content = f"{instructions}\n\n{content}" if content else instructions
        return [cast(Message, {**first, "content": content}), *rest]

    def _format_tool_call_argument(self, value: object) -> str:
        """``|tojson`` for every value that is not a string."""
        return value if isinstance(value, str) else json.dumps(value)

    def _strips_thinking_for(self, message: Message, ctx: RenderContext) -> bool:
        """With preservation off, only turns up to the last user message lose their reasoning
        (the template keeps it after the last query, so a tool-calling turn keeps it)."""
        return (
            self.strip_thinking_from_history
            and message["role"] == "assistant"
            and ctx.idx <= ctx.last_user_index
        )

    def _assistant_header_suffix(
        self, message: Message, content: Content, ctx: RenderContext
    ) -> str:
        """The empty block on every turn that did not reason (only up to the last user message
        when history is stripped); inline ``<think>`` text is not reasoning to this template."""
        if self.strip_thinking_from_history and ctx.idx <= ctx.last_user_index:
            return ""
        reasoned = isinstance(content, list) and any(p["type"] == "thinking" for p in content)
        return "" if reasoned else _EMPTY_THINK_BLOCK


class Qwen3_8DisableThinkingRenderer(Qwen3_8Renderer):
    """``enable_thinking=False``: the prompt closes the empty block and no instruction is added;
    history keeps its (empty) blocks as with thinking on."""

    disables_thinking = True

    _generation_suffix_str = Qwen3_5DisableThinkingRenderer._generation_suffix_str
