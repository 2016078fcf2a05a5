"""Llama 3 Instruct chat format, token for token as the reference's ``Llama3Renderer``.

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{content}<|eot_id|>...

Like the reference it adds no "Cutting Knowledge Date" system prompt (the HF template does) and
supports no tool calling: Llama 3's bare-JSON tool format cannot be told apart from content.
"""

from __future__ import annotations

from functools import cached_property

from cookbook.renderers.base import Renderer, parse_response_for_stop_token
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    ensure_text,
    text_chunk,
)


class Llama3Renderer(Renderer):
    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        content = message["content"]
        # Content and <|eot_id|> are encoded in one call, exactly as the reference does.
        output = (content if type(content) is str else ensure_text(content)) + "<|eot_id|>"
        # A system prompt and the headers repeat across conversations: memoised (see
        # Renderer._encode_fixed).
        encode = self._encode_fixed if role == "system" else self._encode
        header = self._encode_fixed(f"<|start_header_id|>{role}<|end_header_id|>\n\n")
        return RenderedMessage([text_chunk(encode(output))], text_chunk(header))

    @cached_property
    def _bos_tokens(self) -> list[int]:
        return self._encode("<|begin_of_text|>")

    @cached_property
    def _end_message_token(self) -> int:
        (token,) = self._encode("<|eot_id|>")
        return token

    def get_stop_sequences(self) -> list[int]:
        return [self._end_message_token]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        return parse_response_for_stop_token(response, self.tokenizer, self._end_message_token)
