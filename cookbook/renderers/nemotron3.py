"""Nemotron 3: ``nemotron3{,_low_thinking,_disable_thinking,_preserve_thinking}`` and
``nemotron3_ultra{,_disable_thinking,_medium_thinking,_preserve_thinking}``.

Token for token as the reference's ``Nemotron3Renderer`` family on text content. Nemotron 3's
chat templates keep Qwen3.5's layout (ChatML turns, ``<think>`` prefill, XML tool calls, one user
turn around consecutive tool results), so this subclasses
:class:`~cookbook.renderers.qwen3_5.Qwen3_5Renderer` and changes what the templates change:

* a system turn is always written, empty when the conversation has none; a system prompt comes
  before the tools block, and tools are declared as XML (:mod:`.nemotron3_tools`);
* only string content is trimmed;
* every assistant turn whose reasoning is not written gets ``<think></think>`` - history too,
  not only turns after the last user message; reasoning is dropped only from turns *before*
  the last user message (a tool-calling turn after it keeps its reasoning);
* reasoning is ``<think>\\n{r}\\n</think>\\n`` (3 Nano/Super) or ``<think>\\n{r}</think>``
  (3 Ultra, 3.5 Lightning, 3.5 Super VL); each ``</tool_call>`` and ``</tool_response>`` is
  followed by a newline;
* with thinking off the prompt ends ``<think></think>``; the low and medium efforts append
  ``{reasoning effort: low}`` / ``{reasoning effort: efficient}`` to the last user message.

Parsing is Qwen3.5's: the newline after ``</think>`` is framing, already dropped with the block.
Images (Nemotron 3.5 Super VL) are not implemented: an image part is refused.
"""

from __future__ import annotations

from typing import Any

from cookbook.exceptions import UnsupportedContentError
from cookbook.renderers.nemotron3_tools import (
    _format_nemotron3_tool_declaration,
    tools_system_prompt,
)
from cookbook.renderers.parsing import has_thinking
from cookbook.renderers.qwen3_5 import Qwen3_5Renderer, _format_tool_call
from cookbook.renderers.types import (
    Content,
    Message,
    RenderContext,
    RenderedMessage,
    Role,
    TextPart,
    ToolCall,
    ToolSpec,
)
from cookbook.tokenizers import Tokenizer

_EMPTY_THINK = "<think></think>"


class Nemotron3Renderer(Qwen3_5Renderer):
    """Nemotron 3 Nano and Super (``nemotron3``): thinking on, history reasoning dropped."""

    effort_note: str = ""
    """The reasoning effort the template notes on the last user message (none by default)."""

    @property
    def has_extension_property(self) -> bool:
        """Preserving history reasoning makes each turn render alike wherever it stands."""
        return not self.strip_thinking_from_history

    def _normalize_messages(self, messages: list[Message]) -> list[Message]:
        """The templates always open with a system turn (``system_message`` defaults to
        ``""``, which Jinja counts as defined)."""
        if messages and messages[0]["role"] == "system":
            return messages
        return [Message(role="system", content=""), *messages]

    def _trim_content(self, content: Content) -> Content:
        """The templates trim string content only; text parts pass through as they are."""
        return content.strip() if isinstance(content, str) else content

    def _format_thinking_text(self, thinking: str) -> str:
        return f"<think>\n{thinking}\n</think>\n"

    _tool_response_frame = ("<tool_response>\n", "\n</tool_response>\n")
    # Nemotron 3.5 Super VL's image layout is not ported: an image part is refused.
    _image_frame = None

    def _tool_response_continuation_header(self) -> str:
        """Each response already ends with its newline: the next follows directly."""
        return ""

    def _strips_thinking_for(self, message: Message, ctx: RenderContext) -> bool:
        """``truncate_history_thinking`` applies before the last user message only."""
        return (
            self.strip_thinking_from_history
            and message["role"] == "assistant"
            and ctx.idx < ctx.last_user_index
        )

    def _reasoning_written(self, content: Content, ctx: RenderContext) -> bool:
        return has_thinking(content) and (
            ctx.idx >= ctx.last_user_index or not self.strip_thinking_from_history
        )

    def _assistant_header_suffix(
        self, message: Message, content: Content, ctx: RenderContext
    ) -> str:
        """``<think></think>`` on every turn whose reasoning is not written. Where reasoning
        was dropped from a turn with text, the template keeps the newline that followed
        ``</think>`` (``c.split('</think>')[-1]``) - unless the turn calls tools, whose
        branch trims it."""
        if self._reasoning_written(content, ctx):
            return ""
        keeps_newline = (
            has_thinking(content)
            and isinstance(content, list)
            and any(p["type"] == "text" and p["text"] for p in content)
            and not message.get("tool_calls")
        )
        return _EMPTY_THINK + ("\n" if keeps_newline else "")

    def _tool_call_lines(self, calls: list[ToolCall]) -> str:
        return "".join(_format_tool_call(c, self._format_tool_call_argument) + "\n" for c in calls)

    def _tool_calls_text(self, content: Content, calls: list[ToolCall]) -> str:
        """One newline before the calls, none when the turn is reasoning parts and no text
        (the reasoning, even if dropped, is taken to end with its own newline)."""
        reasoning_only = (
            isinstance(content, list)
            and any(p["type"] == "thinking" for p in content)
            and not any(p["type"] == "text" and p["text"] for p in content)
        )
        return ("" if reasoning_only else "\n") + self._tool_call_lines(calls)

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        if self.effort_note and message["role"] == "user" and ctx.idx == ctx.last_user_index:
            message = self._with_effort_note(message)
        return super().render_message(message, ctx)

    def _with_effort_note(self, message: Message) -> Message:
        note = f"\n\n{{reasoning effort: {self.effort_note}}}"
        content = message["content"]
        if isinstance(content, str):
            return {**message, "content": content + note}
        return {**message, "content": [*content, TextPart(type="text", text=note)]}

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A system message with ``system_prompt`` first, then the XML tools block."""
        return [Message(role="system", content=tools_system_prompt(tools, system_prompt))]


class Nemotron3PreserveThinkingRenderer(Nemotron3Renderer):
    """``truncate_history_thinking=False``: history keeps its reasoning (extension property)."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer, strip_thinking_from_history=False)


