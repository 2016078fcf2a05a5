"""tml_v0's plain path (``cookbook/renderers/tml_v0_plain.py``) against tml-renderers' own.

The plain path frames plain conversations itself; these tests render the same generated
conversations both ways, for every ``TrainOnWhat`` and several efforts, and require the same
examples (ids, chunk boundaries, weight values and dtype) or the same error. The goldens
(tests/test_parity_renderers.py) check both paths against the reference.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tml_v0_strategies import (
    CONVERSATIONS,
    EFFORTS,
    assert_same_outcome,
    inkling_renderer,
    outcome,
)

from cookbook.renderers import Message, TrainOnWhat


@pytest.fixture(scope="module")
def renderer():
    return inkling_renderer()


@given(messages=CONVERSATIONS, mode=st.sampled_from(list(TrainOnWhat)), effort=EFFORTS)
def test_plain_path_equals_tml_renderers(renderer, messages, mode, effort) -> None:
    plain = renderer._plain.examples(messages, mode, effort)
    plain_input = mode in renderer.supported_train_on_what and not any(
        "\ud800" in m["content"] for m in messages
    )
    assert (plain is not None) == plain_input, "a plain conversation left the plain path"
    ours = outcome(renderer.build_supervised_examples, messages, mode, effort)
    theirs = outcome(renderer._tml_renderers_examples, messages, mode, effort)
    assert_same_outcome(ours, theirs)


@pytest.mark.parametrize(
    "messages",
    [
        [Message(role="user", content="Hi"), Message(role="assistant", content="Yo", name="x")],
        [Message(role="user", content=[{"type": "text", "text": "Hi"}])],
        [Message(role="tool_declare", content="[]"), Message(role="assistant", content="x")],
        [Message(role="developer", content="Hi"), Message(role="assistant", content="x")],
        [Message(role=["user"], content="Hi"), Message(role="assistant", content="x")],
        [],
    ],
    ids=["extra_field", "part_content", "tool_declare", "unknown_role", "list_role", "empty"],
)
def test_what_is_not_plain_goes_to_tml_renderers(renderer, messages) -> None:
    for mode in renderer.supported_train_on_what:
        assert renderer._plain.examples(messages, mode, 0.9) is None


@pytest.mark.parametrize("effort", [1.0, -0.1, float("nan"), float("inf"), "0.5", None])
def test_invalid_effort_goes_to_tml_renderers(renderer, effort) -> None:
    """tml-renderers' path raises for it, with its error."""
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Yo")]
    assert renderer._plain.examples(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES, effort) is None
    theirs = outcome(renderer._tml_renderers_examples, messages, "all_assistant_messages", effort)
    assert isinstance(theirs, (ValueError, TypeError))
    ours = outcome(renderer.build_supervised_example, messages, "all_assistant_messages", effort)
    assert_same_outcome(ours, theirs)
