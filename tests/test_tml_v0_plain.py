"""tml_v0's plain path (``cookbook/renderers/tml_v0_plain.py``) against tml-renderers' own.

The plain path frames plain conversations itself; these tests render the same generated
conversations both ways, for every ``TrainOnWhat`` and several efforts, and require the same
examples (ids, chunk boundaries, weight values and dtype) or the same error. The goldens
(tests/test_parity_renderers.py) check both paths against the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookbook.renderers import Message, TrainOnWhat, get_renderer
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.tokenizers import get_tokenizer

INKLING = "thinkingmachines/Inkling"

# Text that could confuse a framing: TML's own markers (text here, never control tokens),
# other families' markers, reasoning and tool-call markup, JSON, whitespace and edge spaces.
_LITERALS = st.sampled_from(
    [
        "<|end_message|>",
        "<|message_model|>",
        "<|message_system|>",
        "<|content_text|>",
        "<|content_model_end_sampling|>",
        "<|content_thinking|>",
        "<|endoftext|>",
        "<|im_end|>",
        "<think>x</think>",
        '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
        '{"role": "assistant", "content": "x"}',
        "Thinking effort level: 0.5",
        " ",
        "\n\n",
        "\t",
        "\r\n",
        "\u00a0",
        "你好",
        "👨‍👩‍👧‍👦",
        "café",
        "\ud800",  # a lone surrogate: tml-renderers refuses the content
    ]
)
_CONTENT = st.one_of(
    st.just(""),
    st.lists(st.one_of(st.text(max_size=12), _LITERALS), max_size=4).map("".join),
)
_ROLES = st.sampled_from(["system", "user", "assistant", "tool"])
# Not only booleans: tml_v0 reads the flag by truth value, in CUSTOMIZED mode only.
_TRAINABLE = st.sampled_from(["absent", True, False, None, 0, 1, "no"])


@st.composite
def plain_messages(draw: st.DrawFn) -> Message:
    message = Message(role=draw(_ROLES), content=draw(_CONTENT))
    trainable = draw(_TRAINABLE)
    if trainable != "absent":
        message["trainable"] = trainable
    return message


# Leading systems (where the effort message goes), any role order (assistant first, runs of
# one role, system mid-conversation, trailing user or tool turns, no assistant at all).
_CONVERSATIONS = st.tuples(
    st.lists(st.builds(Message, role=st.just("system"), content=_CONTENT), max_size=2),
    st.lists(plain_messages(), min_size=1, max_size=6),
).map(lambda parts: [*parts[0], *parts[1]])
_EFFORTS = st.sampled_from([0.9, 0, 0.0, 0.25, 0.5555, 0.999, 0.0004, 0.0005, 0.9995])


@pytest.fixture(scope="module")
def renderer():
    return get_renderer("tml_v0", get_tokenizer(INKLING, "offline"), model_name=INKLING)


def _outcome(render: Any, *args: Any) -> Any:
    try:
        return render(*args)
    except Exception as error:  # compared by type and message below
        return error


def _assert_same_outcome(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs) and str(ours) == str(theirs), (ours, theirs)
        return
    assert not isinstance(ours, Exception), ours
    assert len(ours) == len(theirs)
    for (our_input, our_weights), (their_input, their_weights) in zip(ours, theirs, strict=True):
        assert [c.tokens for c in our_input.chunks] == [c.tokens for c in their_input.chunks]
        assert our_input == their_input
        assert our_weights.dtype == their_weights.dtype == np.float32
        np.testing.assert_array_equal(our_weights, their_weights)


@given(messages=_CONVERSATIONS, mode=st.sampled_from(list(TrainOnWhat)), effort=_EFFORTS)
def test_plain_path_equals_tml_renderers(renderer, messages, mode, effort) -> None:
    plain = renderer._plain.examples(messages, mode, effort)
    plain_input = mode in renderer.supported_train_on_what and not any(
        "\ud800" in m["content"] for m in messages
    )
    assert (plain is not None) == plain_input, "a plain conversation left the plain path"
    ours = _outcome(renderer.build_supervised_examples, messages, mode, effort)
    theirs = _outcome(renderer._tml_renderers_examples, messages, mode, effort)
    _assert_same_outcome(ours, theirs)


@given(
    batch=st.lists(_CONVERSATIONS, min_size=1, max_size=4),
    mode=st.sampled_from(list(TrainOnWhat)),
)
def test_batch_route_equals_per_conversation(renderer, batch, mode) -> None:
    """The batch renderer's route for tml_v0 (per conversation, through the plain path):
    the same examples, or the first conversation's error."""
    singles = [_outcome(renderer.build_supervised_example, m, mode) for m in batch]
    batched = _outcome(build_supervised_examples_batch, renderer, batch, mode)
    failed = next((s for s in singles if isinstance(s, Exception)), None)
    _assert_same_outcome(batched, failed if failed is not None else singles)


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
    theirs = _outcome(renderer._tml_renderers_examples, messages, "all_assistant_messages", effort)
    assert isinstance(theirs, (ValueError, TypeError))
    ours = _outcome(renderer.build_supervised_example, messages, "all_assistant_messages", effort)
    _assert_same_outcome(ours, theirs)
