"""Text -> token ids for the renderers' hot path: ``tokenizer.encode`` without its overhead.

Why: a renderer encodes a header and a body per message, and ``transformers``' ``encode``
spends tens of microseconds of Python per call (argument checks, truncation and padding set-up,
a ``BatchEncoding``) around a Rust call that, for a chat turn, often takes less. Rendering one
conversation at a time was mostly that overhead. :func:`encode_text` makes the same Rust call
directly and memoises what repeats (role headers, markers, system prompts, the texts a
generation prompt re-renders), so per-conversation rendering costs little more than the encode.

It returns exactly what ``tokenizer.encode(text, add_special_tokens=..., split_special_tokens=
...)`` returns. In ``transformers`` (4.x and 5.x ``TokenizersBackend``) that call switches the
backend's truncation and padding off, sets its ``encode_special_tokens`` to the call's
``split_special_tokens`` (default: ``tokenizer.split_special_tokens``) and returns the ids of
``backend.encode_batch([text], add_special_tokens=...)``. The direct route is taken only while
that holds: the tokenizer's class does not override ``encode``, nothing replaced it on the
instance, and the backend is untruncated and unpadded; otherwise ``tokenizer.encode`` runs.
Why not the batch renderer's template path for one conversation (plan its texts, encode the
new ones in one ``encode_batch_fast`` call, assemble): measured on 64 conversations of
llama3, Qwen3.8, Kimi K2.5 and Qwen3.5 (no thinking), a stripped-down version of it cost
0.98-1.44x this path's CPU time, and the batch module's own (a batch of one) 2-2.5x: the Rust
encode is ~80% of this path already, one call per conversation instead of one per text saves
a few percent of it, and planning plus assembly cost as much as ``render_message`` does.

The memo of short fixed strings assumes the vocabulary is not changed after rendering starts
(``add_tokens`` afterwards: call :func:`forget` for that tokenizer). It is not checked per call:
``get_vocab_size`` rebuilds the vocabulary in some ``tokenizers`` versions (0.22), milliseconds.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# Memoised short texts per tokenizer at most; the memo is cleared when full. Short texts are
# the fixed strings (role headers, markers, stop strings), which repeat in every conversation.
_MEMO_ENTRIES = 4096
# Longer texts are memoised only for the duration of one call (see rendering_call): message
# bodies rarely repeat across conversations, but a supervised example re-renders its own
# messages for the generation prompt.
SHORT_TEXT_CHARS = 64
# Texts a renderer marks as recurring (encode_text's ``fixed``) are memoised up to this length;
# the bound keeps a memo full of long system prompts to a few megabytes.
FIXED_TEXT_CHARS = 2048

_Key = tuple[str, bool, bool, int]
_CALL_MEMO: ContextVar[dict[_Key, tuple[int, ...]] | None] = ContextVar(
    "cookbook_renderer_call_memo", default=None
)


class _RenderingCall:
    """The context manager :func:`rendering_call` returns (a class: a generator-based one cost
    more than a memo hit saves on a short conversation)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = None if _CALL_MEMO.get() is not None else _CALL_MEMO.set({})

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _CALL_MEMO.reset(self._token)


def rendering_call() -> contextlib.AbstractContextManager[None]:
    """Within it, every text encoded is memoised until the outermost such block ends.

    Why: ``build_supervised_example`` renders the conversation, then renders it again up to
    the trained turn for the generation prompt; the second pass finds the ids. A context
    variable, so renderers shared between threads or tasks do not share a call's memo.
    """
    return _RenderingCall()


