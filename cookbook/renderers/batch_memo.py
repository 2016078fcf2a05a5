"""The batch renderer's tokenizer side: texts -> ids in one Rust call, memoised per batch.

Split from ``batch.py`` (which re-exports :class:`TokenMemo` and :func:`encode_many`): the
template fast path and the generic recording path both encode through it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from cookbook.renderers.base import Renderer
from cookbook.renderers.encoding import encode_batch_ids

# Texts checked against ``tokenizer.encode`` after every batch encode: a cheap guard that the
# backend is configured the way ``encode`` configures it (no truncation, same special tokens).
SPOT_CHECKS = 4


class TokenMemo:
    """Text -> token ids as ``renderer._encode`` / ``renderer._encode_split`` return them,
    filled in batches; one table per hook, since the same text encodes differently in each.

    ``encode`` and ``encode_split`` are drop-ins for the two hooks: they return a fresh list
    each call, so a renderer that appends to what it got cannot corrupt the memo.
    """

    def __init__(self, renderer: Renderer, settle: Callable[[], None] | None = None):
        self._renderer = renderer
        self._settle = settle
        """Waits for the encodes in flight (the template path's pipeline drain), which may
        also bring a missed text: see :meth:`settle`."""
        self.ids: dict[str, list[int]] = {}
        self.split_ids: dict[str, list[int]] = {}

    def prefetch(self, texts: Iterable[str], *, split: bool = False) -> None:
        """Encode every text not yet known, all in one batch."""
        ids = self.split_ids if split else self.ids
        new = [text for text in dict.fromkeys(texts) if text not in ids]
        if new:
            ids.update(zip(new, encode_many(self._renderer, new, split=split), strict=True))

    def encode(self, text: str) -> list[int]:
        ids = self.ids.get(text)
        if ids is None:
            ids = self._miss(self.ids, text, self._renderer._encode)
        return list(ids)

    def encode_split(self, text: str) -> list[int]:
        ids = self.split_ids.get(text)
        if ids is None:
            ids = self._miss(self.split_ids, text, self._renderer._encode_split)
        return list(ids)

    def settle(self) -> None:
        """Call before this thread uses the tokenizer itself (a memo miss does): the Rust
        tokenizer must not be called while an encode of the batch is in flight."""
        if self._settle is not None:
            self._settle()

    def _miss(
        self, table: dict[str, list[int]], text: str, hook: Callable[[str], list[int]]
    ) -> list[int]:
        if self._settle is not None:
            self._settle()
            ids = table.get(text)
            if ids is not None:
                return ids
        ids = table[text] = hook(text)
        return ids


def encode_many(
    renderer: Renderer, texts: list[str], *, split: bool = False, spot_checks: int = SPOT_CHECKS
) -> list[list[int]]:
    """``[renderer._encode(t) for t in texts]`` (``_encode_split`` if ``split``), in one Rust
    batch call when that is equivalent.

    The base hooks are ``tokenizer.encode(text, add_special_tokens=False)`` (``True`` where the
    renderer sets ``_encode_adds_special_tokens``), the second with ``split_special_tokens=True``
    and ``add_special_tokens=False``. In ``transformers`` that call switches truncation and padding
    off, sets the backend's ``encode_special_tokens`` to the call's ``split_special_tokens``
    (default: ``tokenizer.split_special_tokens``) and calls ``backend_tokenizer.encode_batch``;
    the batch call here sets the flag the same way. A renderer that overrides the hook, or a
    tokenizer without a Rust backend, is encoded text by text. ``spot_checks`` texts are
    re-encoded through the hook as a guard; any mismatch falls back to text by text too (a
    caller encoding one batch in parts spreads ``SPOT_CHECKS`` over them: each costs a whole
    text's encode).
    """
    one = renderer._encode_split if split else renderer._encode
    hook = "_encode_split" if split else "_encode"
    backend = getattr(renderer.tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(type(renderer), hook) is not getattr(Renderer, hook) or not texts:
        return [one(text) for text in texts]
    flag = backend.encode_special_tokens
    try:
        ids = _backend_ids(renderer, backend, texts, split, one, spot_checks)
        return [one(text) for text in texts] if ids is None else ids
    finally:
        # transformers sets the flag before every encode; code that calls the backend directly
        # may not, so leave it as it was found.
        backend.encode_special_tokens = flag


def _backend_ids(
    renderer: Renderer,
    backend: Any,
    texts: list[str],
    split: bool,
    one: Callable[[str], list[int]],
    spot_checks: int,
) -> list[list[int]] | None:
    """The backend's ids for ``texts``, or None where they might differ from ``one``'s."""
    tokenizer = renderer.tokenizer
    if not _backend_untruncated(backend):
        # encode() puts the backend into the state it needs; the per-conversation path would
        # have done the same on its first call.
        tokenizer.encode("", add_special_tokens=False)
        if not _backend_untruncated(backend):
            return None
    add_special = bool(getattr(renderer, "_encode_adds_special_tokens", False)) and not split
    ids = encode_batch_ids(
        tokenizer,
        backend,
        texts,
        add_special_tokens=add_special,
        split=split or bool(getattr(tokenizer, "split_special_tokens", False)),
    )
    step = max(1, len(texts) // max(1, spot_checks))
    for i in range(0, len(texts), step)[:spot_checks]:
        if one(texts[i]) != ids[i]:
            return None
    return ids


def _backend_untruncated(backend: Any) -> bool:
    return (
        getattr(backend, "truncation", None) is None and getattr(backend, "padding", None) is None
    )


def memo_view(renderer: Renderer, memo: TokenMemo) -> Renderer:
    """A copy of ``renderer`` whose tokenizer calls go through ``memo``."""
    view = copy.copy(renderer)
    view._encode = memo.encode  # type: ignore[method-assign]
    view._encode_split = memo.encode_split  # type: ignore[method-assign]
    return view


__all__ = ["TokenMemo", "encode_many", "memo_view"]
