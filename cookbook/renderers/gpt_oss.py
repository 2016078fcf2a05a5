"""gpt-oss in OpenAI's harmony format, with the semantics of ``tinker_cookbook.renderers.gpt_oss``.

Wire format: ``<|start|>{role}<|channel|>{channel}<|message|>{content}<|end|>``, with no
separator between messages. An assistant turn is written as consecutive harmony messages:

* reasoning on the ``analysis`` channel,
* text on ``final`` - or, when the turn calls tools, on ``commentary`` as a preamble,
* each tool call on ``commentary``, addressed ``to=functions.{name}``, JSON-constrained, ending
  in ``<|call|>`` (a stop token: the sampler hands control to the tool there).

The final message of a rendering ends with ``<|return|>`` (the other stop token); the same
message in history ends with ``<|end|>``. Reasoning is kept in history (the reference does not
drop it, unlike openai-harmony's renderer; the golden oracle records that disagreement).

The ``gpt_oss_*_reasoning`` variants prepend OpenAI's system prompt, which states the reasoning
effort and today's date, to every rendering; a caller's ``system`` message becomes a
``developer`` message with an ``# Instructions`` heading.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import tinker

from cookbook.exceptions import ConfigurationError, RendererError
from cookbook.renderers.base import Renderer, openai_message_with_reasoning
from cookbook.renderers.framing import FramedEncoding
from cookbook.renderers.gpt_oss_tools import TOOLS_ROUTING_INSTRUCTION, developer_text
from cookbook.renderers.parsing import UNTERMINATED_TOOL_BLOCK_ERROR
from cookbook.renderers.types import (
    ContentPart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_text,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer

SYSTEM_PROMPT_TEMPLATE = (
    "You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: {current_date}\n\n"
    "Reasoning: {reasoning_effort}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)
"""OpenAI's system prompt for gpt-oss, as the reference fills it in."""

INTERNAL_SYSTEM_ROLE = "_gptoss_internal_system"
"""Role of a message rendered as harmony's own ``system`` message; a caller's ``system`` role
becomes ``developer``. The built-in system prompt and the tool routing line use it."""

_WIRE_ROLES = {INTERNAL_SYSTEM_ROLE: "system", "system": "developer"}
# The header of each role render_message writes one for (a tool result writes its own).
_HEADERS = {
    role: f"<|start|>{_WIRE_ROLES.get(role, role)}"
    for role in ("user", "assistant", "system", INTERNAL_SYSTEM_ROLE)
}
_END_TOKENS = ("<|end|>", "<|call|>", "<|return|>")
_CHANNEL = re.compile(r"<\|channel\|>([^<\s]+)")
_RECIPIENT = re.compile(r"to=([^\s<]+)")
_TOOL_HEADER = "to=functions."


def _content_parts(message: Message) -> list[ContentPart]:
    content = message["content"]
    return [TextPart(type="text", text=content)] if isinstance(content, str) else content