class Nemotron3LowThinkingRenderer(Nemotron3Renderer):
    """Nemotron 3 Super's ``low_effort=True``: shorter reasoning, same ``<think>\\n`` prompt."""

    effort_note = "low"

    def _with_effort_note(self, message: Message) -> Message:
        if not isinstance(message["content"], str):
            raise UnsupportedContentError(
                "Nemotron-3 low-thinking mode is text-only; list content not supported"
            )
        return super()._with_effort_note(message)


class Nemotron3DisableThinkingRenderer(Nemotron3Renderer):
    """``enable_thinking=False``: the prompt ends with the closed empty block."""

    disables_thinking = True

    def _generation_suffix_str(self, role: Role, ctx: RenderContext) -> str:
        return f"{self._newline_before(ctx.idx)}<|im_start|>{role}\n{_EMPTY_THINK}"


class Nemotron3UltraRenderer(Nemotron3Renderer):
    """Nemotron 3 Ultra and the 3.5 models: no newline around ``</think>``, and always one
    newline between the turn's content and its tool calls."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: Any = None,
        strip_thinking_from_history: bool = True,
    ):
        super().__init__(tokenizer, image_processor, strip_thinking_from_history)

    def _format_thinking_text(self, thinking: str) -> str:
        return f"<think>\n{thinking}</think>"

    def _assistant_header_suffix(
        self, message: Message, content: Content, ctx: RenderContext
    ) -> str:
        return "" if self._reasoning_written(content, ctx) else _EMPTY_THINK

    def _tool_calls_text(self, content: Content, calls: list[ToolCall]) -> str:
        return "\n" + self._tool_call_lines(calls)


class Nemotron3UltraPreserveThinkingRenderer(Nemotron3UltraRenderer):
    """Ultra with ``truncate_history_thinking=False``."""

    def __init__(self, tokenizer: Tokenizer, image_processor: Any = None):
        super().__init__(tokenizer, image_processor, strip_thinking_from_history=False)


class Nemotron3UltraMediumThinkingRenderer(Nemotron3UltraRenderer):
    """Ultra and 3.5 Super's ``medium_effort=True`` (a note part is added to list content)."""

    effort_note = "efficient"


class Nemotron3UltraDisableThinkingRenderer(
    Nemotron3UltraRenderer, Nemotron3DisableThinkingRenderer
):
    """Ultra with ``enable_thinking=False``."""


__all__ = [
    "Nemotron3DisableThinkingRenderer",
    "Nemotron3LowThinkingRenderer",
    "Nemotron3PreserveThinkingRenderer",
    "Nemotron3Renderer",
    "Nemotron3UltraDisableThinkingRenderer",
    "Nemotron3UltraMediumThinkingRenderer",
    "Nemotron3UltraPreserveThinkingRenderer",
    "Nemotron3UltraRenderer",
    "_format_nemotron3_tool_declaration",
]
