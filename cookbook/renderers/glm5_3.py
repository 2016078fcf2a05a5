"""GLM-5.3: ``glm5_3_max_reasoning`` (the template's default), ``glm5_3_high_reasoning``,
``glm5_3_low_reasoning``.

Token for token as the reference's ``Glm5_3Renderer`` family (text content)::

    [gMASK]<sop><|system|>Reasoning Effort: Max<|system|>{system}<|user|>{question}
    <|assistant|><think>{reasoning}</think>{answer}<|user|>...

There is no end-of-message token: a turn ends with the next role token, ``<|user|>`` after a
reply and ``<|observation|>`` after tool calls (the model's eos tokens). So that every trained
turn learns to stop, an assistant message owns its terminator as output (the next message drops
that role token from its header) and the last one gets it as ``stop_overlap``. Thinking cannot
be disabled: every prompt ends in ``<|assistant|><think>``, and that ``<think>`` sits in the
(untrained) header of every assistant message. Reasoning is kept in history unless
``strip_thinking_from_history`` (the template's ``clear_thinking``) empties it up to the last
user message. Tool calls are ``<tool_call>{name}<arg_key>k</arg_key><arg_value>v</arg_value>
</tool_call>`` (strings raw, other values JSON); consecutive tool results share one
``<|observation|>`` and are put in tool-call order when their ids say so unambiguously.
"""

from __future__ import annotations

import json
import re