class GptOssRenderer(FramedEncoding, Renderer):
    """Harmony renderer; ``use_system_prompt`` and ``reasoning_effort`` go together.

    ``current_date`` (``YYYY-MM-DD``) pins the date of the system prompt; left None it is the
    date of each rendering, as in the reference.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        use_system_prompt: bool = False,
        reasoning_effort: str | None = None,
        current_date: str | None = None,
    ):
        super().__init__(tokenizer)
        if use_system_prompt != (reasoning_effort is not None):
            raise ConfigurationError("Reasoning effort must be set iff using system prompt")
        self.use_system_prompt = use_system_prompt
        self.reasoning_effort = reasoning_effort
        self.current_date = current_date

    # -- rendering --------------------------------------------------------------------------

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        content = message["content"]
        encode = self._encode
        frames = self._frame_ids()
        if role == "assistant":
            if type(content) is str and not message.get("tool_calls"):
                # The common turn, decided without building content parts: an answer alone.
                ending = "<|return|>" if ctx.is_last else "<|end|>"
                output = self._framed(frames, "<|channel|>final<|message|>", content, ending)
            else:
                output = encode(self._assistant_body(message, ctx))
        elif role == "tool":
            return self._render_tool_result(message)
        elif role == "system":
            body = f"<|message|># Instructions\n\n{ensure_text(content)}\n\n<|end|>"
            output = self._encode_fixed(body)
        elif role == INTERNAL_SYSTEM_ROLE:
            # The built-in system prompt: the same text in every conversation of the day.
            output = self._encode_fixed(f"<|message|>{ensure_text(content)}<|end|>")
        else:
            output = self._framed(frames, "<|message|>", ensure_text(content), "<|end|>")
        fixed = _HEADERS.get(role)
        if fixed is None:  # a role of the caller's own, not memoised with the frames
            header = encode(f"<|start|>{_WIRE_ROLES.get(role, role)}")
        else:
            header = self._fixed_ids(frames, fixed)
        return RenderedMessage([text_chunk(output)], text_chunk(header))

    def _assistant_body(self, message: Message, ctx: RenderContext) -> str:
        """Everything after ``<|start|>assistant``: one harmony message per channel, each
        further one reopened with ``<|start|>assistant``."""
        parts = _content_parts(message)
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        thinking = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
        calls = message.get("tool_calls") or []
        body = ""
        if thinking:
            body += f"<|channel|>analysis<|message|>{thinking}<|end|><|start|>assistant"
        if not calls:
            ending = "<|return|>" if ctx.is_last else "<|end|>"
            return f"{body}<|channel|>final<|message|>{text}{ending}"
        if text:
            body += f"<|channel|>commentary<|message|>{text}<|end|><|start|>assistant"
        return body + "<|start|>assistant".join(
            f" to=functions.{call.function.name}<|channel|>commentary <|constrain|>json"
            f"<|message|>{call.function.arguments}<|call|>"
            for call in calls
        )

    def _render_tool_result(self, message: Message) -> RenderedMessage:
        """``<|start|>functions.{name} to=assistant<|channel|>commentary<|message|>...``.

        The tool is named by the message's ``name``: the renderer sees one message at a time
        and cannot look the call id up. Without it the result goes to ``functions.unknown``.
        """
        name = message.get("name", "")
        if not name:
            warnings.warn(
                "Tool message missing 'name' field. GptOssRenderer requires the 'name' field "
                "to render tool results correctly. Add 'name' to your tool messages: "
                "{'role': 'tool', 'name': 'function_name', 'content': '...', "
                "'tool_call_id': '...'}",
                UserWarning,
                stacklevel=4,
            )
            name = "unknown"
        if not name.startswith("functions."):
            name = f"functions.{name}"
        body = f"<|channel|>commentary<|message|>{ensure_text(message['content'])}<|end|>"
        header = self._encode(f"<|start|>{name} to=assistant")
        return RenderedMessage([text_chunk(self._encode(body))], text_chunk(header))

    # -- the built-in system prompt ---------------------------------------------------------

    def _system_prompt(self) -> Message | None:
        if not self.use_system_prompt:
            return None
        date = self.current_date
        if date is None:
            date = datetime.now().strftime("%Y-%m-%d")
        content = SYSTEM_PROMPT_TEMPLATE.format(
            current_date=date, reasoning_effort=self.reasoning_effort
        )
        return Message(role=INTERNAL_SYSTEM_ROLE, content=content)

    def _with_system_prompt(self, messages: list[Message]) -> list[Message]:
        system = self._system_prompt()
        return [system, *messages] if system else list(messages)

    def _warn_if_user_system_message(self, messages: list[Message]) -> None:
        if self.use_system_prompt and messages and messages[0]["role"] == "system":
            warnings.warn(
                "use_system_prompt=True but messages already start with a system message. "
                "The built-in system prompt will be prepended, resulting in two system "
                "messages. Either set use_system_prompt=False or remove the system message "
                "from your messages.",
                UserWarning,
                stacklevel=3,
            )

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        self._warn_if_user_system_message(messages)
        return super().build_generation_prompt(self._with_system_prompt(messages), role, prefill)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        self._warn_if_user_system_message(messages)
        return super().build_supervised_example(messages, train_on_what)

    def _supervised_conversation(
        self, messages: list[Message]
    ) -> tuple[list[Message], Sequence[int] | None]:
        """The rendering with the system prompt; its messages carry index -1, like a BOS, so
        every other index still points into the caller's ``messages``."""
        if not self.use_system_prompt:
            return messages, None
        return self._with_system_prompt(messages), range(-1, len(messages))

    def _train_after_the_generation_prompt(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat,
        model_input: tinker.ModelInput,
        weights: np.ndarray,
    ) -> np.ndarray:
        """As the reference: its check is handed the conversation with the system prompt
        already in it, and ``build_generation_prompt`` prepends another, so with a system prompt
        the prompt is never a prefix and the weights (and their int64 dtype) stay as rendered.
        They are the same values either way: every header, the prompt's only other part, has
        weight 0 outside ALL_TOKENS."""
        if self.use_system_prompt:
            messages = self._with_system_prompt(messages)
        return super()._train_after_the_generation_prompt(
            messages, train_on_what, model_input, weights
        )

    # -- sampling ---------------------------------------------------------------------------

    def _special(self, literal: str) -> int:
        ids = self._encode(literal)
        if len(ids) != 1:
            raise RendererError(f"Expected single token for {literal}, got {len(ids)}")
        return ids[0]

    def get_stop_sequences(self) -> list[int]:
        """``<|return|>`` ends an answer, ``<|call|>`` a tool call."""
        return [self._special("<|return|>"), self._special("<|call|>")]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Split a reply at its first stop token into channels: analysis -> ThinkingPart,
        final/commentary -> TextPart, ``to=functions.*`` -> ToolCall (UnparsedToolCall if its
        arguments are not JSON). No stop token is MALFORMED; two of one kind is an error."""
        return_id, call_id = self.get_stop_sequences()
        counts = {"<|call|>": response.count(call_id), "<|return|>": response.count(return_id)}
        if not any(counts.values()):
            content = str(self.tokenizer.decode(response))
            return Message(role="assistant", content=content), ParseTermination.MALFORMED
        for literal, count in counts.items():
            if count > 1:
                raise RendererError(
                    f"When parsing response, expected at most 1 {literal} token, but got "
                    f"{count}. You probably are using the wrong stop tokens when sampling"
                )
        stop = min(response.index(t) for t in (return_id, call_id) if t in response)
        text = str(self.tokenizer.decode(response[:stop]))
        parts, calls, unparsed = parse_harmony_reply(text)
        message = Message(role="assistant", content=parts or text)
        if calls:
            message["tool_calls"] = calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        return message, ParseTermination.STOP_SEQUENCE

    def to_openai_message(self, message: Message) -> dict:
        """Reasoning goes to ``reasoning_content``, as the analysis channel maps in OpenAI's API."""
        return openai_message_with_reasoning(message)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A harmony system message routing calls to ``functions`` (only with tools), then a
        developer message with the instructions and the tools' TypeScript definitions."""
        prefix: list[Message] = []
        if tools:
            prefix.append(Message(role=INTERNAL_SYSTEM_ROLE, content=TOOLS_ROUTING_INSTRUCTION))
        text = developer_text(tools, system_prompt)
        if text:
            prefix.append(Message(role="developer", content=text))
        return prefix


