"""Generated conversations for tml_v0's own paths (tests/test_tml_v0_plain.py,
tests/test_tml_v0_batch.py), the renderer they run on, and how their outcomes are compared:
same examples (ids, chunk boundaries, weight values and dtype) or the same error."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from cookbook.renderers import Message, get_renderer
from cookbook.renderers.tml_v0 import TmlV0Renderer
from cookbook.tokenizers import get_tokenizer

INKLING = "thinkingmachines/Inkling"

# Text that could confuse a framing: TML's own markers (text here, never control tokens),
# other families' markers, reasoning and tool-call markup, JSON, whitespace and edge spaces.
LITERALS = st.sampled_from(
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
CONTENT = st.one_of(
    st.just(""),
    st.lists(st.one_of(st.text(max_size=12), LITERALS), max_size=4).map("".join),
)
ROLES = st.sampled_from(["system", "user", "assistant", "tool"])
# Not only booleans: tml_v0 reads the flag by truth value, in CUSTOMIZED mode only.
TRAINABLE = st.sampled_from(["absent", True, False, None, 0, 1, "no"])


@st.composite
def plain_messages(draw: st.DrawFn) -> Message:
    message = Message(role=draw(ROLES), content=draw(CONTENT))
    trainable = draw(TRAINABLE)
    if trainable != "absent":
        message["trainable"] = trainable
    return message


# Leading systems (where the effort message goes), any role order (assistant first, runs of
# one role, system mid-conversation, trailing user or tool turns, no assistant at all).
CONVERSATIONS = st.tuples(
    st.lists(st.builds(Message, role=st.just("system"), content=CONTENT), max_size=2),
    st.lists(plain_messages(), min_size=1, max_size=6),
).map(lambda parts: [*parts[0], *parts[1]])
EFFORTS = st.sampled_from([0.9, 0, 0.0, 0.25, 0.5555, 0.999, 0.0004, 0.0005, 0.9995])


def inkling_renderer() -> TmlV0Renderer:
    renderer = get_renderer("tml_v0", get_tokenizer(INKLING, "offline"), model_name=INKLING)
    assert isinstance(renderer, TmlV0Renderer)
    return renderer


def outcome(render: Any, *args: Any) -> Any:
    try:
        return render(*args)
    except Exception as error:  # compared by type and message below
        return error


def assert_same_outcome(ours: Any, theirs: Any) -> None:
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
