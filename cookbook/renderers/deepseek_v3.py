"""DeepSeek V3.1: ``deepseekv3`` / ``deepseekv3_disable_thinking`` (non-thinking) and
``deepseekv3_thinking``, token for token as the reference's DeepSeek V3 renderers.

    <|begin_of_sentence|>{system}<|User|>{user}<|Assistant|></think>{answer}<|end_of_sentence|>

(written here with ASCII "|" and "_"; the real tokens use FULLWIDTH VERTICAL LINE, U+FF5C, and
LOWER ONE EIGHTH BLOCK, U+2581).

Roles are single special tokens; the first system message has no role token at all (a later one
is refused unless ``system_role_as_user``). An assistant message that follows a tool result
continues the same turn: no role token. Tool calls and results use DeepSeek's own special
tokens, not ``<tool_call>`` tags.

* Non-thinking (the default): ``</think>`` closes every assistant header, reasoning is dropped
  from the content, and history renders like the produced turn (extension property).
* Thinking: the generation prompt prefills ``<think>`` (except after a tool result, where the
  template stays in non-thinking mode); earlier assistant turns lose their reasoning and get
  ``</think>`` in the header, and a produced turn without reasoning gets ``<think></think>``.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cached_property

import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.base import (
    Renderer,
    openai_message_with_reasoning,
    parse_response_for_stop_token,
)
from cookbook.renderers.parsing import (
    detect_unterminated_tool_block,
    has_thinking,
    parse_think_blocks,
)
from cookbook.renderers.streaming import parse_even_if_truncated
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    ToolCall,
    ToolSpec,
    UnparsedToolCall,
    ensure_text,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer


def special(name: str) -> str:
    """A DeepSeek control token: ``name`` between ``<`` + U+FF5C and U+FF5C + ``>``."""
    return f"<\uff5c{name}\uff5c>"


BOS = special("begin\u2581of\u2581sentence")
EOS = special("end\u2581of\u2581sentence")
CALLS_BEGIN, CALLS_END = special("tool\u2581calls\u2581begin"), special("tool\u2581calls\u2581end")
CALL_BEGIN, CALL_END = special("tool\u2581call\u2581begin"), special("tool\u2581call\u2581end")
CALL_SEP = special("tool\u2581sep")
OUTPUT_BEGIN, OUTPUT_END = (
    special("tool\u2581output\u2581begin"),
    special("tool\u2581output\u2581end"),
)

_CALLS = re.compile(f"{CALLS_BEGIN}(.*?){CALLS_END}", re.DOTALL)
_CALL = re.compile(rf"{CALL_BEGIN}(\w+){CALL_SEP}(.*?){CALL_END}", re.DOTALL)
_CALLS_WITH_SPACE = re.compile(rf"\s*{CALLS_BEGIN}.*?{CALLS_END}", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)

_TOOLS_FORMAT = (
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{CALL_SEP}tool_call_arguments{CALL_END}{CALLS_END}\n\n"
    "Where:\n- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters "
    "Schema\n- For multiple tool calls, chain them directly without separators or spaces"
)


def warn_if_decoding_strips_spaces() -> None:
    """Every DeepSeek renderer warns at construction, as the reference's do: transformers 5.3.0
    strips spaces when decoding with DeepSeek's tokenizers, which breaks parse_response.
    The version is ``transformers.__version__``, as the reference reads it (transformers is
    loaded with any tokenizer): ``importlib.metadata.version`` parses the distribution's
    metadata on every call, ~0.8 ms, and the parity run builds ~500 DeepSeek renderers."""
    import transformers

    if transformers.__version__ == "5.3.0":
        warnings.warn(
            "transformers 5.3.0 strips spaces when decoding with the DeepSeek tokenizer "
            "(huggingface/transformers#44801); use another version.",
            stacklevel=3,
        )


def _follows_tool(ctx: RenderContext) -> bool:
    return ctx.prev_message is not None and ctx.prev_message["role"] == "tool"


class _DeepSeekV3BaseRenderer(Renderer):
    # Streaming parse: a truncated reply still ends in a Message parsed into parts.
    supports_streaming = True
    _parse_response_for_streaming = parse_even_if_truncated

    def __init__(
        self,
        tokenizer: Tokenizer,
        system_role_as_user: bool = False,
        strip_thinking_from_history: bool = True,
    ):
        """``system_role_as_user``: render system messages after the first as user turns
        (refused otherwise). ``strip_thinking_from_history``: drop reasoning from earlier
        assistant turns, as the template does; keep it (False) for the extension property."""
        super().__init__(tokenizer)
        self.system_role_as_user = system_role_as_user
        self.strip_thinking_from_history = strip_thinking_from_history
        warn_if_decoding_strips_spaces()

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    def _special_id(self, token: str) -> int:
        (token_id,) = self._encode(token)
        return token_id

    @property
    def _bos_tokens(self) -> list[int]:
        return [self._special_id(BOS)]

    @cached_property
    def _end_message_token(self) -> int:
        return self._special_id(EOS)

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def _assistant_text(self, message: Message, ctx: RenderContext) -> str:
        content = message["content"]
        if isinstance(content, str):
            return content  # reasoning is only stripped from structured content
        strip = (
            self.strip_thinking_from_history and not message.get("tool_calls") and not ctx.is_last
        )
        pieces = []
        for part in content:
            if part["type"] == "thinking" and not strip:
                pieces.append(f"<think>{part['thinking']}</think>")
            elif part["type"] == "text":
                pieces.append(part["text"])
        return "".join(pieces)

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        header: list[int] = []
        if role == "system":
            text = ensure_text(message["content"])
            if ctx.idx > 0:
                if not self.system_role_as_user:
                    raise RendererError(
                        "DeepSeek only supports system message at start. Use "
                        "system_role_as_user=True to convert later system messages to user role."
                    )
                header = [self._special_id(special("User"))]
        elif role == "user":
            header = [self._special_id(special("User"))]
            text = ensure_text(message["content"])
        elif role == "assistant":
            text = self._assistant_text(message, ctx)
            if not _follows_tool(ctx):  # after a tool result the same turn continues
                header = [self._special_id(special("Assistant"))]
        elif role == "tool":
            header = self._encode(OUTPUT_BEGIN)
            text = ensure_text(message["content"]) + OUTPUT_END
        else:
            raise RendererError(f"Unsupported role: {role}")
        if message.get("tool_calls"):
            calls = "".join(
                f"{CALL_BEGIN}{call.function.name}{CALL_SEP}{call.function.arguments}{CALL_END}"
                for call in message["tool_calls"]
            )
            text += f"{CALLS_BEGIN}{calls}{CALLS_END}"
        # A system message recurs across a dataset: memoised.
        tokens = (self._encode_fixed if role == "system" else self._encode)(text)
        # No end token for an empty assistant message: that is the generation prompt's header.
        if role == "assistant" and message["content"]:
            tokens.append(self._end_message_token)
        output: list[tinker.ModelInputChunk] = [text_chunk(tokens)]
        # The sampler rejects empty chunks, so a first system message has no header at all.
        if not header:
            return RenderedMessage(output=output)
        return RenderedMessage(header=text_chunk(header), output=output)

    # -- parsing --------------------------------------------------------------------------

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        return response

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Content up to the end token: tool calls parsed out of DeepSeek's call tokens (bad
        JSON and dangling blocks kept as ``unparsed_tool_calls``), reasoning split out."""
        response = self._normalize_response_tokens(response)
        message, termination = parse_response_for_stop_token(
            response, self.tokenizer, self._end_message_token
        )
        if not termination.is_clean:
            return message, termination
        content = str(message["content"])
        calls, unparsed = _parse_tool_calls(content)
        dangling = next(
            (
                found
                for opening, closing in ((CALLS_BEGIN, CALLS_END), (CALL_BEGIN, CALL_END))
                if (found := detect_unterminated_tool_block(content, opening, closing))
            ),
            None,
        )
        if dangling is not None:
            unparsed.append(dangling)
        if calls:
            message["tool_calls"] = calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        if calls or unparsed:
            content = _CALLS_WITH_SPACE.sub("", content).strip()
        parts = parse_think_blocks(content)
        message["content"] = content if parts is None else parts
        return message, termination

    def to_openai_message(self, message: Message) -> dict:
        return openai_message_with_reasoning(message)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A system message declaring ``tools`` in DeepSeek V3.1's format (non-thinking mode)."""
        tools_text = ""
        if tools:
            blocks = "\n".join(
                f"### {tool['name']}\nDescription: {tool['description']}\n\n"
                f"Parameters: {json.dumps(tool['parameters'])}"
                for tool in tools
            )
            tools_text = (
                f"\n\n## Tools\nYou have access to the following tools:\n\n{blocks}\n\n"
                + _TOOLS_FORMAT
            )
        return [Message(role="system", content=system_prompt + tools_text)]


