"""What every Qwen chat renderer shares: ChatML turns, `<think>` reasoning, `<tool_call>` blocks.

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{user}<|im_end|>\\n
    <|im_start|>assistant\\n<think>\\n{reasoning}\\n</think>\\n\\n{answer}<|im_end|>

Turns end with ``<|im_end|>`` (the stop token); the ``\\n`` between turns opens the *next* turn's
header, so a conversation rendered up to a reply ends exactly on the stop token. Tool results
are ``user`` turns wrapped in ``<tool_response>``. Qwen3 (:mod:`cookbook.renderers.qwen3`) and
Qwen3.5 (:mod:`cookbook.renderers.qwen3_5`) differ in how they lay out a turn's text; parsing a
reply and converting messages to OpenAI format are the same for both and live here.
"""

from __future__ import annotations

from functools import cached_property

from cookbook.renderers.base import (
    Renderer,
    openai_message_with_reasoning,
    parse_response_for_stop_token,
)
from cookbook.renderers.parsing import detect_unterminated_tool_block, parse_content_blocks
from cookbook.renderers.streaming import parse_even_if_truncated
from cookbook.renderers.types import (
    ContentPart,
    Message,
    ParseTermination,
    ToolCall,
    UnparsedToolCall,
)
from cookbook.tokenizers import Tokenizer


def frame_thinking(reasoning: str) -> str:
    """Reasoning framed as Qwen's templates frame the turn being produced.

    Padded with newlines and present even when empty; rendering ``<think>{r}</think>`` instead
    would differ from ``apply_chat_template`` on the very turn the model continues.
    """
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"


def unframe_thinking(parts: list[ContentPart]) -> list[ContentPart]:
    """Undo :func:`frame_thinking` on parsed parts, so render -> parse is the identity.

    The padding is framing, not content, and an empty block is a turn that did not reason; the
    text after a block loses the leading newlines the framing put there.
    """
    out: list[ContentPart] = []
    after_block = False
    for part in parts:
        if part["type"] == "thinking":
            reasoning = part["thinking"].strip("\n")
            if reasoning:
                out.append({"type": "thinking", "thinking": reasoning})
            after_block = True
        elif part["type"] == "text":
            text = part["text"].lstrip("\n") if after_block else part["text"]
            out.append({"type": "text", "text": text})
            after_block = False
        else:
            out.append(part)
            after_block = False
    return out


class QwenRendererBase(Renderer):
    """Stop token, reply parsing and OpenAI conversion of the Qwen chat formats."""

    frames_thinking = True
    """Whether the produced turn carries a (possibly empty) ``<think>`` block; the 2507
    Instruct models never use the tag."""

    # Streaming parse: a truncated reply still ends in a Message parsed into parts.
    supports_streaming = True
    _parse_response_for_streaming = parse_even_if_truncated

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True):
        """``strip_thinking_from_history``: drop reasoning from assistant turns before the last
        message, as the chat templates do; keep it (False) for the extension property."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    @staticmethod
    def _qwen_role(message: Message) -> str:
        # The templates render tool results as user turns.
        return "user" if message["role"] == "tool" else message["role"]

    def _newline_before(self, idx: int) -> str:
        return "\n" if idx > 0 else ""

    @cached_property
    def _end_message_token(self) -> int:
        (token,) = self._encode("<|im_end|>")
        return token

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Restore whatever the generation prompt prefilled, so parsing sees the whole turn."""
        return response

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Content up to ``<|im_end|>``, split into thinking/text parts and tool calls.

        A reply with no block at all keeps string content. Malformed ``<tool_call>`` JSON and a
        block left open become ``unparsed_tool_calls``; a missing stop token is MALFORMED and
        the decoded text is returned unsplit.
        """
        response = self._normalize_response_tokens(response)
        message, termination = parse_response_for_stop_token(
            response, self.tokenizer, self._end_message_token
        )
        if not termination.is_clean:
            return message, termination
        content = str(message["content"])
        blocks = parse_content_blocks(content)
        if blocks is not None:
            parts, calls = blocks
            message["content"] = unframe_thinking(parts) if self.frames_thinking else parts
            parsed = [c for c in calls if isinstance(c, ToolCall)]
            unparsed = [c for c in calls if isinstance(c, UnparsedToolCall)]
            if parsed:
                message["tool_calls"] = parsed
            if unparsed:
                message["unparsed_tool_calls"] = unparsed
        dangling = detect_unterminated_tool_block(content, "<tool_call>", "</tool_call>")
        if dangling is not None:
            message["unparsed_tool_calls"] = [*message.get("unparsed_tool_calls", []), dangling]
        return message, termination

    def _to_openai_tool_arguments(self, arguments: str) -> str | dict:
        """Tool-call arguments as the model's template wants them (Qwen3: the JSON string)."""
        return arguments

    def to_openai_message(self, message: Message) -> dict:
        return openai_message_with_reasoning(message, self._to_openai_tool_arguments)