def split_harmony_messages(text: str) -> list[dict[str, str | None]]:
    """Harmony messages in decoded text: header fields, body and raw text of each.

    A message is found by its ``<|message|>``; its header runs back to the ``<|start|>`` before
    it (or to where the previous message ended: a reply's first header follows a prompt that
    already wrote ``<|start|>assistant``), its body up to the first end token, or the end of
    the text when the reply was cut off.
    """
    messages: list[dict[str, str | None]] = []
    pos = 0
    while (body_marker := text.find("<|message|>", pos)) != -1:
        start = text.rfind("<|start|>", pos, body_marker)
        start = pos if start == -1 else start
        header = text[start:body_marker]
        body_start = body_marker + len("<|message|>")
        found = [(i, t) for t in _END_TOKENS if (i := text.find(t, body_start)) != -1]
        end, end_token = min(found) if found else (len(text), "")
        channel, recipient = _CHANNEL.search(header), _RECIPIENT.search(header)
        messages.append(
            {
                "channel": channel.group(1) if channel else None,
                "recipient": recipient.group(1) if recipient else None,
                "content": text[body_start:end],
                "raw_text": text[start : end + len(end_token)],
            }
        )
        pos = end + len(end_token)
    return messages


def parse_harmony_reply(
    text: str,
) -> tuple[list[ContentPart], list[ToolCall], list[UnparsedToolCall]]:
    """Content parts, tool calls and unparsable calls of a decoded reply.

    Whitespace-only messages are dropped; a channel other than analysis/final/commentary is
    ignored. A ``to=functions.`` header that yielded neither a call nor an unparsed call (its
    body empty, or never reached) is reported as an unterminated tool block rather than lost.
    """
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for message in split_harmony_messages(text):
        body = message["content"] or ""
        if not body.strip():
            continue
        recipient = message["recipient"]
        if recipient and recipient.startswith("functions."):
            try:
                json.loads(body)
            except json.JSONDecodeError as exc:
                raw = message["raw_text"] or ""
                unparsed.append(UnparsedToolCall(raw_text=raw, error=f"Invalid JSON: {exc}"))
            else:
                name = recipient.split("functions.", 1)[1]
                function = ToolCall.FunctionBody(name=name, arguments=body.strip())
                calls.append(ToolCall(function=function, id=None))
        elif message["channel"] == "analysis":
            parts.append(ThinkingPart(type="thinking", thinking=body))
        elif message["channel"] in ("final", "commentary"):
            parts.append(TextPart(type="text", text=body))
    if text.count(_TOOL_HEADER) > len(calls) + len(unparsed):
        start = text.rfind("<|start|>")
        unparsed.append(
            UnparsedToolCall(
                raw_text=text[start:] if start != -1 else text,
                error=f"{UNTERMINATED_TOOL_BLOCK_ERROR}: 'to=functions.' tool-call header "
                "without a parsable arguments payload",
            )
        )
    return parts, calls, unparsed
