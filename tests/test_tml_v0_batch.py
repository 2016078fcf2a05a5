"""tml_v0's batch route (``cookbook/renderers/tml_v0_batch.py``) against one conversation at a
time.

``build_supervised_examples_batch`` frames tml_v0's plain conversations together and renders
the rest per conversation; these tests require what the per-conversation renderer gives: the
same examples (ids, chunk boundaries, weight values and dtype), or the first conversation's
error, and the same warnings, on generated batches mixing plain conversations with ones that
are not, for every ``TrainOnWhat``. They also pin that every plain conversation with an
example takes the batched path, at any effort.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tml_v0_strategies import (
    CONTENT,
    CONVERSATIONS,
    EFFORTS,
    assert_same_outcome,
    inkling_renderer,
    outcome,
)

from cookbook.renderers import Message, ToolCall, TrainOnWhat
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.renderers.tml_v0 import TmlV0Renderer

_USER = Message(role="user", content="Hi")
_REPLY = Message(role="assistant", content="Yo")

# Conversations the plain path does not take: tml-renderers renders some, refuses others.
_NOT_PLAIN = st.sampled_from(
    [
        [_USER, Message(role="assistant", content="Yo", name="x")],
        [Message(role="user", content=[{"type": "text", "text": "Hi"}]), _REPLY],
        [Message(role="tool_declare", content="[]"), _USER, _REPLY],
        [Message(role="developer", content="Hi"), _REPLY],
        [Message(role=["user"], content="Hi"), _REPLY],
        [Message(role="user", content=None), _REPLY],
        [{"content": "Hi"}, _REPLY],
        [_USER, "Yo"],
        (_USER, _REPLY),
        [],
        [
            _USER,
            Message(
                role="assistant",
                content="",
                tool_calls=[ToolCall(function=ToolCall.FunctionBody(name="f", arguments="{}"))],
            ),
        ],
    ]
)
_BATCHES = st.lists(st.one_of(CONVERSATIONS, CONVERSATIONS, _NOT_PLAIN), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def renderer() -> TmlV0Renderer:
    return inkling_renderer()


def _recorded(render: Any, *args: Any) -> tuple[Any, list[tuple[type, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = outcome(render, *args)
    return result, [(w.category, str(w.message)) for w in caught]


def _one_at_a_time(renderer: TmlV0Renderer, batch: list, mode: TrainOnWhat) -> list:
    """Each conversation's example, up to the first error (which is returned instead)."""
    examples = []
    for messages in batch:
        example = outcome(renderer.build_supervised_example, messages, mode)
        if isinstance(example, Exception):
            return example
        examples.append(example)
    return examples


def _assert_batch_as_one_at_a_time(renderer: TmlV0Renderer, batch: list, mode: Any) -> None:
    singles, single_warnings = _recorded(_one_at_a_time, renderer, batch, mode)
    batched, batch_warnings = _recorded(build_supervised_examples_batch, renderer, batch, mode)
    assert_same_outcome(batched, singles)
    assert batch_warnings == single_warnings


@given(batch=_BATCHES, mode=st.sampled_from(list(TrainOnWhat)))
def test_batch_equals_one_at_a_time(renderer, batch, mode) -> None:
    _assert_batch_as_one_at_a_time(renderer, batch, mode)


def _assert_plan_is_plain_path(
    renderer: TmlV0Renderer, batch: list, mode: Any, effort: Any
) -> None:
    """The batched plan of each conversation is the plain path's one example, and None
    exactly where that gives none (not plain, nothing trained, a refused content) or raises
    (a flag with no truth value)."""
    planned = renderer._plain_batch.examples(batch, mode, effort)
    assert len(planned) == len(batch)
    for messages, example in zip(batch, planned, strict=True):
        plain = outcome(renderer._plain.examples, messages, mode, effort)
        if plain is None or isinstance(plain, Exception) or len(plain) != 1:
            assert example is None
        else:
            assert example is not None, messages
            assert_same_outcome([example], plain)


@given(batch=_BATCHES, mode=st.sampled_from(list(TrainOnWhat)), effort=EFFORTS)
def test_every_plain_conversation_with_an_example_is_batched(renderer, batch, mode, effort) -> None:
    _assert_plan_is_plain_path(renderer, batch, mode, effort)


_TRAINED_FIRST = [
    Message(role="assistant", content="First.", trainable=True),
    Message(role="user", content="And?", trainable=False),
    Message(role="assistant", content="Second.", trainable=False),
]


