"""Whether a tokenizer encodes a special-token frame and the text inside it independently.

Why: every gpt-oss message is a frame of special tokens around its text
(``<|channel|>final<|message|>{text}<|end|>``). Encoding the frame with the text costs the Rust
tokenizer a split at each special token and a pre-tokenization of ``final``, per message: ~9%
of the encode, ~6% of rendering a conversation (callgrind and CPU time on the bench's
conversations). The frame is the same in every message, so the renderer encodes only the text
and puts the frame's memoised ids around it (``GptOssRenderer._encode_framed``).

Why that is exact: a fast tokenizer first cuts its input at every added token, then normalizes,
pre-tokenizes and runs its model on each piece between them on its own. When a frame's prefix
ends with an added token and its suffix starts with one, ``encode(prefix + text + suffix) ==
encode(prefix) + encode(text) + encode(suffix)`` as long as no added-token match can straddle
a boundary and no step depends on where a piece sits in the text. Matches cannot straddle when
every added token reads ``<|name|>`` with no ``<``, ``>`` or ``|`` in the name and no strip
flags: a match then starts only at a ``<|`` and ends at the first ``|>`` after it, so one
ending a prefix or starting a suffix is found alike in the whole text and in the part.
:func:`splits_at_added_tokens` checks this and the rest from the tokenizer's own description;
where it cannot tell (a tokenizer without the direct route of ``encoding.py``, a normalizer, a
pre-tokenizer other than regex splits and byte-level without a prefix space, a model other than
BPE without dropout, another added-token form), the whole text is encoded, as before. As with
``encoding.py``'s memo, the vocabulary is assumed not to change once rendering has started.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from cookbook.renderers.base import Renderer
from cookbook.renderers.encoding import direct_backend

_ADDED_TOKEN = re.compile(r"<\|[^<>|]*\|>")


def _pieces_are_independent(pre_tokenizer: dict[str, Any]) -> bool:
    """Regex splits and byte-level mapping without a prefix space act on each piece alike,
    wherever it sits (a Metaspace ``first`` scheme, for one, does not)."""
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        return all(_pieces_are_independent(p) for p in pre_tokenizer.get("pretokenizers", []))
    if kind == "Split":
        return True
    return kind == "ByteLevel" and not pre_tokenizer.get("add_prefix_space", True)


def splits_at_added_tokens(tokenizer: Any) -> bool:
    """True if ``tokenizer.encode`` of a text framed by added tokens equals the frame's ids
    around the ids of the text alone (the conditions are in the module docstring). Checked
    once per tokenizer by the caller; special tokens kept as text (``split_special_tokens``)
    and a replaced ``encode`` are per call, so the caller checks those each time."""
    backend = direct_backend(tokenizer)
    if backend is None or backend.normalizer is not None or backend.pre_tokenizer is None:
        return False
    model = backend.model
    if type(model).__name__ != "BPE" or model.dropout is not None:
        return False
    if not _pieces_are_independent(json.loads(backend.pre_tokenizer.__getstate__())):
        return False
    return all(
        _ADDED_TOKEN.fullmatch(token.content)
        and not (token.lstrip or token.rstrip or token.single_word)
        for token in backend.get_added_tokens_decoder().values()
    )


class FramedEncoding:
    """Mixed into a :class:`Renderer` whose messages are special-token frames around text."""

    tokenizer: Any
    _encode_adds_special_tokens: bool
    _encode: Callable[[str], list[int]]

    def _encode_framed(self, prefix: str, content: str, suffix: str) -> list[int]:
        """``self._encode(prefix + content + suffix)`` for a harmony frame (a prefix ending and
        a suffix starting with a special token): the frame's memoised ids around the
        content's, where the tokenizer allows it (``gpt_oss_framing.py`` says why and when)."""
        frames = self._frame_ids()
        if frames is None:
            return self._encode(prefix + content + suffix)
        head = frames.get(prefix)
        if head is None:
            head = frames[prefix] = tuple(self._encode(prefix))
        tail = frames.get(suffix)
        if tail is None:
            tail = frames[suffix] = tuple(self._encode(suffix))
        return [*head, *self._encode(content), *tail]

    def _frame_ids(self) -> dict[str, tuple[int, ...]] | None:
        """The memo of frame ids, or None where the whole text must be encoded: the tokenizer
        does not split at added tokens independently, or ``_encode`` is not the stock one (a
        subclass's, or a batch-path copy's recording hook, which must see every text)."""
        tokenizer = self.tokenizer
        memo = self.__dict__.get("_frames")
        if memo is None or memo[0] is not tokenizer:
            frames = {} if splits_at_added_tokens(tokenizer) else None
            memo = self.__dict__["_frames"] = (tokenizer, frames)
        if (
            memo[1] is None
            or "_encode" in self.__dict__
            or type(self)._encode is not Renderer._encode
            or self._encode_adds_special_tokens
            or "encode" in vars(tokenizer)
            or getattr(tokenizer, "split_special_tokens", False)
        ):
            return None
        return memo[1]