import numpy as np
import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.base import Renderer, openai_message_with_reasoning
from cookbook.renderers.content import thinking_and_text
from cookbook.renderers.parsing import parse_content_blocks
from cookbook.renderers.types import (
    Content,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer

_TOOL_CALL = re.compile(
    r"^\s*<tool_call>\s*(?P<name>[\w\-\.]+)\s*(?P<body>.*?)\s*</tool_call>\s*$", re.DOTALL
)
_ARG_PAIR = re.compile(
    r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>(?P<value>.*?)</arg_value>", re.DOTALL
)
_THINK_PREFILL = "<think>"
# The leading newline is content: the template writes "<|system|>\n# Tools ...".
_TOOLS_SYSTEM = """
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tool_lines}</tools>

For each function call, output the function name and arguments within the following XML format:
<tool_call>{{function-name}}<arg_key>{{arg-key-1}}</arg_key><arg_value>{{arg-value-1}}</arg_value><arg_key>{{arg-key-2}}</arg_key><arg_value>{{arg-value-2}}</arg_value>...</tool_call>"""


def _arg_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def format_tool_call(call: ToolCall) -> str:
    arguments = json.loads(call.function.arguments) if call.function.arguments else {}
    pairs = "".join(
        f"<arg_key>{key}</arg_key><arg_value>{_arg_value(value)}</arg_value>"
        for key, value in arguments.items()
    )
    return f"<tool_call>{call.function.name}{pairs}</tool_call>"


def parse_tool_call(raw_text: str) -> ToolCall | UnparsedToolCall:
    """One ``<tool_call>`` block; values are JSON where they parse (so ``"3"`` reads as 3)."""
    match = _TOOL_CALL.match(raw_text)
    if not match:
        return UnparsedToolCall(raw_text=raw_text, error="Malformed GLM tool call")
    body = match.group("body")
    arguments: dict[str, object] = {}
    pos = 0
    for pair in _ARG_PAIR.finditer(body):
        if body[pos : pair.start()].strip():
            return UnparsedToolCall(
                raw_text=raw_text, error="Unexpected content between tool call arguments"
            )
        key = pair.group("key").strip()
        if not key:
            return UnparsedToolCall(raw_text=raw_text, error="Empty tool call argument key")
        try:
            arguments[key] = json.loads(pair.group("value"))
        except json.JSONDecodeError:
            arguments[key] = pair.group("value")
        pos = pair.end()
    if body[pos:].strip():
        return UnparsedToolCall(
            raw_text=raw_text, error="Unexpected trailing content inside tool call"
        )
    return ToolCall(
        function=ToolCall.FunctionBody(name=match.group("name"), arguments=json.dumps(arguments))
    )


def _sorted_block(block: list[int], messages: list[Message]) -> list[int]:
    """Indices of one run of tool results, in the calling message's tool-call order when every
    call and every result has a unique id and each result's id is a call's; else as given."""
    start = block[0]
    previous = messages[start - 1] if start > 0 else None
    calls = previous.get("tool_calls") if previous and previous["role"] == "assistant" else None
    if not calls:
        return block
    call_ids = [call.id for call in calls]
    result_ids = [messages[i].get("tool_call_id") for i in block]
    for ids in (call_ids, result_ids):
        if not all(ids) or len(set(ids)) != len(ids):
            return block
    if not set(result_ids) <= set(call_ids):
        return block
    by_id = dict(zip(result_ids, block, strict=True))
    return [by_id[call_id] for call_id in call_ids if call_id in by_id]


def tool_result_order(messages: list[Message]) -> list[int]:
    """The order the template renders ``messages`` in, as indices into them."""
    order: list[int] = []
    block: list[int] = []
    for idx, message in enumerate(messages):
        if message["role"] == "tool":
            block.append(idx)
            continue
        if block:
            order += _sorted_block(block, messages)
            block = []
        order.append(idx)
    if block:
        order += _sorted_block(block, messages)
    return order


class Glm5_3Renderer(Renderer):
    reasoning_effort = "Max"
    """What the always-present ``Reasoning Effort:`` system segment says."""

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = False):
        """``strip_thinking_from_history``: the template's ``clear_thinking`` (off by default:
        reasoning stays in every turn, which gives the extension property)."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history
        specials = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", "<|endoftext|>")
        self._role_ids = dict(
            zip(
                ("system", "user", "assistant", "tool", "eos"),
                map(self._special, specials),
                strict=True,
            )
        )
        self._think_ids = (self._special("<think>"), self._special("</think>"))

    def _special(self, literal: str) -> int:
        ids = self._encode(literal)
        if len(ids) != 1:
            raise RendererError(f"Expected single token for {literal}, got {ids}")
        return ids[0]

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    @property
    def _bos_tokens(self) -> list[int]:
        return self._encode(f"[gMASK]<sop><|system|>Reasoning Effort: {self.reasoning_effort}")

    def get_stop_sequences(self) -> list[int]:
        return [self._role_ids["user"], self._role_ids["tool"], self._role_ids["eos"]]

    # -- rendering ------------------------------------------------------------------------

    @staticmethod
    def _visible_text(content: Content) -> str:
        if isinstance(content, str):
            return content
        for part in content:
            if part["type"] != "text":
                raise RendererError(
                    f"GLM-5.3 renderer does not support {part['type']!r} content parts here"
                )
        return "".join(part["text"] for part in content)  # type: ignore[typeddict-item]

    @staticmethod
    def _reasoning_and_text(content: Content) -> tuple[str | None, str]:
        """Reasoning (None if the message has none) and visible text; string content is split
        on ``<think>``/``</think>`` as the template splits it."""
        if isinstance(content, str):
            if "</think>" not in content:
                return None, content
            return content.split("</think>")[0].split("<think>")[-1], content.split("</think>")[-1]
        reasoning, text = thinking_and_text(content, "GLM-5.3")
        return ("".join(reasoning) if reasoning else None), "".join(text)

    def _terminator(self, message: Message, next_message: Message | None) -> int | None:
        """The role token that ends this assistant turn, if the next message is one the model
        hands over to (else the token stays on the next message's header)."""
        expected = self._role_ids["tool" if message.get("tool_calls") else "user"]
        if next_message is None:
            return expected
        following = {"user": "user", "tool": "tool"}.get(next_message["role"])
        return expected if following and self._role_ids[following] == expected else None

    def _header_written_by_previous(self, ctx: RenderContext, message: Message) -> bool:
        previous = ctx.prev_message
        if previous is None or previous["role"] != "assistant":
            return False
        return self._terminator(previous, message) is not None

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        header = [self._role_ids[role]] if role in ("system", "user", "tool") else []
        trailing: list[int] = []
        stop_overlap = None
        if role == "system":
            text = self._visible_text(message["content"])
        elif role == "user":
            text = self._visible_text(message["content"])
            if self._header_written_by_previous(ctx, message):
                header = []
        elif role == "assistant":
            reasoning, visible = self._reasoning_and_text(message["content"])
            keep = not self.strip_thinking_from_history or ctx.idx > ctx.last_user_index
            text = f"<think>{reasoning if keep and reasoning is not None else ''}</think>"
            text += visible.strip() + "".join(map(format_tool_call, message.get("tool_calls", [])))
            # Sampling always prefills <think>: it belongs to the untrained header.
            header = [self._role_ids["assistant"], *self._encode(_THINK_PREFILL)]
            text = text.removeprefix(_THINK_PREFILL)
            terminator = self._terminator(message, ctx.next_message)
            if terminator is not None and ctx.is_last:
                stop_overlap = text_chunk([terminator])
            elif terminator is not None:
                trailing = [terminator]
        elif role == "tool":
            follows_tool = ctx.prev_message is not None and ctx.prev_message["role"] == "tool"
            if follows_tool or self._header_written_by_previous(ctx, message):
                header = []
            text = f"<tool_response>{self._visible_text(message['content'])}</tool_response>"
        else:
            raise RendererError(f"Unsupported role: {role}")
        # A system message recurs across a dataset: memoised.
        tokens = (self._encode_fixed if role == "system" else self._encode)(text) + trailing
        return RenderedMessage(
            header=text_chunk(header) if header else None,
            output=[text_chunk(tokens)] if tokens else [],
            stop_overlap=stop_overlap,
        )

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        """``<|assistant|><think>`` for an assistant turn, else just the role token."""
        if role not in ("system", "user", "assistant", "tool"):
            raise RendererError(f"Unsupported generation role: {role}")
        suffix = [self._role_ids[role]]
        return suffix + self._encode(_THINK_PREFILL) if role == "assistant" else suffix

    # -- tool results in tool-call order ----------------------------------------------------

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        ordered = [messages[i] for i in tool_result_order(messages)]
        return super().build_generation_prompt(ordered, role, prefill)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        ordered = [messages[i] for i in tool_result_order(messages)]
        return super().build_supervised_example(ordered, train_on_what)

    def _supervised_conversation(self, messages: list[Message]) -> tuple[list[Message], list[int]]:
        """The conversation in rendered (tool-call) order, each message indexing the
        caller's ``messages``."""
        order = tool_result_order(messages)
        return [messages[i] for i in order], order

    # -- parsing ----------------------------------------------------------------------------

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Put back the prefilled ``<think>``, split at the stop token (``<|endoftext|>`` is EOS,
        the role tokens STOP_SEQUENCE, none MALFORMED), read reasoning and GLM tool calls."""
        think_open, think_close = self._think_ids
        if response and response[0] != think_open and think_close in response:
            response = [think_open, *response]
        stops = set(self.get_stop_sequences())
        positions = [i for i, token in enumerate(response) if token in stops]
        if not positions:
            content = str(self.tokenizer.decode(response))
            return Message(role="assistant", content=content), ParseTermination.MALFORMED
        if len(positions) > 1:
            raise RendererError(
                "When parsing response, expected to split into 1 or 2 pieces using stop tokens, "
                f"but got {len(positions)}. You probably are using the wrong stop tokens when "
                "sampling"
            )
        stop = positions[0]
        termination = (
            ParseTermination.EOS
            if response[stop] == self._role_ids["eos"]
            else ParseTermination.STOP_SEQUENCE
        )
        content = str(self.tokenizer.decode(response[:stop]))
        message = Message(role="assistant", content=content)
        blocks = parse_content_blocks(content)
        if blocks is not None:
            parts, results = blocks
            message["content"] = parts
            calls = [r for r in results if isinstance(r, ToolCall)]
            unparsed = []
            for result in results:
                if isinstance(result, UnparsedToolCall):
                    parsed = parse_tool_call(result.raw_text)
                    (calls if isinstance(parsed, ToolCall) else unparsed).append(parsed)
            if calls:
                message["tool_calls"] = calls
            if unparsed:
                message["unparsed_tool_calls"] = unparsed
        return message, termination

    # -- OpenAI format and tools ------------------------------------------------------------

    def to_openai_message(self, message: Message) -> dict:
        """Reasoning in ``reasoning_content`` and arguments as a mapping, as the template reads
        them; other than text and thinking, no content part is accepted."""
        if not isinstance(message["content"], str):
            self._reasoning_and_text(message["content"])  # refuses other parts
        return openai_message_with_reasoning(
            message, lambda arguments: json.loads(arguments) if arguments else {}
        )

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """The tools declaration as its own system message (the template puts it before the
        conversation's system message), then ``system_prompt``. Tools with ``defer_loading``
        are left out; ``strict`` and ``defer_loading`` are never written."""
        messages: list[Message] = []
        if tools:
            lines = "".join(
                json.dumps(
                    {k: v for k, v in tool.items() if k not in ("defer_loading", "strict")},
                    ensure_ascii=False,
                )
                + "\n"
                for tool in tools
                if not dict(tool).get("defer_loading")
            )
            messages.append(Message(role="system", content=_TOOLS_SYSTEM.format(tool_lines=lines)))
        if system_prompt:
            messages.append(Message(role="system", content=system_prompt))
        return messages


class Glm5_3HighReasoningRenderer(Glm5_3Renderer):
    reasoning_effort = "High"


class Glm5_3LowReasoningRenderer(Glm5_3Renderer):
    """Low effort: the nearest to a non-thinking mode, which GLM-5.3's template lacks."""

    reasoning_effort = "Low"
