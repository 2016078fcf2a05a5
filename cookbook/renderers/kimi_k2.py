"""Kimi K2 (Moonshot AI), with the semantics of ``tinker_cookbook.renderers.kimi_k2`` (0.5.8).

Format::

    <|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>
    <|im_user|>user<|im_middle|>What can you help me with?<|im_end|>
    <|im_assistant|>assistant<|im_middle|><think>reasoning</think>I can help...<|im_end|>

Every rendering starts with a system message - the default one unless the conversation brings
its own (after a leading ``tool_declare`` message, if any), as Kimi's chat template does. An
assistant message always opens a think block: its reasoning in the turn being produced (the
messages after the last assistant message that called no tool), ``<think></think>`` in history.
Tool calls follow the text in a ``<|tool_calls_section_begin|>`` section; a tool result is a
system-style message named after the tool, headed ``## Return of {tool_call_id}``.

No registry package ships Kimi K2's tokenizer: the goldens use a declared stand-in
(``cookbook-standin/kimi-k2``), see specs/renderers/exclusions.yaml.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.base import (
    Renderer,
    openai_message_with_reasoning,
    parse_response_for_stop_token,
)
from cookbook.renderers.framing import FramedEncoding
from cookbook.renderers.parsing import detect_unterminated_tool_block, parse_think_blocks
from cookbook.renderers.streaming import parse_even_if_truncated
from cookbook.renderers.types import (
    ContentPart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    TextPart,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_text,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer

DEFAULT_SYSTEM_PROMPT = "You are Kimi, an AI assistant created by Moonshot AI."

# Both spellings of the section markers are accepted when parsing; the renderer writes the first.
_SECTION = re.compile(
    r"<\|tool_calls_section_begin\|>(.*?)<\|tool_calls_section_end\|>"
    r"|<\|tool_call_section_begin\|>(.*?)<\|tool_call_section_end\|>",
    re.DOTALL,
)
_CALL = re.compile(
    r"<\|tool_call_begin\|>\s*([^<]+:\d+)\s*<\|tool_call_argument_begin\|>\s*(.*?)\s*"
    r"<\|tool_call_end\|>",
    re.DOTALL,
)
# The headers that are the same in every message of their role (a tool result names its call).
_FIXED_HEADERS = {
    "user": "<|im_user|>user<|im_middle|>",
    "assistant": "<|im_assistant|>assistant<|im_middle|>",
    "system": "<|im_system|>system<|im_middle|>",
}
_BLOCK_MARKERS = (
    ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    ("<|tool_call_section_begin|>", "<|tool_call_section_end|>"),
    ("<|tool_call_begin|>", "<|tool_call_end|>"),
)


def _tool_name(tool_id: str) -> str:
    """``functions.get_weather:0`` -> ``get_weather`` (prefix and index dropped)."""
    name = tool_id.split(":", 1)[0]
    return name.split(".", 1)[1] if "." in name else name


def _parse_section(section: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for match in _CALL.finditer(section):
        tool_id, arguments = match.group(1).strip(), match.group(2).strip()
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            unparsed.append(UnparsedToolCall(raw_text=match.group(0), error=f"Invalid JSON: {exc}"))
            continue
        function = ToolCall.FunctionBody(name=_tool_name(tool_id), arguments=arguments)
        calls.append(ToolCall(function=function, id=tool_id or None))
    return calls, unparsed


def _system_index(messages: list[Message]) -> int:
    """Where Kimi's template puts the system message: first, or after a leading
    ``tool_declare``."""
    return 1 if messages and messages[0]["role"] == "tool_declare" else 0


class KimiK2Renderer(FramedEncoding, Renderer):
    """Kimi K2 renderer; ``strip_thinking_from_history=False`` keeps every turn's reasoning."""

    DEFAULT_SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT
    # The reference calls tokenizer.encode(text) with its defaults, not add_special_tokens=False.
    _encode_adds_special_tokens = True

    # Streaming parse: a truncated reply still ends in a Message parsed into parts.
    supports_streaming = True
    _parse_response_for_streaming = parse_even_if_truncated

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True):
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history

    # -- the default system message ---------------------------------------------------------

    def _with_system_message(self, messages: list[Message]) -> list[Message]:
        """The conversation with the default system message where Kimi's template puts it:
        first, or right after a leading ``tool_declare``; unchanged if a system message is
        already there (then ``messages`` itself, so applying it twice changes nothing)."""
        at = _system_index(messages)
        if at < len(messages) and messages[at]["role"] == "system":
            return messages
        default = Message(role="system", content=self.DEFAULT_SYSTEM_PROMPT)
        return [*messages[:at], default, *messages[at:]]

    # -- rendering --------------------------------------------------------------------------

    def _header(self, message: Message) -> str:
        role = message["role"]
        fixed = _FIXED_HEADERS.get(role)
        if fixed is not None:
            return fixed
        if role != "tool":
            return f"<|im_system|>{role}<|im_middle|>"
        name = message.get("name")
        if not name:
            warnings.warn(
                "Tool message missing 'name' field. Using 'tool' as fallback. Consider setting "
                "'name' to match the tool function name for better context.",
                UserWarning,
                stacklevel=5,
            )
            name = role
        call_id = message.get("tool_call_id", "")
        if not call_id:
            warnings.warn(
                "Tool message missing 'tool_call_id' field. KimiK2Renderer requires "
                "'tool_call_id' to render tool results correctly. The value should match "
                "ToolCall.id from the assistant's tool_calls.",
                UserWarning,
                stacklevel=5,
            )
        return f"<|im_system|>{name}<|im_middle|>## Return of {call_id}\n"

    def _assistant_ids(
        self, message: Message, ctx: RenderContext, frames: dict | None
    ) -> list[int]:
        """``<think>{reasoning}</think>{text}``, then the tool-call section if any, then
        ``<|im_end|>``: encoded as frames of special tokens around the texts
        (``framing.py``), which is the encode of the whole text."""
        content = message["content"]
        if isinstance(content, str):
            thinking, text = "", content
        else:
            thinking = "".join(p["thinking"] for p in content if p["type"] == "thinking")
            text = "".join(p["text"] for p in content if p["type"] == "text")
        if not (ctx.in_last_assistant_turn or not self.strip_thinking_from_history):
            thinking = ""
        calls = message.get("tool_calls")
        if not calls:
            if not thinking:  # the common turn: one text in one frame
                return self._framed(frames, "<think></think>", text, "<|im_end|>")
            return self._framed(frames, "<think>", thinking, "</think>", text, "<|im_end|>")
        parts = ["<think>", thinking, "</think>", text]
        frame = "<|tool_calls_section_begin|><|tool_call_begin|>"
        for index, call in enumerate(calls):
            call_id = call.id or f"functions.{call.function.name}:{index}"
            parts += [frame, call_id, "<|tool_call_argument_begin|>", call.function.arguments]
            frame = "<|tool_call_end|><|tool_call_begin|>"
        parts.append("<|tool_call_end|><|tool_calls_section_end|><|im_end|>")
        return self._framed(frames, *parts)

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        frames = self._frame_ids()
        fixed = _FIXED_HEADERS.get(role)
        if fixed is None:  # a tool result's (it names the call) or another role's
            header = text_chunk(self._encode(self._header(message)))
        else:
            header = text_chunk(self._fixed_ids(frames, fixed))
        if role == "assistant":
            return RenderedMessage([text_chunk(self._assistant_ids(message, ctx, frames))], header)
        content = message["content"]
        if isinstance(content, str) or (len(content) == 1 and content[0]["type"] == "text"):
            text = ensure_text(content)
            if role == "system":  # recurs across a dataset: memoised
                output = self._encode_fixed(text + "<|im_end|>")
            else:
                output = self._framed(frames, "", text, "<|im_end|>")
            return RenderedMessage([text_chunk(output)], header)
        end = TextPart(type="text", text="<|im_end|>")
        return RenderedMessage(self._encode_parts([*content, end]), header)

    def _encode_parts(self, parts: list[ContentPart]) -> list[tinker.ModelInputChunk]:
        """Chunks of a non-assistant message given as several parts (K2.5 renders them)."""
        raise NotImplementedError(
            "Multipart/Image content encoding is not supported for Kimi K2 renderer"
        )

    def _last_assistant_turn_start_index(self, messages: list[Message]) -> int:
        """After the last assistant message that called no tool: Kimi's template keeps the
        reasoning of everything from there, so a turn spans a whole assistant/tool exchange."""
        for index in range(len(messages) - 1, -1, -1):
            if messages[index]["role"] == "assistant" and not messages[index].get("tool_calls"):
                return index + 1
        return 0

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        return super().build_generation_prompt(self._with_system_message(messages), role, prefill)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        return super().build_supervised_example(self._with_system_message(messages), train_on_what)

    def _supervised_conversation(
        self, messages: list[Message]
    ) -> tuple[list[Message], list[int] | None]:
        """The conversation with the default system message (index -1, as a BOS would be)
        where it is inserted; every other index points into the caller's ``messages``."""
        ensured = self._with_system_message(messages)
        if ensured is messages:
            return messages, None
        at = _system_index(messages)
        return ensured, [*range(at), -1, *range(at, len(messages))]

    def build_supervised_examples(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_TURN,
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        """One example per user turn: each ends where the next user message starts. The last
        message/turn modes give the one example of the whole conversation; ALL_ASSISTANT_MESSAGES
        trains each turn as its last turn; any other mode is applied to every turn (with a
        warning, as that rarely means what it says)."""
        train_on_what = TrainOnWhat(train_on_what)
        if train_on_what in (TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.LAST_ASSISTANT_TURN):
            return [self.build_supervised_example(messages, train_on_what)]
        if train_on_what != TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            warnings.warn(
                "WARNING: Using train_on_what=ALL_MESSAGES/ALL_TOKENS/ALL_USER_AND_SYSTEM_MESSAGES/"
                "CUSTOMIZED with a renderer that does not satisfy the extension property "
                "(has_extension_property=False). The behavior is we apply the same "
                "`train_on_what` to all turns. This may not be the desired behavior.",
                UserWarning,
                stacklevel=2,
            )
        per_turn = (
            TrainOnWhat.LAST_ASSISTANT_TURN
            if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES
            else train_on_what
        )
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        return [
            self.build_supervised_example(messages[:end], per_turn)
            for end in [*users[1:], len(messages)]
        ]

    # -- sampling ---------------------------------------------------------------------------

    @property
    def _end_message_token(self) -> int:
        ids = self._encode("<|im_end|>")
        if len(ids) != 1:
            raise RendererError(f"Expected single token for <|im_end|>, got {len(ids)}")
        return ids[0]

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Content up to ``<|im_end|>``, split into think blocks and text; the first tool-call
        section becomes tool calls (text after it is dropped), and a tool block left open is
        reported as an unterminated UnparsedToolCall. A reply without the stop token is
        returned as decoded, MALFORMED."""
        message, termination = parse_response_for_stop_token(
            self._normalize_response_tokens(response), self.tokenizer, self._end_message_token
        )
        if not termination.is_clean:
            return message, termination
        content = str(message["content"])
        text, unparsed = content, []
        section = _SECTION.search(content)
        if section:
            text = content[: section.start()]
            body = section.group(1) if section.group(1) is not None else section.group(2)
            calls, unparsed = _parse_section(body)
            if calls:
                message["tool_calls"] = calls
        for open_marker, close_marker in _BLOCK_MARKERS:
            dangling = detect_unterminated_tool_block(content, open_marker, close_marker)
            if dangling is not None:
                unparsed = [*unparsed, dangling]
                break
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        parts: list[ContentPart] | None = parse_think_blocks(text)
        message["content"] = parts if parts is not None else text
        return message, termination

    def to_openai_message(self, message: Message) -> dict:
        """Reasoning in ``reasoning_content``, the field Kimi K2's chat template reads."""
        return openai_message_with_reasoning(message)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A ``tool_declare`` message (the OpenAI-style tool list, see :meth:`_declare_tools`)
        when there are tools, then the system message (the default one without
        ``system_prompt``): Kimi's templates put the declaration first."""
        prefix: list[Message] = []
        if tools:
            payload = [{"type": "function", "function": tool} for tool in tools]
            prefix.append(Message(role="tool_declare", content=self._declare_tools(payload)))
        prefix.append(Message(role="system", content=system_prompt or self.DEFAULT_SYSTEM_PROMPT))
        return prefix

    def _declare_tools(self, payload: list[dict]) -> str:
        """The ``tool_declare`` text of OpenAI-style tools: compact JSON, keys sorted as Kimi
        K2's own template writes them."""
        return json.dumps(payload, separators=(",", ":"), sort_keys=True)
