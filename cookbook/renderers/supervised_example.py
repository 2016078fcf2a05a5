"""Supervised examples: a conversation -> tokens + per-token loss weights (the half of
:class:`~cookbook.renderers.base.Renderer` that the reference's ``build_supervised_example``
and ``build_supervised_examples`` are).

One loop renders the example's chunks and their weights (``_render_for_training``);
``supervised_segments`` adds which message and part (bos/header/output/stop_overlap) each chunk
belongs to, so the parity harness can report where a diverging token comes from, while
``build_supervised_example`` builds the example from the chunks directly. Weights are ``numpy``
arrays; the dtype follows the reference's ``torch.tensor(weights)``: float32 once a BOS weight
or prompt zeroing is involved, else int64.

Everything here is importable from ``cookbook.renderers.base`` as well, where the reference
keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import tinker

from cookbook.exceptions import RendererError, TrainableFlagError
from cookbook.renderers.encoding import rendering_call
from cookbook.renderers.types import (
    Message,
    RenderContext,
    TrainOnWhat,
    model_input,
    text_chunk,
)

# The warning keeps the logger it always had (the reference logs it from renderers.base too).
logger = logging.getLogger("cookbook.renderers.base")

_UNWARNED: ContextVar[bool] = ContextVar("unwarned_rendering", default=False)


@contextmanager
def renderings_of_our_own() -> Iterator[None]:
    """Renderings the reference never makes (a run's comparison artifacts re-render its first
    batch) log no extension-property warning: a run warns once per conversation the reference
    renders, as it does, not once more for our bookkeeping."""
    token = _UNWARNED.set(True)
    try:
        yield
    finally:
        _UNWARNED.reset(token)


class SegmentKind(StrEnum):
    BOS = "bos"
    HEADER = "header"
    OUTPUT = "output"
    STOP_OVERLAP = "stop_overlap"


class Segment(NamedTuple):
    """One chunk of a supervised example and the weight every token in it gets.

    A named tuple, not a frozen dataclass: a conversation makes two per message, and building
    a frozen dataclass costs three times as much."""

    message_index: int
    """-1 for the BOS segment, which belongs to no message."""
    kind: SegmentKind
    chunk: tinker.ModelInputChunk
    weight: int | float


_TEXT_CHUNK = tinker.EncodedTextChunk
_new_tuple = tuple.__new__

# The modes whose loss starts after a generation prompt (_first_trained_message_index).
_PROMPTED = frozenset({TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.LAST_ASSISTANT_TURN})

# Whether a message's output carries loss, per mode, from the message, whether it is the last
# one and whether it is in the last assistant turn (Renderer._output_is_trained; the batch
# templates call it without building a RenderContext): one call per message rather than a walk
# down a match statement.
OUTPUT_IS_TRAINED: dict[TrainOnWhat, Callable[[Message, bool, bool], bool]] = {
    TrainOnWhat.LAST_ASSISTANT_MESSAGE: lambda m, last, turn: last and m["role"] == "assistant",
    TrainOnWhat.LAST_ASSISTANT_TURN: lambda m, last, turn: turn and m["role"] == "assistant",
    TrainOnWhat.ALL_ASSISTANT_MESSAGES: lambda m, last, turn: m["role"] == "assistant",
    TrainOnWhat.ALL_MESSAGES: lambda m, last, turn: True,
    TrainOnWhat.ALL_TOKENS: lambda m, last, turn: True,
    TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES: lambda m, last, turn: m["role"] in ("user", "system"),
    TrainOnWhat.CUSTOMIZED: lambda m, last, turn: bool(m.get("trainable", False)),
}


def _last_user_index(messages: list[Message]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            return index
    return -1


class SupervisedExampleMixin:
    """The supervised half of :class:`~cookbook.renderers.base.Renderer`, which mixes it in:
    it renders through the renderer's ``render_message``, ``_bos_tokens``, ``_contexts``,
    ``_last_assistant_turn_start_index``, ``build_generation_prompt``,
    ``has_extension_property`` and ``disables_thinking``, the conversation that
    ``_supervised_conversation`` makes of the caller's."""

    def supervised_segments(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat,
        *,
        message_indices: Sequence[int] | None = None,
    ) -> list[Segment]:
        """The chunks of a supervised example in order, each with its message and weight.

        ``message_indices[i]``: the index reported for the i-th rendered message, for renderers
        that render a reshaped conversation (a built-in system message, reordered tool results)
        but report indices into the caller's; default ``i``. Without it, the conversation is
        the one ``_supervised_conversation`` makes of ``messages``."""
        train_on_what = TrainOnWhat(train_on_what)
        if message_indices is None:
            messages, message_indices = self._supervised_conversation(messages)
        chunks, weights, owners = self._render_for_training(
            messages, train_on_what, message_indices, owners=True
        )
        # tuple.__new__ is what Segment(...) calls, without its Python-level __new__.
        return [
            _new_tuple(Segment, (index, kind, chunk, weight))
            for (index, kind), chunk, weight in zip(owners, chunks, weights, strict=True)
        ]

    def _supervised_conversation(
        self, messages: list[Message]
    ) -> tuple[list[Message], Sequence[int] | None]:
        """The conversation rendered for ``messages`` and the caller's index of each rendered
        message (None: the same). A renderer that renders a reshaped conversation overrides
        this rather than ``supervised_segments``, so ``build_supervised_example`` keeps the
        path that builds no :class:`Segment` (an override of ``supervised_segments`` makes it
        take every segment and flatten them again)."""
        return messages, None

    def _render_for_training(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat,
        message_indices: Sequence[int] | None = None,
        *,
        owners: bool = False,
    ) -> tuple[list[tinker.ModelInputChunk], list[int | float], list[tuple[int, SegmentKind]]]:
        """The example's chunks, the weight of each and, with ``owners``, each one's message
        index and kind: the columns of ``supervised_segments``, so that the example itself is
        built without a :class:`Segment` per chunk only to take them apart again."""
        self._warn_if_prefixes_differ(train_on_what)
        chunks: list[tinker.ModelInputChunk] = []
        weights: list[int | float] = []
        owned: list[tuple[int, SegmentKind]] = []
        if bos := self._bos_tokens:
            chunks.append(text_chunk(list(bos)))
            weights.append(0.0)
            owned.append((-1, SegmentKind.BOS))
        customized = train_on_what == TrainOnWhat.CUSTOMIZED
        header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
        contexts = self._contexts(messages, self._last_assistant_turn_start_index(messages[:-1]))
        render = self.render_message
        # The table directly unless a subclass decides for itself.
        rule = (
            OUTPUT_IS_TRAINED[train_on_what]
            if type(self)._output_is_trained is SupervisedExampleMixin._output_is_trained
            else None
        )
        for message, ctx in zip(messages, contexts, strict=True):
            if ("trainable" in message) is not customized:
                raise TrainableFlagError(
                    f"message {ctx.idx} has no 'trainable' field, which CUSTOMIZED requires"
                    if customized
                    else f"message {ctx.idx} has a 'trainable' field, which only CUSTOMIZED allows"
                )
            rendered = render(message, ctx)
            header, output = rendered.header, rendered.output
            if header:
                chunks.append(header)
                weights.append(header_weight)
            weight = int(
                self._output_is_trained(message, ctx, train_on_what)
                if rule is None
                else rule(message, ctx.is_last, ctx.in_last_assistant_turn)
            )
            chunks += output
            weights += [weight] * len(output)
            stop_overlap = rendered.stop_overlap if ctx.is_last else None
            if stop_overlap:
                chunks.append(stop_overlap)
                weights.append(weight)
            if owners:
                index = ctx.idx if message_indices is None else message_indices[ctx.idx]
                if header:
                    owned.append((index, SegmentKind.HEADER))
                owned += [(index, SegmentKind.OUTPUT)] * len(output)
                if stop_overlap:
                    owned.append((index, SegmentKind.STOP_OVERLAP))
        return chunks, weights, owned

    def _warn_if_prefixes_differ(self, train_on_what: TrainOnWhat) -> None:
        """Once per call, as the reference warns (the batch path's templates: per conversation).
        Its cost is the logging framework's, one record (~10 us with a handler)."""
        if (
            train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES
            and not self.has_extension_property
            and not _UNWARNED.get()
        ):
            logger.warning(
                "train_on_what=ALL_ASSISTANT_MESSAGES with a renderer that lacks the extension "
                "property: earlier assistant messages see a prefix that generation never "
                "produces; prefer build_supervised_examples."
            )

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        """Tokens and one loss weight per token for supervised fine-tuning."""
        train_on_what = TrainOnWhat(train_on_what)
        if train_on_what not in _PROMPTED:
            return self._assemble_example(messages, train_on_what)
        # The generation prompt re-renders the conversation's start: memoise this call's texts.
        with rendering_call():
            return self._assemble_example(messages, train_on_what)

    def _assemble_example(
        self, messages: list[Message], train_on_what: TrainOnWhat
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        if type(self).supervised_segments is SupervisedExampleMixin.supervised_segments:
            conversation, _ = self._supervised_conversation(messages)
            chunks, weights, _ = self._render_for_training(conversation, train_on_what)
        else:  # a renderer of its own segments: as they are
            segments = self.supervised_segments(messages, train_on_what)
            chunks = [segment.chunk for segment in segments]
            weights = [segment.weight for segment in segments]
        # A text chunk's length is its tokens' (the property costs twice as much).
        lengths = [
            len(chunk.tokens) if type(chunk) is _TEXT_CHUNK else chunk.length for chunk in chunks
        ]
        # The chunks are model instances already: nothing to validate.
        example = model_input(chunks)
        weight_array = np.array(weights, dtype=_weight_dtype(weights, lengths)).repeat(lengths)
        if train_on_what not in _PROMPTED:  # no generation prompt to withhold loss from
            return example, weight_array
        return example, self._train_after_the_generation_prompt(
            messages, train_on_what, example, weight_array
        )

    def build_supervised_examples(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_TURN,
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        """One example, or one per trained assistant message without the extension property."""
        train_on_what = TrainOnWhat(train_on_what)
        if self.has_extension_property:
            return [self.build_supervised_example(messages, train_on_what)]
        match train_on_what:
            case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
                candidates = range(len(messages) - 1, len(messages))
            case TrainOnWhat.LAST_ASSISTANT_TURN:
                candidates = range(self._last_assistant_turn_start_index(messages), len(messages))
            case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
                candidates = range(len(messages))
            case _:
                raise NotImplementedError(
                    f"build_supervised_examples cannot split {train_on_what} for a renderer "
                    "without the extension property: it weights messages that are not turns "
                    "the model produces, so there is no prompt to end each example at."
                )
        return [
            self.build_supervised_example(messages[: idx + 1], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
            for idx in candidates
            if messages[idx]["role"] == "assistant"
        ]

    def _train_after_the_generation_prompt(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat,
        model_input: tinker.ModelInput,
        weights: np.ndarray,
    ) -> np.ndarray:
        """Withhold loss from every token the generation prompt would have supplied."""
        boundary = self._first_trained_message_index(messages, train_on_what)
        if boundary is None:
            return weights
        if not all(isinstance(c, tinker.EncodedTextChunk) for c in model_input.chunks):
            return weights
        prompt = self.build_generation_prompt(messages[:boundary]).to_ints()
        if model_input.to_ints()[: len(prompt)] != prompt:
            if self.disables_thinking:
                raise RendererError(
                    f"{type(self).__name__} has thinking turned off: its generation prompt "
                    "closes the think block, which tells the model not to reason. This turn "
                    "contains reasoning, so training on it would teach the model to reason "
                    "anyway, after being told not to. Either use the thinking version of this "
                    "renderer, or remove the reasoning from this turn."
                )
            return weights
        return np.concatenate(
            [np.zeros(len(prompt), dtype=np.float32), weights[len(prompt) :].astype(np.float32)]
        )

    def _output_is_trained(
        self, message: Message, ctx: RenderContext, train_on_what: TrainOnWhat
    ) -> bool:
        is_trained = OUTPUT_IS_TRAINED.get(train_on_what)
        if is_trained is None:
            raise RendererError(f"Unknown train_on_what: {train_on_what}")
        return is_trained(message, ctx.is_last, ctx.in_last_assistant_turn)

    def _first_trained_message_index(
        self, messages: list[Message], train_on_what: TrainOnWhat
    ) -> int | None:
        match train_on_what:
            case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
                boundary = len(messages) - 1
            case TrainOnWhat.LAST_ASSISTANT_TURN:
                boundary = _last_user_index(messages) + 1
            case _:
                return None
        if not 0 <= boundary < len(messages):
            return None
        return boundary if messages[boundary]["role"] == "assistant" else None


def _weight_dtype(weights: Sequence[int | float], lengths: list[int]) -> type[np.generic]:
    """The dtype of ``torch.tensor(weights)`` in the reference: float32 if any weight of a
    non-empty segment is a float (the BOS 0.0), or if there is no token at all; else int64."""
    if set(map(type, weights)) <= {int}:  # the common case, decided without a Python loop
        return np.int64 if any(lengths) else np.float32
    if not any(lengths):
        return np.float32
    for weight, length in zip(weights, lengths, strict=True):
        if length and isinstance(weight, float):  # the BOS, first: one step
            return np.float32
    return np.int64
