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

* a fast path for renderers whose template it knows (:class:`Llama3Renderer` and
  :class:`RoleColonRenderer`, exact types only: a subclass may override anything). It builds
  the texts directly, reuses one chunk object per distinct text and computes weights with
  ``numpy``. ``tests/test_batch.py`` pins it to the
  per-conversation output for every ``TrainOnWhat``.
* a generic path for every other renderer, through the ``Renderer._encode`` and
  ``Renderer._encode_split`` hooks: a recording pass (or a few) runs ``render_message`` on a
  throwaway copy of the renderer that only records the texts it asks to encode, then those are
  batch-encoded, then a second copy whose hooks look them up runs the renderer's own
  ``build_supervised_example``. Recording is only a prefetch hint: any text it missed is
  encoded on demand, so correctness never depends on it.

Chunks are frozen pydantic models; the fast path shares one chunk (and its token list) between
all examples that contain the same text, so treat ``chunk.tokens`` as read-only.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import tinker

from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_memo import TokenMemo, encode_many, memo_view
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.role_colon import RoleColonRenderer
from cookbook.renderers.types import Message, RenderContext, TrainOnWhat, ensure_text, text_chunk

Example = tuple[tinker.ModelInput, np.ndarray]

# Recording passes of the generic path at most (see _prefetch_rendered_texts).
_RECORDING_ROUNDS = 3


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


def _has_instance_overrides(renderer: Renderer) -> bool:
    """True if a method was replaced on the instance, which a type-keyed fast path would miss."""
    cls = type(renderer)
    return any(callable(getattr(cls, name, None)) for name in vars(renderer))


# -- generic path -------------------------------------------------------------------------


def _generic_examples(
    renderer: Renderer, conversations: Sequence[list[Message]], train_on_what: TrainOnWhat
) -> list[Example]:
    memo = TokenMemo(renderer)
    _prefetch_rendered_texts(renderer, conversations, memo, train_on_what)
    view = memo_view(renderer, memo)
    return [view.build_supervised_example(messages, train_on_what) for messages in conversations]


def _prefetch_rendered_texts(
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    memo: TokenMemo,
    train_on_what: TrainOnWhat,
) -> None:
    """Batch-encode the texts the renderer asks ``_encode`` and ``_encode_split`` for, found
    by running it on recording copies.

    A renderer that reshapes the conversation before rendering its messages (overrides
    ``supervised_segments``: Kimi's default system message, DeepSeek V4.1's template turns and
    dropped reasoning, gpt-oss's system and developer turns) is recorded through its own
    ``build_supervised_example``, which does the reshaping; every other renderer through
    ``render_message`` per message, which is all its supervised path renders (a tenth cheaper).
    A conversation that fails whole is recorded message by message as well.

    A recording copy gets the memo's ids for texts already encoded and empty lists for the
    rest, so a renderer that looks at the tokens may fail or ask for other texts; such failures
    are skipped, the copy (and anything it cached) is thrown away, and the real pass encodes
    whatever was missed. Added-token texts (markers) are encoded at once, so a renderer that
    unpacks a marker's id (``(token,) = self._encode(marker)``, DeepSeek) renders in the first
    round; one that fails on other unknown ids gets further rounds, each rerunning only the
    failed messages with what the last round found, for as long as a round finds new texts.
    """
    whole = type(renderer).supervised_segments is not Renderer.supervised_segments
    # Texts do not depend on which messages are weighted; ALL_ASSISTANT_MESSAGES would log its
    # warning a second time for each conversation.
    mode = (
        TrainOnWhat.ALL_MESSAGES
        if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES
        else train_on_what
    )
    pending: list[tuple[Message, RenderContext]] | None = None
    for _ in range(_RECORDING_ROUNDS):
        texts: dict[str, None] = {}
        split_texts: dict[str, None] = {}
        recorder = _recording_copy(renderer, memo, texts, split_texts)
        with contextlib.suppress(Exception):
            recorder._bos_tokens  # noqa: B018 - evaluated for the texts it encodes
        if pending is None:
            pending = []
            for messages in conversations:
                if whole:
                    try:
                        recorder.build_supervised_example(messages, mode)
                        continue
                    except Exception:
                        pass
                with contextlib.suppress(Exception):
                    turn_start = recorder._last_assistant_turn_start_index(messages[:-1])
                    pending += zip(messages, recorder._contexts(messages, turn_start), strict=False)
        failed = []
        for message, ctx in pending:
            try:
                recorder.render_message(message, ctx)
            except Exception:
                failed.append((message, ctx))
        known = len(memo.ids) + len(memo.split_ids)
        memo.prefetch(texts)
        memo.prefetch(split_texts, split=True)
        if not failed or len(memo.ids) + len(memo.split_ids) == known:
            return
        pending = failed


def _recording_copy(
    renderer: Renderer, memo: TokenMemo, texts: dict[str, None], split_texts: dict[str, None]
) -> Renderer:
    """A copy of ``renderer`` whose hooks note each text in ``texts`` / ``split_texts``."""

    # An added token's text (a marker) is encoded at once - memoised per tokenizer after the
    # first batch: a renderer that unpacks a marker's id (DeepSeek) then renders in the first
    # recording round instead of failing in it.
    markers = _added_token_texts(renderer.tokenizer)

    def record(text: str) -> list[int]:
        if text in markers:
            return memo.encode(text)
        texts[text] = None
        return list(memo.ids.get(text, ()))

    def record_split(text: str) -> list[int]:
        if text in markers:
            return memo.encode_split(text)
        split_texts[text] = None
        return list(memo.split_ids.get(text, ()))

    recorder = copy.copy(renderer)
    recorder._encode = record  # type: ignore[method-assign]
    recorder._encode_split = record_split  # type: ignore[method-assign]
    return recorder


