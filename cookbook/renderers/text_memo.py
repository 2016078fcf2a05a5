"""A renderer's memo of the texts that repeat across conversations.

Why: ``encoding.py`` memoises short texts per tokenizer (headers, markers), but a system prompt
is longer and was encoded again in every conversation, although datasets repeat a few system
prompts (and Qwen3.8 writes its reasoning-effort sentence into every conversation). Renderers
send such texts through :meth:`MemoisedEncoding._encode_memoised`; a hit is one dict lookup.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

_MEMO_ENTRIES = 1024
"""Texts one renderer memoises at most; the memo is cleared when full, so a dataset whose
system prompts never repeat costs nothing extra."""


class MemoisedEncoding:
    """Mixin for :class:`~cookbook.renderers.base.Renderer` subclasses (listed after
    ``Renderer``, whose ``_encode`` and ``_encode_split`` it calls)."""

    if TYPE_CHECKING:
        tokenizer: Any

        def _encode(self, text: str) -> list[int]: ...

        def _encode_split(self, text: str) -> list[int]: ...

    def _encode_memoised(self, text: str, *, split: bool = False) -> list[int]:
        """``self._encode(text)`` (``_encode_split`` if ``split``) for a text that repeats
        across conversations: role headers, markers, system prompts.

        The memo belongs to this renderer and its tokenizer (it is dropped if
        ``self.tokenizer`` is replaced), stores tuples and returns a fresh list, so a caller
        changing its ids cannot change the memo. It is bypassed while ``_encode`` or
        ``_encode_split`` is replaced on the instance (the batch renderer's recording copies
        answer with placeholder ids that must not be kept). Like the tokenizer-level memo, it
        assumes the vocabulary does not change after rendering starts (``add_tokens`` then:
        build a new renderer).
        """
        own = vars(self)
        if "_encode" in own or "_encode_split" in own:
            return self._encode_split(text) if split else self._encode(text)
        memo = self._memo
        if memo[0] is not self.tokenizer:
            memo = self._memo = (self.tokenizer, {})
        ids = memo[1].get((text, split))
        if ids is None:
            if len(memo[1]) >= _MEMO_ENTRIES:
                memo[1].clear()
            ids = tuple(self._encode_split(text) if split else self._encode(text))
            memo[1][(text, split)] = ids
        return list(ids)

    @cached_property
    def _memo(self) -> tuple[Any, dict[tuple[str, bool], tuple[int, ...]]]:
        """(tokenizer, (text, split) -> ids) of :meth:`_encode_memoised`."""
        return (self.tokenizer, {})
