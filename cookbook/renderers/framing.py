"""Whether a tokenizer encodes special-token frames and the texts between them independently.

Why: a chat message is text inside a frame of special tokens: gpt-oss's
``<|channel|>final<|message|>{text}<|end|>``, Kimi's ``{text}<|im_end|>`` and
``<think>{reasoning}</think>{text}<|im_end|>``. Encoding the frame with the text costs the Rust
tokenizer a split at each special token and a pre-tokenization of any plain text in the frame
(``final``), per message: for gpt-oss ~9% of the encode, ~6% of rendering a conversation; for
Kimi 3.5% of the encode's instructions (callgrind and CPU time on the bench's conversations).
The frames are the same in every message, so the renderer encodes only the texts and puts the
frames' memoised ids between them (:meth:`FramedEncoding._encode_framed`); its role headers,
fixed texts of special tokens, are memoised with them (:meth:`FramedEncoding._fixed_ids`).

Why that is exact: a fast tokenizer first cuts its input at every added token, then normalizes,
pre-tokenizes and runs its model on each piece between them on its own. So ``encode(frame +
text + frame)`` is the ids of the parts, one after the other, as long as every match of an added
token in the whole text lies inside one part, each frame next to a text ends (or starts) with a
match, and no step depends on where a piece sits in the text. Matches are that well behaved
when every added token reads ``<name>`` or ``[name]`` with no bracket in the name and has no
strip flags: an occurrence starts at an opening bracket and ends at the first closing bracket
after it, so occurrences never overlap (all are matched, whatever the matching order) and none
can contain the closing bracket that ends a frame or the opening one that starts the next.
:func:`splits_at_added_tokens` checks this and the rest from the tokenizer's own description,
and :meth:`FramedEncoding._frame` that each frame starts and ends with an added token; where
either cannot tell (a tokenizer without the direct route of ``encoding.py``, a normalizer, a
pre-tokenizer other than regex splits and byte-level without a prefix space, a model other than
BPE without dropout, another added-token form, a post-processor that adds tokens to an encode
that asks for them), the whole text is encoded, as before. As with ``encoding.py``'s memo, the
vocabulary is assumed not to change once rendering has started.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from cookbook.renderers.base import Renderer
from cookbook.renderers.encoding import direct_backend

# An added token as the module docstring requires it: one bracket pair, none inside.
_ADDED_TOKEN = re.compile(r"<[^<>\[\]]*>|\[[^<>\[\]]*\]")

# A memoised frame: its ids, whether it starts and whether it ends with an added token.
_Frame = tuple[tuple[int, ...], bool, bool]


def _pieces_are_independent(pre_tokenizer: dict[str, Any]) -> bool:
    """Regex splits and byte-level mapping without a prefix space act on each piece alike,
    wherever it sits (a Metaspace ``first`` scheme, for one, does not)."""
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        return all(_pieces_are_independent(p) for p in pre_tokenizer.get("pretokenizers", []))
    if kind == "Split":
        return True
    return kind == "ByteLevel" and not pre_tokenizer.get("add_prefix_space", True)


def added_token_texts(tokenizer: Any, *, add_special_tokens: bool = False) -> frozenset[str]:
    """The added tokens' texts if ``tokenizer.encode`` of texts between frames of them equals
    the frames' ids around the ids of the texts alone (the conditions are in the module
    docstring), else an empty set. ``add_special_tokens``: the encode asks the post-processor
    for its tokens (Kimi's), so it must add none. Checked once per tokenizer by the caller;
    special tokens kept as text (``split_special_tokens``) and a replaced ``encode`` are per
    call, so the caller checks those each time."""
    backend = direct_backend(tokenizer)
    if backend is None or backend.normalizer is not None or backend.pre_tokenizer is None:
        return frozenset()
    model = backend.model
    if type(model).__name__ != "BPE" or model.dropout is not None:
        return frozenset()
    if not _pieces_are_independent(json.loads(backend.pre_tokenizer.__getstate__())):
        return frozenset()
    processor = backend.post_processor
    if add_special_tokens and processor is not None and processor.num_special_tokens_to_add(False):
        return frozenset()
    tokens = backend.get_added_tokens_decoder().values()
    if not all(
        _ADDED_TOKEN.fullmatch(token.content)
        and not (token.lstrip or token.rstrip or token.single_word)
        for token in tokens
    ):
        return frozenset()
    return frozenset(token.content for token in tokens)


def splits_at_added_tokens(tokenizer: Any, *, add_special_tokens: bool = False) -> bool:
    """True if the tokenizer encodes texts between added-token frames independently
    (:func:`added_token_texts`)."""
    return bool(added_token_texts(tokenizer, add_special_tokens=add_special_tokens))


class FramedEncoding:
    """Mixed into a :class:`Renderer` whose messages are special-token frames around text."""

    tokenizer: Any
    _encode_adds_special_tokens: bool
    _encode: Callable[[str], list[int]]

    def _encode_framed(self, prefix: str, content: str, suffix: str, *more: str) -> list[int]:
        """``self._encode(prefix + content + suffix + ...)`` where the parts are frame, text,
        frame, ..., frame: each frame's memoised ids and each text's own, where the tokenizer
        allows it (this module's docstring says why and when). A frame is special tokens,
        possibly with plain text between them; one next to a text must end (before it) or start
        (after it) with a special token, and only the first and the last may be empty."""
        return self._framed(self._frame_ids(), prefix, content, suffix, *more)

    def _framed(
        self,
        frames: dict[str, _Frame] | None,
        prefix: str,
        content: str,
        suffix: str,
        *more: str,
    ) -> list[int]:
        """:meth:`_encode_framed` with ``frames`` from :meth:`_frame_ids`, for a renderer that
        asks for them once per message (each ask is half a microsecond)."""
        if frames is not None:
            head = frames.get(prefix) or self._frame(prefix, frames)
            tail = frames.get(suffix) or self._frame(suffix, frames)
            if head[2] and tail[1]:
                if not more:
                    return [*head[0], *self._encode(content), *tail[0]]
                if suffix and tail[2]:  # the suffix is the next text's prefix
                    return [*head[0], *self._encode(content), *self._framed(frames, suffix, *more)]
        return self._encode("".join((prefix, content, suffix, *more)))

    def _fixed_ids(self, frames: dict[str, _Frame] | None, text: str) -> list[int]:
        """``self._encode(text)`` for a fixed text of special tokens (a role header), memoised
        with the frames; ``frames`` from :meth:`_frame_ids`. Only for texts the renderer
        writes itself: the memo keeps every one."""
        if frames is None:
            return self._encode(text)
        return list((frames.get(text) or self._frame(text, frames))[0])

    def _frame(self, frame: str, frames: dict[str, _Frame]) -> _Frame:
        """Memoise a frame's ids and whether it starts and whether it ends with an added token
        (the empty frame does both: nothing stands between the text and the ends of the
        whole)."""
        texts = self.__dict__["_frames"][3]
        known = frames[frame] = (
            tuple(self._encode(frame)),
            not frame or any(frame.startswith(token) for token in texts),
            not frame or any(frame.endswith(token) for token in texts),
        )
        return known

    def _frame_ids(self) -> dict[str, _Frame] | None:
        """The memo of frames (see :meth:`_frame`), or None where the whole text must be
        encoded: the tokenizer does not split at added tokens independently, or ``_encode`` is
        not the stock one (a subclass's, or a batch-path copy's recording hook, which must see
        every text). Asked once per message: the checks that cannot change are made once."""
        fields = self.__dict__
        tokenizer = self.tokenizer
        memo = fields.get("_frames")
        if (
            memo is None
            or memo[0] is not tokenizer
            or memo[1] is not self._encode_adds_special_tokens
        ):
            adds = self._encode_adds_special_tokens
            texts = added_token_texts(tokenizer, add_special_tokens=adds)
            memo = fields["_frames"] = (tokenizer, adds, {} if texts else None, texts)
        if (
            memo[2] is None
            or "_encode" in fields
            or type(self)._encode is not Renderer._encode
            or "encode" in tokenizer.__dict__
            or getattr(tokenizer, "split_special_tokens", False)
        ):
            return None
        return memo[2]