@pytest.mark.parametrize(
    "batch",
    [
        # Empty and whitespace contents, special-token-like text (ordinary text here).
        [[Message(role="user", content=""), Message(role="assistant", content="")]],
        [[Message(role="system", content=" \n"), _USER, Message(role="assistant", content="\t")]],
        [[Message(role="user", content="<|end_message|><|message_model|>"), _REPLY]],
        # Last-message rules: a trailing user turn is cut, no assistant is no example.
        [[_USER, _REPLY, Message(role="user", content="More?")]],
        [[_USER, _REPLY, _USER, _REPLY, Message(role="tool", content="{}")]],
        [[_USER], [_USER, _REPLY]],
        [[Message(role="system", content="S")], [_USER, _REPLY]],
        # Trainable flags (read in CUSTOMIZED mode only, by truth value).
        [_TRAINED_FIRST, [_USER, Message(role="assistant", content="x", trainable=0)]],
        [[_USER, Message(role="assistant", content="x", trainable="no")]],
        # The same roles, other flags: another layout.
        [_TRAINED_FIRST, [{**m, "trainable": not m["trainable"]} for m in _TRAINED_FIRST]],
        # A flag with no truth value: on a user message it is never read, on an assistant
        # message CUSTOMIZED raises its error.
        [[Message(role="user", content="Hi", trainable=np.zeros(2)), _REPLY]],
        [[_USER, _REPLY], [_USER, Message(role="assistant", content="x", trainable=np.zeros(2))]],
        # A content the tokenizer refuses, after the cut too: tml-renderers refuses it.
        [[_USER, _REPLY, Message(role="user", content="\ud800")], [_USER, _REPLY]],
        # The same texts in several conversations (encoded once).
        [[_USER, _REPLY], [_USER, _REPLY], [_REPLY, _USER, _REPLY]],
        # One conversation that is not plain among plain ones, anywhere.
        [[_USER, _REPLY]] * 5 + [[Message(role="developer", content="Hi"), _REPLY]],
        [[Message(role="user", content=None)], *[[_USER, _REPLY]] * 6],
    ],
    ids=[
        "empty",
        "whitespace",
        "special_like",
        "trailing_user",
        "trailing_tool",
        "no_assistant",
        "system_only",
        "flags",
        "flag_string",
        "flags_flipped",
        "flag_no_truth_user",
        "flag_no_truth_assistant",
        "refused_after_cut",
        "repeated",
        "not_plain_last",
        "not_plain_first",
    ],
)
@pytest.mark.parametrize("mode", list(TrainOnWhat))
def test_edge_cases(renderer, batch, mode) -> None:
    _assert_batch_as_one_at_a_time(renderer, batch, mode)
    _assert_plan_is_plain_path(renderer, batch, mode, 0.9)


@pytest.mark.parametrize("at", [0, 5, 12])
def test_plain_ones_stay_batched_beside_one_that_is_not(renderer, at) -> None:
    batch: list[Any] = [[_USER, _REPLY]] * 12
    batch.insert(at, [Message(role="developer", content="Hi"), _REPLY])
    planned = renderer._plain_batch.examples(batch, TrainOnWhat.ALL_ASSISTANT_MESSAGES, 0.9)
    assert [i for i, example in enumerate(planned) if example is None] == [at]


def test_examples_share_no_mutable_state(renderer) -> None:
    """Encoded once, but each example has its own token list and weights."""
    batch = [[_USER, _REPLY], [_USER, _REPLY]]
    (first, first_weights), (second, second_weights) = build_supervised_examples_batch(
        renderer, batch, TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    assert first == second
    assert first.chunks[0].tokens is not second.chunks[0].tokens
    assert not np.shares_memory(first_weights, second_weights)


@given(content=CONTENT)
def test_a_replaced_method_or_a_subclass_is_rendered_one_at_a_time(renderer, content) -> None:
    """The batched plan frames as TmlV0Renderer does; what overrides it renders itself."""
    batch = [[Message(role="user", content=content), _REPLY]]
    mode = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    calls: list[Any] = []

    class Sub(TmlV0Renderer):
        def build_supervised_example(self, messages: Any, train_on_what: Any, effort=0.9):
            calls.append(messages)
            return super().build_supervised_example(messages, train_on_what, effort)

    subclassed = Sub(renderer.tokenizer)
    replaced = inkling_renderer()
    replaced.build_supervised_example = subclassed.build_supervised_example
    expected = _one_at_a_time(renderer, batch, mode)
    for overridden in (subclassed, replaced):
        calls.clear()
        assert_same_outcome(
            outcome(build_supervised_examples_batch, overridden, batch, mode), expected
        )
        assert calls == batch


@pytest.mark.parametrize("mode", [TrainOnWhat.ALL_ASSISTANT_MESSAGES, TrainOnWhat.CUSTOMIZED])
def test_each_effort_and_mode_frames_its_own(renderer, mode) -> None:
    """Layouts are kept per mode and effort: the same shapes at another one are framed anew."""
    batch = [[_USER, _REPLY], _TRAINED_FIRST, [Message(role="system", content="S"), _USER, _REPLY]]
    for effort in (0.9, 0.25, 0, 0.0005, 0.9):
        _assert_plan_is_plain_path(renderer, batch, mode, effort)
