"""Streaming response parsing, as ``tinker_cookbook.renderers.base`` does it.

``Renderer.parse_response_streaming(tokens)`` yields a :class:`StreamingMessageHeader`, then
text and thinking deltas as tokens arrive (a multi-byte character split across tokens waits
in :class:`Utf8TokenDecoder`; a ``<think>`` tag split across tokens is held back until it is
decided), and finally the complete :class:`Message` - the same one the batch parse gives,
except that a truncated response is still parsed into parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from cookbook.renderers.types import Message, ParseTermination

if TYPE_CHECKING:
    from cookbook.renderers.base import Renderer
    from cookbook.tokenizers import Tokenizer


@dataclass
class StreamingMessageHeader:
    """Start of a new message: who is speaking."""

    role: str
    name: str | None = None


@dataclass
class StreamingTextDelta:
    """New visible text since the previous delta (concatenate to rebuild the content)."""

    text: str
    content_index: int = 0
    """Index of the content block; it increments whenever the content type changes."""


@dataclass
class StreamingThinkingDelta:
    """New reasoning text since the previous delta."""

    thinking: str
    content_index: int = 0
    """Index of the content block; it increments whenever the content type changes."""


MessageDelta = Union[StreamingMessageHeader, StreamingTextDelta, StreamingThinkingDelta, Message]  # noqa: UP007 - the reference's alias, a runtime Union
"""What a streaming parse yields: a header, deltas, then the complete Message."""

_REPLACEMENT_CHAR = "\ufffd"


@dataclass
class Utf8TokenDecoder:
    """Incremental decoding that never emits half a multi-byte character.

    Tokenizers decode an incomplete UTF-8 sequence to U+FFFD instead of raising, so a decode
    ending in U+FFFD is treated as incomplete: the longest prefix that decodes cleanly is
    emitted and the trailing tokens wait for the next call.
    """

    tokenizer: Tokenizer
    _pending_tokens: list[int] = None  # type: ignore[assignment]

    # UTF-8 characters are at most 4 bytes and tokens hold at least one, so 8 trailing tokens
    # cover any incomplete sequence.
    _MAX_TRAILING_TOKENS_TO_TRY: int = 8

    def __post_init__(self) -> None:
        if self._pending_tokens is None:
            self._pending_tokens = []

    def _is_valid_decode(self, text: str) -> bool:
        return not text.endswith(_REPLACEMENT_CHAR)

    def _try_decode(self, tokens: list[int]) -> str | None:
        try:
            text = str(self.tokenizer.decode(tokens))
        except Exception:  # a tokenizer refusing a partial sequence is "not yet"
            return None
        return text if self._is_valid_decode(text) else None

    def decode(self, tokens: list[int]) -> str | None:
        """Text for the pending plus new tokens that is complete; None if all are buffered."""
        self._pending_tokens.extend(tokens)
        text = self._try_decode(self._pending_tokens)
        if text is not None:
            self._pending_tokens = []
            return text
        limit = min(len(self._pending_tokens), self._MAX_TRAILING_TOKENS_TO_TRY)
        for remove in range(1, limit + 1):
            prefix = self._pending_tokens[:-remove]
            if not prefix:
                break
            text = self._try_decode(prefix)
            if text is not None:
                self._pending_tokens = self._pending_tokens[-remove:]
                return text
        return None

    def flush(self) -> str:
        """Whatever is buffered, replacement characters included (end of stream)."""
        if not self._pending_tokens:
            return ""
        try:
            text = str(self.tokenizer.decode(self._pending_tokens))
        except Exception:
            text = ""
        self._pending_tokens = []
        return text

    def reset(self) -> None:
        self._pending_tokens = []

    def has_pending(self) -> bool:
        return bool(self._pending_tokens)


def _longest_matching_suffix_prefix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``: how much
    of the text might be the start of the tag and must not be emitted yet."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0


@dataclass
class StreamingParser:
    """Token-by-token parsing into deltas: end-token detection, UTF-8 buffering, the header on
    first content, the final Message from ``parse_final_response``. Subclasses decide how text
    splits into content blocks (:meth:`_emit_deltas`, :meth:`_emit_remaining`)."""

    tokenizer: Tokenizer
    end_message_token: int
    parse_final_response: Callable[[list[int]], tuple[Message, ParseTermination]]

    _utf8_decoder: Utf8TokenDecoder = field(init=False)
    _accumulated_text: str = field(init=False, default="")
    _header_emitted: bool = field(init=False, default=False)
    _content_index: int = field(init=False, default=0)
    _last_emitted_pos: int = field(init=False, default=0)
    _finished: bool = field(init=False, default=False)
    _all_tokens: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._utf8_decoder = Utf8TokenDecoder(self.tokenizer)

    def feed(self, token: int) -> Iterator[MessageDelta]:
        """Deltas caused by one more token (none after the end token)."""
        if self._finished:
            return
        self._all_tokens.append(token)
        if token == self.end_message_token:
            self._finished = True
            return
        decoded = self._utf8_decoder.decode([token])
        if decoded is None:
            return
        self._accumulated_text += decoded
        if not self._header_emitted:
            self._header_emitted = True
            yield StreamingMessageHeader(role="assistant")
        yield from self._emit_deltas()

    def _emit_deltas(self) -> Iterator[MessageDelta]:
        yield from self._emit_remaining()
        self._last_emitted_pos = len(self._accumulated_text)

    def _emit_remaining(self) -> Iterator[MessageDelta]:
        remaining = self._accumulated_text[self._last_emitted_pos :]
        if remaining:
            yield StreamingTextDelta(text=remaining, content_index=self._content_index)

    def finish(self) -> Iterator[MessageDelta]:
        """The rest of the content, then the complete Message."""
        self._accumulated_text += self._utf8_decoder.flush()
        if not self._header_emitted:
            self._header_emitted = True
            yield StreamingMessageHeader(role="assistant")
        yield from self._emit_remaining()
        message, _termination = self.parse_final_response(self._all_tokens)
        yield message

    def reset(self) -> None:
        self._utf8_decoder.reset()
        self._accumulated_text = ""
        self._header_emitted = False
        self._content_index = 0
        self._last_emitted_pos = 0
        self._finished = False
        self._all_tokens = []


_THINK_OPEN_TAG = "<think>"
_THINK_CLOSE_TAG = "</think>"


@dataclass
class ReasoningStreamingParser(StreamingParser):
    """``<think>...</think>`` aware: reasoning comes out as thinking deltas, the rest as text
    deltas, and each tag boundary starts a new content block."""

    _in_thinking: bool = field(init=False, default=False)

    def _held_back(self, text: str, pos: int) -> tuple[str, int]:
        """The tag being looked for, and where the text may safely be emitted up to."""
        tag = _THINK_CLOSE_TAG if self._in_thinking else _THINK_OPEN_TAG
        return tag, len(text) - _longest_matching_suffix_prefix(text[pos:], tag)

    def _delta(self, text: str) -> MessageDelta:
        if self._in_thinking:
            return StreamingThinkingDelta(thinking=text, content_index=self._content_index)
        return StreamingTextDelta(text=text, content_index=self._content_index)

    def _emit_deltas(self) -> Iterator[MessageDelta]:
        text = self._accumulated_text
        pos = self._last_emitted_pos
        while pos < len(text):
            tag, safe_end = self._held_back(text, pos)
            found = text.find(tag, pos)
            if found == -1:
                if safe_end > pos:
                    yield self._delta(text[pos:safe_end])
                    self._last_emitted_pos = safe_end
                break
            if found > pos:
                yield self._delta(text[pos:found])
            self._in_thinking = not self._in_thinking
            self._content_index += 1
            pos = found + len(tag)
            self._last_emitted_pos = pos

    def _emit_remaining(self) -> Iterator[MessageDelta]:
        remaining = self._accumulated_text[self._last_emitted_pos :]
        if remaining:
            yield self._delta(remaining)

    def reset(self) -> None:
        super().reset()
        self._in_thinking = False


def parse_response_streaming(renderer: Renderer, response: list[int]) -> Iterator[MessageDelta]:
    """The streaming parse of a renderer that declares ``supports_streaming``."""
    if not renderer.supports_streaming:
        raise NotImplementedError(
            f"{type(renderer).__name__} does not support streaming response parsing"
        )
    response = renderer._normalize_response_tokens(response)
    parser = ReasoningStreamingParser(
        tokenizer=renderer.tokenizer,
        end_message_token=renderer._end_message_token,
        parse_final_response=renderer._parse_response_for_streaming,
    )
    for token in response:
        yield from parser.feed(token)
    yield from parser.finish()


def parse_even_if_truncated(
    renderer: Renderer, response: list[int]
) -> tuple[Message, ParseTermination]:
    """``parse_response`` with its content parsing applied even when the stop token is
    missing (a truncated stream still ends in a structured Message); the termination stays
    what the tokens say."""
    end = renderer._end_message_token
    if end in response:
        return renderer.parse_response(response)
    message, _ = renderer.parse_response([*response, end])
    return message, ParseTermination.MALFORMED