# tokenizer -> (its size with added tokens, their texts): ``get_added_vocab`` builds a dict of
# every added token on each call (0.3-0.6 ms, a few percent of a 64-conversation batch).
_MARKERS: weakref.WeakKeyDictionary[Any, tuple[int, Collection[str]]] = weakref.WeakKeyDictionary()


def _added_token_texts(tokenizer: Any) -> Collection[str]:
    """The texts of the tokenizer's added tokens (special markers), or none if it cannot say.

    Only a prefetch hint (a text missing here is recorded and batch-encoded like any other), so
    a stale answer costs time, never correctness; the tokenizer's size keys it all the same."""
    try:
        size = len(tokenizer)
        known = _MARKERS.get(tokenizer)
        if known is not None and known[0] == size:
            return known[1]
        markers = frozenset(tokenizer.get_added_vocab())
    except Exception:  # not a transformers tokenizer: record every text
        return ()
    with contextlib.suppress(TypeError):  # not weak-referenceable: asked again next batch
        _MARKERS[tokenizer] = (size, markers)
    return markers


# -- template fast path (Llama 3, role_colon) ---------------------------------------------


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


# (header, output, stop_overlap) text of one message; the stop_overlap is used only when the
# message is the conversation's last, as Renderer.supervised_segments does.
MessageTexts = tuple[str, str, str | None]


def _llama3_texts(message: Message) -> MessageTexts:
    """As ``Llama3Renderer.render_message``."""
    return (
        f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n",
        ensure_text(message["content"]) + "<|eot_id|>",
        None,
    )


def _role_colon_texts(message: Message) -> MessageTexts:
    """As ``RoleColonRenderer.render_message``."""
    role = message["role"]
    return (
        role.capitalize() + ":",
        f" {ensure_text(message['content'])}\n\n",
        "User:" if role == "assistant" else "<UNUSED>",
    )


def _conversation_texts(
    message_texts: Callable[[Message], MessageTexts], messages: list[Message], customized: bool
) -> list[MessageTexts]:
    """Every message's texts; raises on anything unusual (a ``trainable`` flag that does not
    fit ``customized``, a missing field, multimodal content), and the caller then lets the
    renderer raise its own error."""
    texts = []
    for message in messages:
        if ("trainable" in message) != customized:
            raise ValueError("trainable flag does not fit train_on_what")
        texts.append(message_texts(message))
    return texts


def _template_examples(
    message_texts: Callable[[Message], MessageTexts],
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
) -> list[Example]:
    """Examples of a renderer whose messages are fixed functions of their own text (no context:
    Llama 3, role_colon): texts planned directly, encoded in one batch, one chunk per distinct
    text, weights with numpy."""
    bos = renderer._bos_tokens
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    plans: list[list[MessageTexts] | None] = []
    for messages in conversations:
        try:
            plans.append(_conversation_texts(message_texts, messages, customized))
        except Exception:
            # The renderer raises its own error (type and message) for this conversation, in
            # conversation order; should it not, its own result is used for this one.
            renderer.build_supervised_example(messages, train_on_what)
            plans.append(None)

    memo = TokenMemo(renderer)
    memo.prefetch(text for plan in plans if plan for texts in plan for text in texts if text)
    chunks = {text: text_chunk(ids) for text, ids in memo.ids.items()}
    bos_chunk = text_chunk(list(bos))
    header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
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
        conv_chunks = [bos_chunk] if bos else []
        weights: list[int | float] = [0.0] if bos else []
        for i, (message, (header, output, overlap)) in enumerate(zip(messages, plan, strict=True)):
            trained = int(_output_is_trained(train_on_what, message, i == last, i >= turn_start))
            conv_chunks += (chunks[header], chunks[output])
            weights += (header_weight, trained)
            if overlap is not None and i == last:
                conv_chunks.append(chunks[overlap])
                weights.append(trained)
        lengths = [len(chunk.tokens) for chunk in conv_chunks]
        model_input = tinker.ModelInput.model_construct(chunks=conv_chunks)
        # torch.tensor() of the reference: the BOS weight 0.0 (or no data) makes it float32.
        dtype = np.float32 if bos or not any(lengths) else np.int64
        weight_array = np.repeat(np.array(weights, dtype=dtype), lengths)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, memo)
            weight_array = view._train_after_the_generation_prompt(
                messages, train_on_what, model_input, weight_array
            )
        examples.append((model_input, weight_array))
    return examples


_FAST_PATHS: dict[
    type[Renderer],
    Callable[[Renderer, Sequence[list[Message]], TrainOnWhat], list[Example]],
] = {
    Llama3Renderer: functools.partial(_template_examples, _llama3_texts),
    RoleColonRenderer: functools.partial(_template_examples, _role_colon_texts),
}

__all__ = ["TokenMemo", "build_supervised_examples_batch", "encode_many"]
