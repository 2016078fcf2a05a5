"""Qwen3 text models: ``qwen3`` (thinking), ``qwen3_disable_thinking``, ``qwen3_instruct`` (2507).

Token for token as the reference's ``Qwen3Renderer`` family, which follows the Qwen3-8B chat
template (``enable_thinking`` true by default):

* the turn being produced - an assistant message after the last user message - is framed
  ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``, with an *empty* block when it did not
  reason; earlier assistant turns lose their reasoning (``strip_thinking_from_history``), which
  is why ``qwen3`` lacks the extension property unless history keeps it;
* message text is encoded with special-token parsing off, so ``<|im_end|>`` typed by a user
  cannot close a turn; the stop token is appended as its own chunk;
* tool calls are ``<tool_call>\\n{"name", "arguments"}\\n</tool_call>`` after the text.

``qwen3_disable_thinking`` prefills the empty block in the generation prompt (and refuses to
train a turn that reasoned after it); ``qwen3_instruct`` never writes the tag. The Qwen3-VL
renderers (``qwen3_vl``, ``qwen3_vl_instruct``) add images and frame nothing.
"""

from __future__ import annotations

import json

from cookbook.exceptions import RendererError
from cookbook.renderers.images import ImageProcessorProtocol, merge_text_parts, parts_to_chunks
from cookbook.renderers.parsing import has_thinking, remove_thinking, tool_call_payload
from cookbook.renderers.qwen import QwenRendererBase, frame_thinking
from cookbook.renderers.types import (
    Content,
    ImagePart,
    Message,
    RenderContext,
    RenderedMessage,
    Role,
    TextPart,
    ToolSpec,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer


class Qwen3Renderer(QwenRendererBase):
    def _frames_produced_turn(self, message: Message, ctx: RenderContext) -> bool:
        """Whether this message gets the template's produced-turn framing.

        The template frames turns after the last user message (``loop.index0 >
        ns.last_query_index``, which defaults to the final index without a user message, so a
        conversation without one is never framed). With history kept, every assistant turn is
        framed alike instead, so a turn renders the same wherever it sits (extension property).
        """
        if not self.frames_thinking or message["role"] != "assistant":
            return False
        if ctx.last_user_index < 0:
            return False
        return ctx.is_last or not self.strip_thinking_from_history

    def _content_text(self, message: Message, ctx: RenderContext, frames: bool) -> str:
        content: Content = message["content"]
        if isinstance(content, list):
            parts = content
            if self.strip_thinking_from_history and message["role"] == "assistant":
                parts = parts if ctx.is_last else remove_thinking(parts)
            pieces: list[str] = []
            after_block = False
            for part in parts:  # image parts are not rendered, as in the reference
                if part["type"] == "thinking":
                    thinking = part["thinking"]
                    pieces.append(
                        frame_thinking(thinking) if frames else f"<think>{thinking}</think>"
                    )
                    after_block = frames
                elif part["type"] == "text":
                    # The block already wrote the padding (the template's content.lstrip('\n')).
                    pieces.append(part["text"].lstrip("\n") if after_block else part["text"])
                    after_block = False
            return "".join(pieces)
        if frames and "</think>" in content:
            # An inline block is normalized the way the template normalizes it.
            reasoning, _, rest = content.partition("</think>")
            return frame_thinking(reasoning.rpartition("<think>")[2]) + rest.lstrip("\n")
        return content

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header = f"{self._newline_before(ctx.idx)}<|im_start|>{self._qwen_role(message)}\n"
        frames = self._frames_produced_turn(message, ctx)
        text = self._content_text(message, ctx, frames)
        # The separator before tool calls asks about the message's own text, not the block.
        has_text = bool(text)
        if frames and not has_thinking(message["content"]):
            text = frame_thinking("") + text.lstrip("\n")
        if message["role"] == "tool":
            text = f"<tool_response>\n{text}\n</tool_response>"
        if "tool_calls" in message:
            calls = "\n".join(
                f"<tool_call>\n{json.dumps(tool_call_payload(call))}\n</tool_call>"
                for call in message["tool_calls"]
            )
            text += ("\n" if has_text else "") + calls
        # A system prompt repeats across conversations: memoised (see Renderer._encode_fixed).
        if message["role"] == "system":
            ids = self._encode_fixed(text, split=True)
        else:
            ids = self._encode_split(text)
        return RenderedMessage(
            header=text_chunk(self._encode_fixed(header)),
            output=[text_chunk(ids), text_chunk([self._end_message_token])],
        )

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A system message declaring ``tools`` the way the Qwen3 template does."""
        tools_text = ""
        if tools:
            # ", " and ": " separators: what the template's tojson filter writes.
            lines = "\n".join(
                json.dumps({"type": "function", "function": tool}, separators=(", ", ": "))
                for tool in tools
            )
            tools_text = (
                "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n"
                f"<tools>\n{lines}\n</tools>\n\n"
                "For each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
            )
        content = f"{system_prompt}\n\n{tools_text}" if system_prompt else tools_text
        return [Message(role="system", content=content)]


class Qwen3DisableThinkingRenderer(Qwen3Renderer):
    """Qwen3 with ``enable_thinking=False``: the prompt ends in a closed, empty think block."""

    disables_thinking = True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """Refuse a produced turn in a conversation with no user message.

        Without a user message the template writes no empty block on that turn, while the
        generation prompt always does: the turn would be trained after a prompt it never gets.
        """
        if (
            message["role"] == "assistant"
            and ctx.is_last
            and message.get("content")
            and ctx.last_user_index < 0
        ):
            raise RendererError(
                "this conversation has no user message, so Qwen3's template writes no empty "
                "think block on the produced turn -- but the generation prompt always opens "
                "one. Add a user message, or render with thinking enabled."
            )
        return super().render_message(message, ctx)

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        header = f"{self._newline_before(ctx.idx)}<|im_start|>{role}\n"
        return self._encode(header + "<think>\n\n</think>\n\n")


class Qwen3InstructRenderer(Qwen3Renderer):
    """Qwen3 Instruct-2507: no think tag; a ThinkingPart is still written as ``<think>..``."""

    frames_thinking = False

    @property
    def has_extension_property(self) -> bool:
        # Nothing is framed, so a turn renders alike wherever it sits - unless a conversation
        # from another model brings reasoning that history then strips (the reference's note).
        return True


class Qwen3VLRenderer(Qwen3Renderer):
    """Qwen3-VL (``qwen3_vl``): Qwen3's turns with images, as the reference renders them.

    Unlike text Qwen3, nothing is framed: reasoning is written ``<think>{r}</think>`` where it
    sits (dropped from earlier assistant turns), the generation prompt is the bare header, and
    a tool call always follows a newline. Each image is ``<|vision_start|>`` + an image chunk +
    ``<|vision_end|>``; the text around images is joined with ``<|im_end|>`` and encoded with
    special tokens parsed, as the reference does.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: ImageProcessorProtocol | None = None,
        strip_thinking_from_history: bool = True,
        merge_text_chunks: bool = True,
    ):
        """``image_processor`` counts each image's tokens (required only for image content);
        ``merge_text_chunks`` joins adjacent text into one encode, as the chat template does."""
        super().__init__(tokenizer, strip_thinking_from_history)
        self.image_processor = image_processor
        self.merge_text_chunks = merge_text_chunks

    def _parts(self, message: Message, ctx: RenderContext) -> list[ImagePart | TextPart]:
        content = message["content"]
        if isinstance(content, str):
            return [TextPart(type="text", text=content)]
        strip = (
            self.strip_thinking_from_history and message["role"] == "assistant" and not ctx.is_last
        )
        parts: list[ImagePart | TextPart] = []
        for part in content:
            if part["type"] == "text":
                parts.append(part)
            elif part["type"] == "image":
                parts += [_text("<|vision_start|>"), part, _text("<|vision_end|>")]
            elif part["type"] == "thinking" and not strip:
                parts.append(_text(f"<think>{part['thinking']}</think>"))
        return parts

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role, content = message["role"], message["content"]
        header = f"{self._newline_before(ctx.idx)}<|im_start|>{self._qwen_role(message)}\n"
        encode = self._encode_fixed if role == "system" else self._encode
        if (
            isinstance(content, str)
            and self.merge_text_chunks
            and role != "tool"
            and "tool_calls" not in message
        ):
            # The common turn, without the general walk: its text and <|im_end|>, one encode.
            output = [text_chunk(encode(content + "<|im_end|>"))]
        else:
            output = parts_to_chunks(self._body_parts(message, ctx), encode, self.image_processor)
        return RenderedMessage(header=text_chunk(self._encode_fixed(header)), output=output)

    def _body_parts(self, message: Message, ctx: RenderContext) -> list[ImagePart | TextPart]:
        """The turn's parts with the tool framing and ``<|im_end|>``, merged if asked."""
        parts = self._parts(message, ctx)
        if message["role"] == "tool":
            parts = [_text("<tool_response>\n"), *parts, _text("\n</tool_response>")]
        if "tool_calls" in message:
            calls = "\n".join(
                f"<tool_call>\n{json.dumps(tool_call_payload(call))}\n</tool_call>"
                for call in message["tool_calls"]
            )
            parts.append(_text("\n" + calls))
        parts.append(_text("<|im_end|>"))
        return merge_text_parts(parts) if self.merge_text_chunks else parts


class Qwen3VLInstructRenderer(Qwen3VLRenderer):
    """Qwen3-VL Instruct (``qwen3_vl_instruct``): renders as ``qwen3_vl``; a parsed reply's
    ``<think>`` block is not unframed, since these models never write the tag."""

    frames_thinking = False


def _text(text: str) -> TextPart:
    return TextPart(type="text", text=text)
