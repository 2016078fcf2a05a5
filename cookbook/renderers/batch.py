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
Three routes get there:

* a template fast path for renderers whose plain messages are a fixed frame around their
  content (mechanism: ``batch_template.py``; assembly, pipelined with the encodes of a large
  batch's parts: ``batch_template_examples.py``, ``encode_pipeline.py``; data:
  ``batch_templates_core.py`` for Llama 3, role_colon, Kimi K2 and DeepSeek V3 without
  thinking, ``batch_templates_<family>.py`` for Kimi K2.5/K2.6, DeepSeek V3 with thinking and
  V4.1, gpt-oss, Nemotron 3, GLM-5.3 and Qwen (Qwen3, Qwen3-VL, Qwen3.5, Qwen3.8); exact
  types only, a subclass may override anything). It builds the texts directly, reuses one
  chunk object per distinct text and computes weights with ``numpy``.
* a renderer that renders whole conversations only (``renders_whole_conversations``: tml_v0)
  is asked for the batch itself (``_batch_examples``): recording its messages would only
  raise; it frames its plain conversations together (``tml_v0_batch.py``) and renders the
  rest one by one.
* a generic path for every other renderer, through the ``Renderer._encode`` and
  ``Renderer._encode_split`` hooks: a recording pass (or a few) runs ``render_message`` on a
  throwaway copy of the renderer that only records the texts it asks to encode, then those are
  batch-encoded, then a second copy whose hooks look them up runs the renderer's own
  ``build_supervised_example`` (if its first conversations ask for texts the recording missed,
  the rest are recorded through the copy's ``build_supervised_example`` instead). Recording is
  only a prefetch hint: any text it missed is encoded on demand, so correctness never depends
  on it.

``tests/test_batch.py`` and ``tests/test_batch_parity.py`` pin both routes to the
per-conversation output for every ``TrainOnWhat``, every golden case and generated
conversations.

Chunks are frozen pydantic models; the fast path shares one chunk (and its token list) between
all examples that contain the same text, so treat ``chunk.tokens`` as read-only.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Collection, Sequence
from typing import Any

from cookbook.renderers import (
    batch_templates_core,
    batch_templates_deepseek,
    batch_templates_glm5_3,
    batch_templates_gpt_oss,
    batch_templates_kimi,
    batch_templates_nemotron3,
    batch_templates_qwen,
)
from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_memo import TokenMemo, encode_many, memo_view
from cookbook.renderers.batch_template import ChatTemplate
from cookbook.renderers.batch_template_examples import template_examples
from cookbook.renderers.types import Example, Message, RenderContext, TrainOnWhat

# Every renderer class on the template path: the core's and each family module's.
TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    **batch_templates_core.TEMPLATES,
    **batch_templates_kimi.TEMPLATES,
    **batch_templates_deepseek.TEMPLATES,
    **batch_templates_gpt_oss.TEMPLATES,
    **batch_templates_nemotron3.TEMPLATES,
    **batch_templates_glm5_3.TEMPLATES,
    **batch_templates_qwen.TEMPLATES,
}

# Recording passes of the generic path at most (see _prefetch_rendered_texts).
_RECORDING_ROUNDS = 3

# The generic path records and renders this many conversations first, then records the rest
# whole if those asked for more than this many texts per conversation that recording missed.
_PROBE = 8
_MISSES_PER_CONVERSATION = 0.5


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
    if getattr(type(renderer), "renders_whole_conversations", False):  # tml_v0: tml_v0_batch
        return renderer._batch_examples(
            conversations, train_on_what, not _has_instance_overrides(renderer)
        )
    template = TEMPLATES.get(type(renderer))
    if template is not None and not _has_instance_overrides(renderer) and template.usable(renderer):
        return template_examples(template, renderer, conversations, train_on_what)
    return _generic_examples(renderer, conversations, train_on_what)


def _has_instance_overrides(renderer: Renderer) -> bool:
    """True if a method was replaced on the instance, which a type-keyed fast path would miss."""
    cls = type(renderer)
    return any(callable(getattr(cls, name, None)) for name in vars(renderer))


# -- generic path -------------------------------------------------------------------------


