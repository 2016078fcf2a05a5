"""Supervised examples for many conversations at once, token for token as one at a time.

Why this exists: rendering one conversation calls the tokenizer once per header and once per
message, and each ``tokenizer.encode`` call costs tens of microseconds of Python in
``transformers`` before the Rust tokenizer does any work. For short chat turns that overhead,
not tokenization, is most of the time. :func:`build_supervised_examples_batch` instead gathers
every text the conversations need, encodes the distinct ones in a single
``backend_tokenizer.encode_batch_fast`` call (Rust, multi-threaded) and assembles the examples
from those ids.

The result equals ``[renderer.build_supervised_example(m, train_on_what) for m in
conversations]``: same chunks, same token ids, same weight values and dtype, same exceptions.
Two routes get there:

* a fast path for renderers whose template it knows (today :class:`Llama3Renderer`, exact type
  only: a subclass may override anything). It builds the texts directly, reuses one chunk object
  per distinct text and computes weights with ``numpy``. ``tests/test_batch.py`` pins it to the
  per-conversation output for every ``TrainOnWhat``.
* a generic path for every other renderer, through the ``Renderer._encode`` hook: a first pass
  runs ``render_message`` on a throwaway copy of the renderer that only records the texts it
  asks to encode, then those are batch-encoded, then a second copy whose ``_encode`` looks them
  up runs the renderer's own ``build_supervised_example``. The first pass is only a prefetch
  hint: any text it missed is encoded on demand, so correctness never depends on it.

Chunks are frozen pydantic models; the fast path shares one chunk (and its token list) between
all examples that contain the same text, so treat ``chunk.tokens`` as read-only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tinker

from cookbook.renderers.base import Renderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.types import Message, TrainOnWhat, ensure_text

Example = tuple[tinker.ModelInput, np.ndarray]

# Texts checked against ``tokenizer.encode`` after every batch encode: a cheap guard that the
# backend is configured the way ``encode`` configures it (no truncation, same special tokens).
_SPOT_CHECKS = 4


def build_supervised_examples_batch(
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
) -> list[Example]:
    """``renderer.build_supervised_example`` for each conversation, with one tokenizer call.

    Raises what the first failing conversation raises when rendered on its own.
    """
    if not conversations:
        return []  # like the per-conversation loop, which never looks at train_on_what then
    train_on_what = TrainOnWhat(train_on_what)
    fast = _FAST_PATHS.get(type(renderer))
    if fast is not None and not _has_instance_overrides(renderer):
        return fast(renderer, conversations, train_on_what)
    return _generic_examples(renderer, conversations, train_on_what)


# -- encoding -----------------------------------------------------------------------------


class TokenMemo:
    """Text -> token ids as ``renderer._encode`` returns them, filled in batches.

    ``encode`` is a drop-in for ``Renderer._encode``: it returns a fresh list each call, so a
    renderer that appends to what it got cannot corrupt the memo.
    """

    def __init__(self, renderer: Renderer):
        self._renderer = renderer
        self.ids: dict[str, list[int]] = {}

    def prefetch(self, texts: Iterable[str]) -> None:
        """Encode every text not yet known, all in one batch."""
        ids = self.ids
        new = [text for text in dict.fromkeys(texts) if text not in ids]
        if new:
            ids.update(zip(new, encode_many(self._renderer, new), strict=True))

    def encode(self, text: str) -> list[int]:
        ids = self.ids.get(text)
        if ids is None:
            ids = self.ids[text] = self._renderer._encode(text)
        return list(ids)


def encode_many(renderer: Renderer, texts: list[str]) -> list[list[int]]:
    """``[renderer._encode(t) for t in texts]``, in one Rust batch call when that is equivalent.

    ``Renderer._encode`` is ``tokenizer.encode(text, add_special_tokens=False)``, which in
    ``transformers`` switches truncation and padding off, sets special-token splitting from
    ``tokenizer.split_special_tokens`` and calls ``backend_tokenizer.encode_batch``. The batch
    call is used only when the backend is in that state; a renderer with its own ``_encode``
    or a tokenizer without a Rust backend is encoded text by text. A few texts are re-encoded
    with ``tokenizer.encode`` as a guard; a mismatch falls back to text by text too.
    """
    tokenizer = renderer.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(renderer)._encode is not Renderer._encode or not texts:
        return [renderer._encode(text) for text in texts]
    if not _backend_matches_encode(tokenizer, backend):
        # encode() puts the backend into the state it needs; the per-conversation path would
        # have done the same on its first call.
        tokenizer.encode("", add_special_tokens=False)
        if not _backend_matches_encode(tokenizer, backend):
            return [renderer._encode(text) for text in texts]
    batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
    ids = [encoding.ids for encoding in batch(texts, add_special_tokens=False)]
    step = max(1, len(texts) // _SPOT_CHECKS)
    for i in range(0, len(texts), step)[:_SPOT_CHECKS]:
        if renderer._encode(texts[i]) != ids[i]:
            return [renderer._encode(text) for text in texts]
    return ids


def _backend_matches_encode(tokenizer: object, backend: object) -> bool:
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    return (
        getattr(backend, "truncation", None) is None
        and getattr(backend, "padding", None) is None
        and bool(getattr(backend, "encode_special_tokens", split)) == split
    )


def _has_instance_overrides(renderer: Renderer) -> bool:
    """True if a method was replaced on the instance, which a type-keyed fast path would miss."""
    cls = type(renderer)
    return any(callable(getattr(cls, name, None)) for name in vars(renderer))


# -- generic path -------------------------------------------------------------------------


def _generic_examples(
    renderer: Renderer, conversations: Sequence[list[Message]], train_on_what: TrainOnWhat
) -> list[Example]:
    memo = TokenMemo(renderer)
    memo.prefetch(_recorded_texts(renderer, conversations, memo))
    view = copy.copy(renderer)
    view._encode = memo.encode  # type: ignore[method-assign]
    return [view.build_supervised_example(messages, train_on_what) for messages in conversations]


def _recorded_texts(
    renderer: Renderer, conversations: Sequence[list[Message]], memo: TokenMemo
) -> list[str]:
    """Texts ``render_message`` asks to encode, found by running it on a recording copy.

    The copy gets empty token lists for texts it has not seen, so a renderer that looks at the
    tokens may fail or ask for other texts; such failures are skipped, the copy (and anything
    it cached) is thrown away, and the real pass encodes whatever was missed.
    """
    texts: dict[str, None] = {}

    def record(text: str) -> list[int]:
        texts[text] = None
        return list(memo.ids.get(text, ()))

    recorder = copy.copy(renderer)
    recorder._encode = record  # type: ignore[method-assign]
    with contextlib.suppress(Exception):
        recorder._bos_tokens  # noqa: B018 - evaluated for the texts it encodes
    for messages in conversations:
        try:
            turn_start = recorder._last_assistant_turn_start_index(messages[:-1])
            contexts = recorder._contexts(messages, turn_start)
        except Exception:
            continue
        for message, ctx in zip(messages, contexts, strict=False):
            with contextlib.suppress(Exception):
                recorder.render_message(message, ctx)
    return list(texts)


# -- Llama 3 fast path --------------------------------------------------------------------


def _output_is_trained(
    train_on_what: TrainOnWhat, message: Message, is_last: bool, in_last_turn: bool
) -> bool:
    """``Renderer._output_is_trained`` without building a ``RenderContext`` per message."""
    is_assistant = message["role"] == "assistant"
    match train_on_what:
        case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            return is_last and is_assistant
        case TrainOnWhat.LAST_ASSISTANT_TURN:
            return is_assistant and in_last_turn
        case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            return is_assistant
        case TrainOnWhat.ALL_MESSAGES | TrainOnWhat.ALL_TOKENS:
            return True
        case TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
            return message["role"] in ("user", "system")
        case TrainOnWhat.CUSTOMIZED:
            return bool(message.get("trainable", False))
    raise AssertionError(f"unhandled train_on_what: {train_on_what}")


def _llama3_texts(messages: list[Message], customized: bool) -> list[tuple[str, str]]:
    """(header text, output text) per message, exactly as ``Llama3Renderer.render_message``.

    Raises on anything unusual (a ``trainable`` flag that does not fit ``customized``, a
    missing field, multimodal content); the caller then lets the renderer raise its own error.
    """
    texts = []
    for message in messages:
        if ("trainable" in message) != customized:
            raise ValueError("trainable flag does not fit train_on_what")
        texts.append(
            (
                f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n",
                ensure_text(message["content"]) + "<|eot_id|>",
            )
        )
    return texts


def _llama3_examples(
    renderer: Renderer, conversations: Sequence[list[Message]], train_on_what: TrainOnWhat
) -> list[Example]:
    bos = renderer._bos_tokens
    if not bos:  # the float32 dtype below relies on the BOS weight 0.0
        return _generic_examples(renderer, conversations, train_on_what)
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    plans: list[list[tuple[str, str]] | None] = []
    for messages in conversations:
        try:
            plans.append(_llama3_texts(messages, customized))
        except Exception:
            # The renderer raises its own error (type and message) for this conversation, in
            # conversation order; should it not, its own result is used for this one.
            renderer.build_supervised_example(messages, train_on_what)
            plans.append(None)

    memo = TokenMemo(renderer)
    memo.prefetch(text for plan in plans if plan for pair in plan for text in pair)
    make_chunk = tinker.EncodedTextChunk.model_construct
    chunks = {text: make_chunk(tokens=ids) for text, ids in memo.ids.items()}
    bos_chunk = make_chunk(tokens=list(bos))
    header_weight = float(train_on_what == TrainOnWhat.ALL_TOKENS)
    # Only these two modes can zero a generation prompt (Renderer._first_trained_message_index).
    check_prompt = train_on_what in (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
    )
    view: Renderer | None = None

    examples: list[Example] = []
    for messages, plan in zip(conversations, plans, strict=True):
        if plan is None:
            examples.append(renderer.build_supervised_example(messages, train_on_what))
            continue
        last = len(messages) - 1
        # Renderer._last_assistant_turn_start_index(messages[:-1]), as supervised_segments.
        turn_start = 1 + max((i for i in range(last) if messages[i]["role"] == "user"), default=-1)
        conv_chunks = [bos_chunk]
        weights = [0.0]
        lengths = [len(bos)]
        for i, (message, (header, output)) in enumerate(zip(messages, plan, strict=True)):
            header_chunk = chunks[header]
            output_chunk = chunks[output]
            conv_chunks += (header_chunk, output_chunk)
            weights += (
                header_weight,
                float(_output_is_trained(train_on_what, message, i == last, i >= turn_start)),
            )
            lengths += (len(header_chunk.tokens), len(output_chunk.tokens))
        model_input = tinker.ModelInput.model_construct(chunks=conv_chunks)
        # The BOS weight is the float 0.0, so the reference's torch.tensor() is float32.
        weight_array = np.repeat(np.array(weights, dtype=np.float32), lengths)
        if check_prompt:
            if view is None:
                view = copy.copy(renderer)
                view._encode = memo.encode  # type: ignore[method-assign]
            weight_array = view._train_after_the_generation_prompt(
                messages, train_on_what, model_input, weight_array
            )
        examples.append((model_input, weight_array))
    return examples


_FAST_PATHS: dict[
    type[Renderer],
    Callable[[Renderer, Sequence[list[Message]], TrainOnWhat], list[Example]],
] = {Llama3Renderer: _llama3_examples}

__all__ = ["TokenMemo", "build_supervised_examples_batch", "encode_many"]
