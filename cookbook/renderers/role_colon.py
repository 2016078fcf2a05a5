"""Plain ``Role: content`` transcripts for base models, as the reference's ``RoleColonRenderer``.

    System: {content}\\n\\nUser: {content}\\n\\nAssistant: {content}\\n\\nUser:

Base models have no chat special tokens, so a turn ends where the next ``User:`` begins: the stop
sequence is the *string* ``"\\n\\nUser:"``. Its ``"\\n\\n"`` closes every message; the ``"User:"``
after the final assistant message is a stop_overlap, trained with that message, so the model
learns to emit the whole stop string. This is the R1-Zero style format the reference recommends
for every base model (Qwen3.5-9B-Base, Llama-3.1-8B, ...).
"""

from __future__ import annotations

import logging

from cookbook.renderers.base import Renderer
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    ensure_text,
    text_chunk,
)

logger = logging.getLogger(__name__)

# The framing around content; parse_response undoes exactly what render_message adds.
_CONTENT_PREFIX = " "
_CONTENT_SUFFIX = "\n\n"
STOP_SEQUENCE = "\n\nUser:"
_STOP_OVERLAP = "User:"
# Non-assistant messages get a stop_overlap too; the base assembly appends it when such a
# message is last (a conversation ending on a user turn), so the reference's placeholder text is
# part of the tokens and is kept verbatim.
_UNUSED_OVERLAP = "<UNUSED>"


class RoleColonRenderer(Renderer):
    @property
    def has_extension_property(self) -> bool:
        # History is rendered exactly as it was generated; nothing is stripped or re-framed.
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        output = _CONTENT_PREFIX + ensure_text(message["content"]) + _CONTENT_SUFFIX
        overlap = _STOP_OVERLAP if role == "assistant" else _UNUSED_OVERLAP
        # A system prompt repeats across conversations: memoised (see Renderer._encode_fixed).
        encode = self._encode_fixed if role == "system" else self._encode
        return RenderedMessage(
            header=text_chunk(self._encode_fixed(role.capitalize() + ":")),
            output=[text_chunk(encode(output))],
            stop_overlap=text_chunk(self._encode_fixed(overlap)),
        )

    @property
    def _bos_tokens(self) -> list[int]:
        # Whatever BOS the tokenizer declares; Qwen3.5 declares none, Llama 3 <|begin_of_text|>.
        bos = self.tokenizer.bos_token
        return [] if bos is None else self._encode(bos)

    def get_stop_sequences(self) -> list[str]:
        return [STOP_SEQUENCE]

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """Content before the first ``"\\n\\nUser:"``, framing removed.

        STOP_SEQUENCE: exactly one delimiter and no EOS after it. EOS: a trailing EOS token and
        no delimiter - a base model that simply ended its answer, which is a clean end on a
        single-turn prompt. MALFORMED: neither (truncated), a delimiter followed by EOS (the
        sampler should have stopped at the delimiter), or several delimiters (the model went
        on to write the user's turn). The content is the best-effort first piece in every case.
        """
        eos = self.tokenizer.eos_token_id
        ended_with_eos = eos is not None and bool(response) and response[-1] == eos
        if ended_with_eos:
            response = response[:-1]
        text = str(self.tokenizer.decode(response))
        pieces = text.split(STOP_SEQUENCE)
        # removesuffix also applies after a split, so content that itself ends in "\n\n" loses
        # one "\n\n" - the reference does the same, and parity wins over the round trip here.
        content = pieces[0].removeprefix(_CONTENT_PREFIX).removesuffix(_CONTENT_SUFFIX)
        message = Message(role="assistant", content=content)
        delimiters = len(pieces) - 1
        if delimiters == 0:
            if ended_with_eos:
                return message, ParseTermination.EOS
            logger.debug("Response has neither a stop sequence nor EOS: %r", text)
            return message, ParseTermination.MALFORMED
        if delimiters == 1:
            if ended_with_eos:
                return message, ParseTermination.MALFORMED
            return message, ParseTermination.STOP_SEQUENCE
        logger.warning(
            "RoleColonRenderer.parse_response saw %d stop delimiters; returning MALFORMED. "
            "Full response:\n%s",
            delimiters,
            text,
        )
        return message, ParseTermination.MALFORMED