def _stock_methods() -> tuple[tuple[str, Any], ...]:
    """The ``transformers`` methods whose behaviour :func:`encode_text` reproduces."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # transformers 4.x: every call goes through tokenizer.encode
        return ()
    return (
        ("encode", PreTrainedTokenizerBase.encode),
        ("_encode_plus", TokenizersBackend._encode_plus),
        ("set_truncation_and_padding", TokenizersBackend.set_truncation_and_padding),
    )


_STOCK_METHODS = _stock_methods()


class _Encoder:
    """The direct route for one tokenizer, or ``backend is None`` where there is none."""

    def __init__(self, tokenizer: Any):
        backend = getattr(tokenizer, "_tokenizer", None)
        stock = bool(_STOCK_METHODS) and all(
            getattr(type(tokenizer), name, None) is method for name, method in _STOCK_METHODS
        )
        fast = getattr(backend, "encode_batch_fast", None)
        self.backend = backend if stock and fast is not None else None
        self.ascii_backend = _without_nfc(self.backend)
        self.memo: dict[_Key, tuple[int, ...]] = {}


def _without_nfc(backend: Any) -> Any:
    """A backend that encodes ASCII text as ``backend`` does, minus its NFC pass; None where
    ``backend``'s normalizer is not exactly NFC or that is not shown.

    Why: NFC is ~13% of a Qwen encode's instructions, and ASCII text is NFC-invariant (no
    ASCII character decomposes or composes), so the normalizer changes nothing the model sees.
    The copy shares the model, pre-tokenizer and post-processor and re-adds the added tokens
    in id order (checked: same ids and flags). A normalized added token is matched against the
    normalized text, with its content normalized too; only ASCII contents are allowed, so
    both sides match the same strings. Like the memo, it assumes the tokenizer is not
    reconfigured after rendering starts (call :func:`forget` after that).
    """
    from tokenizers import Tokenizer
    from tokenizers.normalizers import NFC

    if backend is None or type(backend.normalizer) is not NFC:
        return None
    added = backend.get_added_tokens_decoder()
    if any(token.normalized and not token.content.isascii() for token in added.values()):
        return None
    copy = Tokenizer(backend.model)
    copy.pre_tokenizer = backend.pre_tokenizer
    copy.post_processor = backend.post_processor
    for token_id in sorted(added):
        token = added[token_id]
        (copy.add_special_tokens if token.special else copy.add_tokens)([token])
    if _token_flags(copy.get_added_tokens_decoder()) != _token_flags(added):
        return None
    return copy


def _token_flags(added: dict[int, Any]) -> dict[int, tuple[object, ...]]:
    return {
        token_id: (t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
        for token_id, t in added.items()
    }


_ENCODERS: weakref.WeakKeyDictionary[Any, _Encoder] = weakref.WeakKeyDictionary()
# The last tokenizer looked up and its encoder: a renderer encodes a dozen texts per
# conversation with one tokenizer, and the weak dictionary's lookup was a tenth of the cost
# of a memoised text. A weak reference, so it keeps no tokenizer alive.
_LAST: tuple[Callable[[], Any], _Encoder] = (lambda: None, _Encoder(None))


def _encoder(tokenizer: Any) -> _Encoder:
    last_tokenizer, encoder = _LAST
    if last_tokenizer() is tokenizer:
        return encoder
    try:
        encoder = _ENCODERS.get(tokenizer)
        if encoder is None:
            encoder = _ENCODERS[tokenizer] = _Encoder(tokenizer)
        _remember(tokenizer, encoder)
        return encoder
    except TypeError:  # not weak-referenceable or unhashable: no direct route
        return _Encoder(None)


def direct_backend(tokenizer: Any) -> Any | None:
    """The Rust backend :func:`encode_text` calls for ``tokenizer`` directly, or None where it
    goes through ``tokenizer.encode``: a renderer that reasons about how that backend splits
    text (gpt-oss's frames) asks here, so both agree on when the direct route applies."""
    return _encoder(tokenizer).backend


def _remember(tokenizer: Any, encoder: _Encoder) -> None:
    global _LAST
    _LAST = (weakref.ref(tokenizer), encoder)


def encode_text(
    tokenizer: Any,
    text: str,
    *,
    add_special_tokens: bool,
    split_special_tokens: bool | None,
    fixed: bool = False,
) -> list[int]:
    """``tokenizer.encode(text, add_special_tokens=..., split_special_tokens=...)``, fast.

    ``split_special_tokens=None`` means the tokenizer's default, as in ``transformers``.
    ``fixed``: the text recurs across conversations (a built-in or a dataset's system prompt,
    a header with a long fixed preamble), so it is memoised for the tokenizer's lifetime up to
    ``FIXED_TEXT_CHARS``. Returns a fresh list each call, so a caller may change it.
    """
    last_tokenizer, encoder = _LAST
    if last_tokenizer() is not tokenizer:
        encoder = _encoder(tokenizer)
    backend = encoder.backend
    if (
        backend is None
        or "encode" in vars(tokenizer)
        or backend.truncation is not None
        or backend.padding is not None
    ):
        if split_special_tokens is None:
            return tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return tokenizer.encode(
            text, add_special_tokens=add_special_tokens, split_special_tokens=split_special_tokens
        )
    split = split_special_tokens
    if split is None:
        split = bool(getattr(tokenizer, "split_special_tokens", False))
    n = len(text)
    memo = (
        encoder.memo
        if n <= SHORT_TEXT_CHARS or (fixed and n <= FIXED_TEXT_CHARS)
        else _CALL_MEMO.get()
    )
    key = None  # a message body outside a rendering call has no memo: no key to build
    if memo is not None:
        key = (text, add_special_tokens, split, id(encoder))
        ids = memo.get(key)
        if ids is not None:
            return list(ids)
    if encoder.ascii_backend is not None and text.isascii():
        backend = encoder.ascii_backend
    if backend.encode_special_tokens != split:
        backend.encode_special_tokens = split
    result = backend.encode_batch_fast([text], add_special_tokens=add_special_tokens)[0].ids
    if key is not None:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[key] = tuple(result)
    return result


def encode_batch_ids(
    tokenizer: Any, backend: Any, texts: list[str], *, add_special_tokens: bool, split: bool
) -> list[list[int]]:
    """``backend``'s ids for ``texts`` in batch calls, the ASCII ones without NFC where
    ``backend`` is ``tokenizer``'s and :func:`encode_text` has a normalizer-free copy of it
    (the batch renderers' encode; the caller checks truncation and padding are off)."""
    encoder = _encoder(tokenizer)
    plain = encoder.ascii_backend if encoder.backend is backend else None
    ascii_at = [i for i, text in enumerate(texts) if text.isascii()] if plain is not None else []
    if not ascii_at:
        backend.encode_special_tokens = split
        batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in batch(texts, add_special_tokens=add_special_tokens)]
    ids: list[list[int]] = [[] for _ in texts]
    other_at = [i for i, text in enumerate(texts) if not text.isascii()]
    for target, where in ((plain, ascii_at), (backend, other_at)):
        if where:
            target.encode_special_tokens = split
            encoded = target.encode_batch_fast(
                [texts[i] for i in where], add_special_tokens=add_special_tokens
            )
            for i, encoding in zip(where, encoded, strict=True):
                ids[i] = encoding.ids
    return ids


def drop_memoised_texts(tokenizer: Any) -> None:
    """Empty ``tokenizer``'s memo of texts and keep the rest of its direct route.

    Why: a benchmark passing over the same conversations again would find every short message
    body (up to ``SHORT_TEXT_CHARS``) memoised from the pass before, a free hit that new data
    never gives; it calls this between passes (fixed texts are then encoded again once)."""
    encoder = _ENCODERS.get(tokenizer)
    if encoder is not None:
        encoder.memo.clear()


def forget(tokenizer: Any) -> None:
    """Drop what is memoised for ``tokenizer`` (after changing its vocabulary)."""
    global _LAST
    _ENCODERS.pop(tokenizer, None)
    _LAST = (lambda: None, _Encoder(None))
