"""Qwen3.5 (and Qwen3.6): ``qwen3_5``, ``qwen3_5_disable_thinking``, ``qwen3_5_preserve_thinking``.

Token for token as the reference's ``Qwen3_5Renderer`` family (vision-language models: images
are ``<|vision_start|>``, an image chunk, ``<|vision_end|>``, as in Qwen3-VL). Differences from
Qwen3, all from the Qwen3.5 chat template:

* message text is trimmed (``content|trim``) and encoded together with ``<|im_end|>``;
* an assistant turn after the last user message without reasoning gets an empty
  ``<think>\\n\\n</think>\\n\\n`` in its *header*; reasoning is written
  ``<think>\\n{r}\\n</think>\\n\\n`` and dropped from earlier turns unless preserved;
* the generation prompt prefills ``<think>\\n`` (or the closed empty block with thinking
  disabled); on the produced turn that prefill stays in the header and the rest of the header
  moves into the trained output, so supervised tokens start where sampling starts;
* consecutive tool results share one ``user`` turn; tool calls are XML,
  ``<function=name><parameter=p>value</parameter></function>`` inside ``<tool_call>``.

No Qwen3.5 renderer has the extension property, not even with thinking preserved: a turn that
did not reason is sampled after ``<think>\\n`` and continues with ``\\n``, which history writes
as part of the merged ``\\n\\n`` token of the closed empty block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.images import merge_text_parts, parts_to_chunks
from cookbook.renderers.parsing import UNTERMINATED_TOOL_BLOCK_ERROR, has_thinking
from cookbook.renderers.qwen import QwenRendererBase
from cookbook.renderers.types import (
    Content,
    ContentPart,
    ImagePart,
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
    text_chunk,
)
from cookbook.tokenizers import Tokenizer

_FUNCTION_BLOCK = re.compile(
    r"^\s*<tool_call>\s*<function=(?P<name>[^>\n]+)>\s*(?P<body>.*?)\s*</function>\s*"
    r"</tool_call>\s*$",
    re.DOTALL,
)
_PARAMETER_BLOCK = re.compile(
    r"<parameter=(?P<name>[^>\n]+)>\s*(?P<value>.*?)\s*</parameter>", re.DOTALL
)
_EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"

_TOOLS_INSTRUCTIONS = (
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
    "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\n"
    "that can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\n"
    "Reminder:\n- Function calls MUST follow the specified format: an inner "
    "<function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your "
    "function call in natural language BEFORE the function call, but NOT after\n- If there is "
    "no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)


def tools_block(declarations: str) -> str:
    """The ``# Tools`` section around the tool ``declarations``, with the call-format reminder
    (the same words in the Qwen3.5, Qwen3.6 and Nemotron 3 templates)."""
    return (
        "# Tools\n\nYou have access to the following functions:\n\n"
        f"<tools>\n{declarations}\n</tools>\n\n{_TOOLS_INSTRUCTIONS}"
    )


def _trim(content: Content) -> Content:
    """The template's ``content|trim``; on parts, thinking is skipped and text is trimmed from
    each end inward until a part keeps some text (or a non-text part stops it)."""
    if isinstance(content, str):
        return content.strip()
    parts = list(content)
    visible = [i for i, part in enumerate(parts) if part["type"] != "thinking"]
    for indices, strip in ((visible, str.lstrip), (visible[::-1], str.rstrip)):
        for i in indices:
            part = parts[i]
            if part["type"] != "text":
                break
            text = strip(part["text"])
            parts[i] = TextPart(type="text", text=text)
            if text:
                break
    return parts


def _format_argument(value: object) -> str:
    """``|tojson`` for mappings and sequences, ``|string`` (Python ``str``) for scalars."""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _format_tool_call(call: ToolCall, format_argument: Callable[[object], str]) -> str:
    arguments = json.loads(call.function.arguments) if call.function.arguments else {}
    lines = [f"<tool_call>\n<function={call.function.name}>"]
    lines += [
        f"<parameter={name}>\n{format_argument(value)}\n</parameter>"
        for name, value in arguments.items()
    ]
    lines.append("</function>\n</tool_call>")
    return "\n".join(lines)


def parse_tool_call_xml(raw_text: str) -> ToolCall | UnparsedToolCall:
    """One ``<tool_call><function=..>`` block; parameter values are JSON where they parse."""
    match = _FUNCTION_BLOCK.match(raw_text)
    if not match:
        return UnparsedToolCall(raw_text=raw_text, error="Malformed Qwen3.5 tool call XML")
    name, body = match.group("name").strip(), match.group("body")
    if not name:
        return UnparsedToolCall(raw_text=raw_text, error="Missing function name")
    arguments: dict[str, Any] = {}
    pos = 0
    for parameter in _PARAMETER_BLOCK.finditer(body):
        if body[pos : parameter.start()].strip():
            return UnparsedToolCall(
                raw_text=raw_text, error="Unexpected non-parameter content inside <function> block"
            )
        key, value = parameter.group("name").strip(), parameter.group("value").strip("\n")
        if not key:
            return UnparsedToolCall(raw_text=raw_text, error="Empty parameter name")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
        pos = parameter.end()
    if body[pos:].strip():
        return UnparsedToolCall(
            raw_text=raw_text, error="Unexpected trailing content inside <function> block"
        )
    return ToolCall(function=ToolCall.FunctionBody(name=name, arguments=json.dumps(arguments)))


class Qwen3_5Renderer(QwenRendererBase):
    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: Any = None,
        strip_thinking_from_history: bool = True,
    ):
        """``image_processor`` counts each image's tokens (required only for image content)."""
        super().__init__(tokenizer, strip_thinking_from_history)
        self.image_processor = image_processor

    @property
    def has_extension_property(self) -> bool:
        return False

    def _generation_suffix_str(self, role: Role, ctx: RenderContext) -> str:
        return f"{self._newline_before(ctx.idx)}<|im_start|>{role}\n<think>\n"

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        return self._encode(self._generation_suffix_str(role, ctx))

    # -- conversation-level rewrites of the template ----------------------------------------

    def _normalize_messages(self, messages: list[Message]) -> list[Message]:
        """The conversation as the template sees it (subclasses add or drop a system message).
        Must be idempotent: the supervised path renders the prompt again from its result."""
        return messages

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        return super().build_generation_prompt(self._normalize_messages(messages), role, prefill)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        # Normalized once, as the reference does: _supervised_conversation must not normalize
        # it again (not idempotent: a second empty leading system message would go too).
        normalized = _Normalized(self._normalize_messages(messages))
        return super().build_supervised_example(normalized, train_on_what)

    def _supervised_conversation(
        self, messages: list[Message]
    ) -> tuple[list[Message], list[int] | None]:
        """The normalized conversation, indexed into the caller's ``messages``: a synthetic
        system message gets index -1 (as a BOS would), a dropped one shifts the rest."""
        if isinstance(messages, _Normalized):  # from build_supervised_example
            return messages, None
        normalized = self._normalize_messages(messages)
        shift = len(messages) - len(normalized)  # +1 dropped, -1 inserted, 0 rewritten
        if shift == 0:
            return normalized, None
        return normalized, [
            -1 if shift < 0 and i == 0 else i + shift for i in range(len(normalized))
        ]

    # -- one message -----------------------------------------------------------------------

    def _trim_content(self, content: Content) -> Content:
        return _trim(content)

    def _format_thinking_text(self, thinking: str) -> str:
        return f"<think>\n{thinking}\n</think>\n\n"

    _tool_response_frame: tuple[str, str] = ("<tool_response>\n", "\n</tool_response>")
    """What a tool response's content goes between."""
    _image_frame: tuple[str, str] | None = ("<|vision_start|>", "<|vision_end|>")
    """What an image goes between; None for a subclass that renders no images."""

    def _tool_response_continuation_header(self) -> str:
        """Between consecutive tool responses: the run's user turn is still open, and the
        template writes a newline before the next ``<tool_response>``."""
        return "\n"

    def _header(self, message: Message, content: Content, ctx: RenderContext) -> str:
        is_tool = message["role"] == "tool"
        if is_tool and ctx.prev_message is not None and ctx.prev_message["role"] == "tool":
            return self._tool_response_continuation_header()
        header = f"{self._newline_before(ctx.idx)}<|im_start|>{self._qwen_role(message)}\n"
        if message["role"] == "assistant":
            header += self._assistant_header_suffix(message, content, ctx)
        return header

    def _assistant_header_suffix(
        self, message: Message, content: Content, ctx: RenderContext
    ) -> str:
        """The empty block of a turn after the last user message that did not reason."""
        if ctx.idx <= ctx.last_user_index:
            return ""
        return "" if has_thinking(content) else _EMPTY_THINK_BLOCK

    def _strips_thinking_for(self, message: Message, ctx: RenderContext) -> bool:
        """Every assistant turn but the last loses its reasoning (the reference keeps this
        over-stripping of turns after the last user message for its trained checkpoints)."""
        return (
            self.strip_thinking_from_history and message["role"] == "assistant" and not ctx.is_last
        )

    def _body(
        self, message: Message, content: Content, ctx: RenderContext
    ) -> list[ImagePart | TextPart]:
        """The turn's text with ``<|im_end|>``, images as ``<|vision_start|>``, the image and
        ``<|vision_end|>``; adjacent text merged, so a text-only turn is one encode."""
        strip = self._strips_thinking_for(message, ctx)
        parts: list[ImagePart | TextPart] = []
        for part in [TextPart(type="text", text=content)] if isinstance(content, str) else content:
            if part["type"] == "text":
                parts.append(part)
            elif part["type"] == "thinking":
                if not strip:
                    parts.append(_text(self._format_thinking_text(part["thinking"])))
            elif part["type"] == "image" and self._image_frame is not None:
                opening, closing = self._image_frame
                parts += [_text(opening), part, _text(closing)]
            else:
                raise RendererError(f"{type(self).__name__} cannot render {part['type']} parts")
        if message["role"] == "tool":
            opening, closing = self._tool_response_frame
            parts = [_text(opening), *parts, _text(closing)]
        if "tool_calls" in message:
            parts.append(_text(self._tool_calls_text(content, message["tool_calls"])))
        next_message = ctx.next_message
        if not (message["role"] == "tool" and next_message and next_message["role"] == "tool"):
            parts.append(_text("<|im_end|>"))  # a tool response followed by another leaves it open
        return merge_text_parts(parts)

    _format_tool_call_argument = staticmethod(_format_argument)

    def _tool_calls_text(self, content: Content, calls: list[ToolCall]) -> str:
        # A blank line separates the calls from visible text only (``if content|trim``).
        if isinstance(content, str):
            visible = bool(content.strip())
        else:
            visible = any(p["type"] == "text" and p["text"].strip() for p in content)
        return ("\n\n" if visible else "") + "\n".join(
            _format_tool_call(c, self._format_tool_call_argument) for c in calls
        )

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        content = self._trim_content(message["content"])
        header = self._header(message, content, ctx)
        # A system prompt repeats across conversations: memoised (see Renderer._encode_fixed).
        encode = self._encode_fixed if message["role"] == "system" else self._encode
        if isinstance(content, str) and message["role"] != "tool" and "tool_calls" not in message:
            # The common turn, the text and <|im_end|>, without the general walk of _body.
            output = [text_chunk(encode(content + "<|im_end|>"))]
        else:
            body = self._body(message, content, ctx)
            output = parts_to_chunks(body, encode, self.image_processor)
        if message["role"] == "assistant" and ctx.is_last:
            # The produced turn: what the generation prompt already wrote stays in the header,
            # the rest of the header is sampled, so it moves into the trained output.
            prefill = self._generation_suffix_str(self._qwen_role(message), ctx)
            if header.startswith(prefill):
                rest = header[len(prefill) :]
                if rest:
                    output.insert(0, text_chunk(self._encode_fixed(rest)))
                header = prefill
        return RenderedMessage(output, text_chunk(self._encode_fixed(header)))

    # -- parsing --------------------------------------------------------------------------

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Put back the prefilled ``<think>\\n`` when the reply closes a block it did not open."""
        prefix = self._encode("<think>\n")
        (close,) = self._encode("</think>")
        if response[: len(prefix)] != prefix and close in response:
            return prefix + response
        return response

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """As Qwen3, then: trimmed reasoning, the template's two newlines after ``</think>``
        removed, and ``<tool_call>`` blocks read as Qwen3.5 XML."""
        message, termination = super().parse_response(response)
        if not termination.is_clean:
            return message, termination
        content = message["content"]
        if isinstance(content, list):
            _strip_parsed_thinking(content)
        converted: list[ToolCall] = []
        remaining: list[UnparsedToolCall] = []
        for unparsed in message.get("unparsed_tool_calls", []):
            # JSON parsing failed on these; XML blocks are converted, others (and dangling
            # blocks, whose error says more than the XML one would) stay unparsed.
            if (
                unparsed.error.startswith(UNTERMINATED_TOOL_BLOCK_ERROR)
                or "<function=" not in unparsed.raw_text
            ):
                remaining.append(unparsed)
                continue
            parsed = parse_tool_call_xml(unparsed.raw_text)
            (converted if isinstance(parsed, ToolCall) else remaining).append(parsed)
        if converted:
            message["tool_calls"] = [*message.get("tool_calls", []), *converted]
        if remaining:
            message["unparsed_tool_calls"] = remaining
        else:
            message.pop("unparsed_tool_calls", None)
        return message, termination

    def _to_openai_tool_arguments(self, arguments: str) -> str | dict:
        return json.loads(arguments)  # the template iterates over arguments|items

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A system message declaring ``tools`` the way the Qwen3.5 template does."""
        if not tools:
            return [Message(role="system", content=system_prompt)]
        tools_text = tools_block("\n".join(json.dumps(tool) for tool in tools))
        content = f"{tools_text}\n\n{system_prompt}" if system_prompt else tools_text
        return [Message(role="system", content=content)]


class _Normalized(list):
    """A conversation ``_normalize_messages`` has reshaped already (a slice of it is not)."""


def _strip_parsed_thinking(parts: list[ContentPart]) -> None:
    """Trim reasoning and drop the ``\\n\\n`` the template puts between ``</think>`` and text."""
    seen_thinking = False
    for part in parts:
        if part["type"] == "thinking":
            part["thinking"] = part["thinking"].strip()
            seen_thinking = True
        elif seen_thinking and part["type"] == "text":
            if part["text"].startswith("\n\n"):
                part["text"] = part["text"][2:]
            return


class Qwen3_5DisableThinkingRenderer(Qwen3_5Renderer):
    """``enable_thinking=False``: the prompt ends in the closed empty block instead."""

    disables_thinking = True

    def _generation_suffix_str(self, role: Role, ctx: RenderContext) -> str:
        return f"{self._newline_before(ctx.idx)}<|im_start|>{role}\n{_EMPTY_THINK_BLOCK}"


def _text(text: str) -> TextPart:
    return TextPart(type="text", text=text)
