"""DeepSeek V4.1: ``deepseekv4_1`` (thinking, reasoning effort high: the template's default),
``deepseekv4_1_low_reasoning``, ``deepseekv4_1_max_reasoning``, ``deepseekv4_1_disable_thinking``
(chat mode) and ``deepseekv4_1_preserve_thinking``, token for token as the reference's
``DeepSeekV4_1Renderer`` family::

    <BOS><|System|>Reasoning Effort: 75 (range 1-100, ...)\\n\\n{system}
    <|User|>{question}<|Assistant|><think>{reasoning}</think>{answer}<EOS>

(no line breaks between turns in reality; BOS/EOS are DeepSeek's begin/end-of-sentence tokens;
the markers are written with ASCII "|", the real ones use FULLWIDTH VERTICAL LINE, U+FF5C).

* Thinking mode opens every prompt with ``<|System|>`` and the effort line (75 high, 50 low,
  100 max), system message or not. Chat mode writes no effort line, ``<|System|>`` only before a
  system message, and ends every assistant header with ``</think>``.
* ``<|Assistant|>`` ends a user turn, so an assistant message gets one only after a user turn
  (or a system message after the first); after the first system message or another assistant
  message it has none.
* Tool results have no role of their own: they are ``<tool_result>`` blocks of the user turn,
  sorted into the preceding calls' order (see :mod:`deepseek_v4_1_format`). Tool declarations
  fold into the first system turn (an empty one if there is none).
* Reasoning before the last user turn is dropped (the header then ends ``</think>``) unless tools
  are declared or ``strip_thinking_from_history`` is off (``deepseekv4_1_preserve_thinking``).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import numpy as np
import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.base import (
    Renderer,
    Segment,
    add_openai_tool_fields,
    parse_response_for_stop_token,
)
from cookbook.renderers.deepseek_v3 import BOS, EOS, special, warn_if_decoding_strips_spaces
from cookbook.renderers.deepseek_v4_1_format import (
    CALLS_BLOCK,
    CALLS_CLOSE,
    CALLS_OPEN,
    DSML,
    arguments_dict,
    format_tool_calls,
    is_user_turn,
    last_user_turn,
    parse_calls_block,
    split_assistant_content,
    template_turns,
)
from cookbook.renderers.encoding import encode_text
from cookbook.renderers.parsing import detect_unterminated_tool_block, parse_think_blocks
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_text,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer

SYSTEM = special("System")
USER = special("User")
ASSISTANT = special("Assistant")
_EFFORT_LINE = (
    "Reasoning Effort: {effort} (range 1-100, the higher the value, the more thorough the "
    "reasoning)\n\n"
)

# Assistant messages at or before this index render without reasoning (-1: none), set while a
# conversation is being rendered: whether reasoning is dropped depends on the whole conversation
# (declared tools, where the last user turn is) and render_message sees one message. A set value
# also marks a re-entry (the base class builds the generation prompt of a prefix of the
# reshaped conversation), which must not be reshaped twice.
_DROP_REASONING_THROUGH: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "deepseek_v4_1_drop_reasoning_through", default=None
)


class DeepSeekV4_1Renderer(Renderer):
    """Thinking mode, reasoning effort high: the HF template's defaults (``thinking_mode``
    thinking, ``reasoning_effort`` high, ``drop_thinking`` true)."""

    reasoning_effort: int | None = 75
    """The effort line's budget (1-100); None is chat mode."""

    supports_streaming = True

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True):
        """``strip_thinking_from_history``: drop the reasoning before the last user turn (unless
        tools are declared), as the template's ``drop_thinking`` does; False keeps it, which
        gives multi-turn RL the extension property."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history
        warn_if_decoding_strips_spaces()

    @property
    def _thinking(self) -> bool:
        return self.reasoning_effort is not None

    @property
    def has_extension_property(self) -> bool:
        return not (self._thinking and self.strip_thinking_from_history)

    def _special_id(self, token: str) -> int:
        (token_id,) = self._encode(token)
        return token_id

    @property
    def _bos_tokens(self) -> list[int]:
        return self._encode(BOS)

    @cached_property
    def _end_message_token(self) -> int:
        return self._special_id(EOS)

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def _encode_after(self, prefix: str, text: str) -> tuple[list[int], list[int]]:
        """``prefix + text`` encoded as one string, split into (prefix, text) tokens.

        BPE merges across the boundary (the effort line's ``\\n\\n`` with a tools-only system
        turn's leading ``\\n\\n``); a merged token goes with the prefix.
        """
        tokens = self._encode_fixed(prefix + text)  # a system turn: recurs across a dataset
        split = self._prefix_split(prefix, tokens)
        return tokens[:split], tokens[split:]

    def _prefix_split(self, prefix: str, tokens: list[int]) -> int:
        """The first ``split`` whose ``decode(tokens[:split])`` covers ``prefix``, as the
        reference finds it, decoding one prefix of ``tokens`` after another.

        Why not just that loop: it decodes twenty-odd times per system message. The prefix is
        one of a few fixed strings, so its own ids and what their prefixes decode to are worked
        out once per tokenizer; while ``tokens`` starts with those ids (no BPE merge across the
        boundary), the loop would stop right after them, having decoded exactly those prefixes.
        """
        cached = self.__dict__.get("_prefix_splits")
        if cached is None or cached[0] is not self.tokenizer:
            cached = self.__dict__["_prefix_splits"] = (self.tokenizer, {})
        known = cached[1].get(prefix)
        if known is None:
            # Straight from the tokenizer, not through the (hookable) _encode: the answer is
            # right for any ids, and a batch's recording copy must not leave its stand-ins here.
            ids = encode_text(
                self.tokenizer, prefix, add_special_tokens=False, split_special_tokens=None
            )
            decoded = [len(self.tokenizer.decode(ids[:n])) for n in range(len(ids) + 1)]
            exact = decoded[-1] >= len(prefix) and max(decoded[:-1]) < len(prefix)
            known = cached[1][prefix] = (ids, exact)
        ids, exact = known
        if exact and tokens[: len(ids)] == ids:
            return len(ids)
        split = 0
        while split < len(tokens) and len(self.tokenizer.decode(tokens[:split])) < len(prefix):
            split += 1
        return split

    def _opening(self, role: Role) -> str:
        """What precedes the first message: ``<|System|>`` and, thinking, the effort line."""
        if self._thinking:
            return SYSTEM + _EFFORT_LINE.format(effort=self.reasoning_effort)
        return SYSTEM if role == "system" else ""

    def _last_assistant_turn_start_index(self, messages: list[Message]) -> int:
        """A system message after the first starts a turn too, as in the template."""
        last = max(
            (
                idx
                for idx, m in enumerate(messages)
                if m["role"] == "user" or (m["role"] == "system" and idx > 0)
            ),
            default=-1,
        )
        return last + 1

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """One message of a conversation already reshaped by ``template_turns``."""
        role = message["role"]
        opening = self._opening(role) if ctx.idx == 0 else ""
        if role == "system":
            prefix = opening if ctx.idx == 0 else SYSTEM
            header, text = self._encode_after(prefix, ensure_text(message["content"]))
            return _rendered(header, text)
        if role == "tool_declare":  # folded into the system turn by template_turns
            return RenderedMessage(output=[])
        if is_user_turn(message):
            if ctx.prev_message is not None and is_user_turn(ctx.prev_message):
                return RenderedMessage(output=[])  # the turn's first message holds its text
            header = self._encode_fixed(opening + USER)
            return _rendered(header, self._encode(ensure_text(message["content"])))
        if role != "assistant":
            raise RendererError(f"Unsupported role for DeepSeek V4.1: {role}")
        return self._render_assistant(message, ctx, opening)

    def _render_assistant(
        self, message: Message, ctx: RenderContext, opening: str
    ) -> RenderedMessage:
        drop_through = _DROP_REASONING_THROUGH.get()
        keeps_reasoning = self._thinking and ctx.idx > (
            -1 if drop_through is None else drop_through
        )
        prev = ctx.prev_message
        follows_user_turn = prev is not None and (
            is_user_turn(prev) or (prev["role"] == "system" and ctx.idx > 1)
        )
        marker = ASSISTANT + ("<think>" if keeps_reasoning else "</think>")
        header_text = opening + (marker if follows_user_turn else "")
        reasoning, answer = split_assistant_content(message)
        body = (reasoning + "</think>" if keeps_reasoning else "") + answer
        if tool_calls := message.get("tool_calls"):
            body += format_tool_calls(tool_calls)
        output = text_chunk([*self._encode(body), self._end_message_token])
        header = text_chunk(self._encode_fixed(header_text)) if header_text else None
        return RenderedMessage(header=header, output=[output])

    # -- conversations: reshaped into the template's turns once, then the base class ----------

    @contextmanager
    def _template_turns(self, messages: list[Message]) -> Iterator[list[Message]]:
        if _DROP_REASONING_THROUGH.get() is not None:
            yield messages
            return
        turns = template_turns(messages)
        drops = self.strip_thinking_from_history and not any(
            m["role"] == "tool_declare" for m in messages
        )
        token = _DROP_REASONING_THROUGH.set(last_user_turn(turns) if drops else -1)
        try:
            yield turns
        finally:
            _DROP_REASONING_THROUGH.reset(token)

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        with self._template_turns(messages) as turns:
            return super().build_generation_prompt(turns, role, prefill)

    def supervised_segments(
        self, messages: list[Message], train_on_what: TrainOnWhat
    ) -> list[Segment]:
        """Tool and user messages sharing a user turn are trained or masked together."""
        with self._template_turns(messages) as turns:
            return super().supervised_segments(turns, train_on_what)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        with self._template_turns(messages) as turns:
            return super().build_supervised_example(turns, train_on_what)

    # -- parsing ------------------------------------------------------------------------------

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Put back the prefilled ``<think>`` (thinking mode) before a reply that closes it."""
        if not self._thinking:
            return response
        think, close = self._special_id("<think>"), self._special_id("</think>")
        if close in response and response[0] != think:
            return [think, *response]
        return response

    def _parse_content(
        self, response: list[int], allow_missing_stop: bool
    ) -> tuple[Message, ParseTermination]:
        message, termination = parse_response_for_stop_token(
            response, self.tokenizer, self._end_message_token
        )
        if not termination.is_clean and not allow_missing_stop:
            return message, termination
        content = str(message["content"])
        block = CALLS_BLOCK.search(content)
        calls, unparsed = parse_calls_block(block.group(0)) if block else ([], [])
        if block:
            # A reply ends with its one calls block; anything after it is malformed.
            after = content[block.end() :]
            if after.strip():
                error = "Invalid DSML: output after calls block"
                unparsed.append(UnparsedToolCall(raw_text=after, error=error))
            content = content[: block.start()]
        dangling = detect_unterminated_tool_block(content, CALLS_OPEN, CALLS_CLOSE)
        if dangling is None and DSML in content:
            # The model writes this token only in tool calls: any left over is a broken call.
            error = "Invalid DSML: marker outside a calls block"
            dangling = UnparsedToolCall(raw_text=content, error=error)
        if dangling is not None:
            unparsed.append(dangling)
        if calls:
            message["tool_calls"] = calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        parts = parse_think_blocks(content)
        message["content"] = parts if parts is not None else content
        return message, termination

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Reasoning and DSML tool calls out of a reply ending in the end-of-sentence token
        (``MALFORMED`` without it); invalid calls are kept as ``unparsed_tool_calls``."""
        return self._parse_content(self._normalize_response_tokens(response), False)

    def _parse_response_for_streaming(
        self, response: list[int]
    ) -> tuple[Message, ParseTermination]:
        """A truncated stream still ends in a Message with its reasoning and calls parsed."""
        return self._parse_content(response, True)

    def to_openai_message(self, message: Message) -> dict:
        """OpenAI format with ``reasoning_content`` and dict arguments (the template iterates
        ``arguments.items()``)."""
        result: dict = {"role": message["role"]}
        if message["role"] == "assistant":
            reasoning, result["content"] = split_assistant_content(message)
            if reasoning:
                result["reasoning_content"] = reasoning
        else:
            result["content"] = ensure_text(message["content"])
        return add_openai_tool_fields(result, message, arguments_dict)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """The system message and a ``tool_declare`` message: the tools render in the same
        ``<|System|>`` turn, and the separate message tells the renderer tools are declared
        (which keeps history reasoning)."""
        messages: list[Message] = []
        if system_prompt:
            messages.append(Message(role="system", content=system_prompt))
        if tools:
            payload = [{"type": "function", "function": dict(tool)} for tool in tools]
            messages.append(Message(role="tool_declare", content=json.dumps(payload)))
        return messages


def _rendered(header: list[int], output: list[int]) -> RenderedMessage:
    """Empty chunks are left out: the sampler rejects them."""
    return RenderedMessage(
        header=text_chunk(header),
        output=[text_chunk(output)] if output else [],
    )


class DeepSeekV4_1LowReasoningRenderer(DeepSeekV4_1Renderer):
    """Thinking mode, reasoning effort low (the template's ``reasoning_effort='low'``)."""

    reasoning_effort = 50


class DeepSeekV4_1MaxReasoningRenderer(DeepSeekV4_1Renderer):
    """Thinking mode, reasoning effort max (the template's ``reasoning_effort='max'``)."""

    reasoning_effort = 100


class DeepSeekV4_1DisableThinkingRenderer(DeepSeekV4_1Renderer):
    """Chat mode (the template's ``thinking_mode='chat'``): no reasoning, no effort line."""

    reasoning_effort = None