def _generic_examples(
    renderer: Renderer, conversations: Sequence[list[Message]], train_on_what: TrainOnWhat
) -> list[Example]:
    """Record the first ``_PROBE`` conversations message by message and render them for real;
    if they asked for texts the recording missed (a renderer that reshapes the conversation
    before rendering its messages: DeepSeek V4.1's template turns drop reasoning from history),
    record the rest through the renderer's own ``build_supervised_example``, else message by
    message, which is cheaper where it finds everything (most renderers miss nothing, or one
    fixed text per batch: Kimi's default system prompt)."""
    memo = TokenMemo(renderer)
    view = memo_view(renderer, memo)
    head, rest = conversations[:_PROBE], conversations[_PROBE:]
    _prefetch_rendered_texts(renderer, head, memo)
    known = _size(memo)
    examples = [view.build_supervised_example(m, train_on_what) for m in head]
    if rest:
        if _size(memo) - known > len(head) * _MISSES_PER_CONVERSATION:
            _prefetch_whole_conversations(renderer, rest, memo, train_on_what)
        else:
            _prefetch_rendered_texts(renderer, rest, memo)
        examples += (view.build_supervised_example(m, train_on_what) for m in rest)
    return examples


def _size(memo: TokenMemo) -> int:
    return len(memo.ids) + len(memo.split_ids)


def _prefetch_rendered_texts(
    renderer: Renderer, conversations: Sequence[list[Message]], memo: TokenMemo
) -> None:
    """Batch-encode the texts ``render_message`` asks ``_encode`` and ``_encode_split`` for,
    found by running it on recording copies.

    A recording copy gets the memo's ids for texts already encoded and empty lists for the
    rest, so a renderer that looks at the tokens may fail or ask for other texts; such failures
    are skipped, the copy (and anything it cached) is thrown away, and the real pass encodes
    whatever was missed. Added-token texts (markers) are encoded at once, so a renderer that
    unpacks a marker's id (``(token,) = self._encode(marker)``, DeepSeek) renders in the first
    round; one that fails on other unknown ids gets further rounds, each rerunning only the
    failed messages with what the last round found, for as long as a round finds new texts.
    """
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
                with contextlib.suppress(Exception):
                    turn_start = recorder._last_assistant_turn_start_index(messages[:-1])
                    pending += zip(messages, recorder._contexts(messages, turn_start), strict=False)
        failed = []
        for message, ctx in pending:
            try:
                recorder.render_message(message, ctx)
            except Exception:
                failed.append((message, ctx))
        known = _size(memo)
        memo.prefetch(texts)
        memo.prefetch(split_texts, split=True)
        if not failed or _size(memo) == known:
            return
        pending = failed


def _prefetch_whole_conversations(
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    memo: TokenMemo,
    train_on_what: TrainOnWhat,
) -> None:
    """Batch-encode what a recording copy's ``build_supervised_example`` asks for: every text
    of the real pass, reshaping and generation prompt included, where the copy does not fail
    on its stand-in ids (a conversation that fails is encoded on demand in the real pass)."""
    texts: dict[str, None] = {}
    split_texts: dict[str, None] = {}
    recorder = _recording_copy(renderer, memo, texts, split_texts)
    # Texts do not depend on which messages are weighted, and ALL_ASSISTANT_MESSAGES would log
    # its warning a second time for each conversation.
    if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        train_on_what = TrainOnWhat.ALL_MESSAGES
    for messages in conversations:
        with contextlib.suppress(Exception):
            recorder.build_supervised_example(messages, train_on_what)
    memo.prefetch(texts)
    memo.prefetch(split_texts, split=True)


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


# tokenizer -> its added tokens' texts: ``get_added_vocab`` builds a dict of every added
# token on each call (0.3-0.6 ms, a few percent of a 64-conversation batch).
_MARKERS: weakref.WeakKeyDictionary[Any, Collection[str]] = weakref.WeakKeyDictionary()


def _added_token_texts(tokenizer: Any) -> Collection[str]:
    """The texts of the tokenizer's added tokens (special markers), or none if it cannot say.

    Asked once per tokenizer: only a prefetch hint (a text missing here is recorded and
    batch-encoded like any other, a text no longer special is still encoded exactly), so a
    token added later costs time, never correctness. Not keyed on the vocabulary size:
    ``len(tokenizer)`` rebuilds the whole vocabulary (70 ms for Kimi's)."""
    with contextlib.suppress(TypeError):  # not weak-referenceable: asked each batch
        known = _MARKERS.get(tokenizer)
        if known is not None:
            return known
    try:
        markers = frozenset(tokenizer.get_added_vocab())
    except Exception:  # not a transformers tokenizer: record every text
        return ()
    with contextlib.suppress(TypeError):
        _MARKERS[tokenizer] = markers
    return markers


__all__ = ["TokenMemo", "build_supervised_examples_batch", "encode_many"]