def _parse_tool_calls(content: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    section = _CALLS.search(content)
    if not section:
        return calls, unparsed
    for match in _CALL.finditer(section.group(1)):
        name, arguments = match.group(1), match.group(2).strip()
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            unparsed.append(UnparsedToolCall(raw_text=match.group(0), error=f"Invalid JSON: {exc}"))
            continue
        calls.append(ToolCall(function=ToolCall.FunctionBody(name=name, arguments=arguments)))
    return calls, unparsed


class DeepSeekV3ThinkingRenderer(_DeepSeekV3BaseRenderer):
    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        rendered = super().render_message(message, ctx)
        is_assistant_turn = message["role"] == "assistant" and not _follows_tool(ctx)
        if is_assistant_turn and self.strip_thinking_from_history and not ctx.is_last:
            # History: past the thinking phase, as the template writes it.
            header = list(rendered.header.tokens) if rendered.header else []
            return RenderedMessage(
                header=text_chunk(header + self._encode("</think>")),
                output=rendered.output,
            )
        content = message.get("content", "")
        # A produced turn that did not reason gets the empty block the template writes (empty
        # content is the generation prompt's header, which keeps the open <think>).
        if is_assistant_turn and ctx.is_last and content and not has_thinking(content):
            first, *rest = rendered.output
            assert isinstance(first, tinker.EncodedTextChunk)
            empty_block = self._encode("<think></think>")
            return RenderedMessage(
                header=rendered.header,
                output=[text_chunk(empty_block + list(first.tokens)), *rest],
            )
        return rendered

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        """Prefill ``<think>`` (before any caller prefill), except after a tool result."""
        if messages and messages[-1]["role"] == "tool":
            return super().build_generation_prompt(messages, role, prefill)
        return super().build_generation_prompt(messages, role, "<think>" + (prefill or ""))

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Put back the prefilled ``<think>`` when the reply closes a block it did not open."""
        think = self.tokenizer.convert_tokens_to_ids("<think>")
        close = self.tokenizer.convert_tokens_to_ids("</think>")
        if response[:1] != [think] and close in response:
            return [think, *response]
        return response


class DeepSeekV3DisableThinkingRenderer(_DeepSeekV3BaseRenderer):
    @property
    def has_extension_property(self) -> bool:
        return True  # no reasoning is ever written, so none is stripped from history

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """Reasoning is dropped and ``</think>`` closes the header (weight 0), so the
        supervised prefix is exactly the generation prompt."""
        opens_turn = message["role"] == "assistant" and not _follows_tool(ctx)
        if opens_turn:
            content = message["content"]
            if isinstance(content, list):
                text = "".join(p["text"] for p in content if p["type"] == "text")
            else:
                text = _THINK_BLOCK.sub("", content)
            message = {**message, "content": text}
        rendered = super().render_message(message, ctx)
        if not opens_turn:
            return rendered
        header = list(rendered.header.tokens) if rendered.header else []
        return RenderedMessage(
            header=text_chunk(header + self._encode("</think>")),
            output=rendered.output,
        )
