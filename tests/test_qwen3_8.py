"""Qwen3.8 renderers beyond the golden cases: registry, refusals, segment indices.

Token parity with the reference is proved by the goldens (specs/renderers/qwen3_8_*.yaml,
tests/test_parity_renderers.py); these tests cover what a conversation case cannot express:
which class and options each name builds, the refusal of an unknown effort, and that segments
still point into the caller's messages when the template adds or drops a system message.
"""

from __future__ import annotations

import pytest

from cookbook.exceptions import RendererError
from cookbook.renderers import (
    Message,
    Qwen3_8DisableThinkingRenderer,
    Qwen3_8Renderer,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.qwen3_8 import REASONING_EFFORT_INSTRUCTIONS
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

QWEN3_8 = "Qwen/Qwen3.8-27B"

# name -> (class, reasoning_effort), as tinker_cookbook/renderers/__init__.py (0.5.8) builds them.
REGISTRY = {
    "qwen3_8_xhigh_reasoning": (Qwen3_8Renderer, "xhigh"),
    "qwen3_8_medium_reasoning": (Qwen3_8Renderer, "medium"),
    "qwen3_8_low_reasoning": (Qwen3_8Renderer, "low"),
    "qwen3_8_disable_thinking": (Qwen3_8DisableThinkingRenderer, "xhigh"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(QWEN3_8, "offline")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class_and_options(name: str, tokenizer) -> None:
    cls, effort = REGISTRY[name]
    renderer = get_renderer(name, tokenizer)
    assert type(renderer) is cls
    assert renderer.reasoning_effort == effort
    assert renderer.strip_thinking_from_history is False
    assert renderer.has_extension_property is False


def test_unknown_reasoning_effort_is_refused(tokenizer) -> None:
    with pytest.raises(RendererError, match="Unexpected reasoning effort high"):
        Qwen3_8Renderer(tokenizer, reasoning_effort="high")


@pytest.mark.parametrize(
    ("name", "messages", "indices"),
    [
        # xhigh adds a system message: its segments are -1, as a BOS's would be.
        (
            "qwen3_8_xhigh_reasoning",
            [Message(role="user", content="Hi"), Message(role="assistant", content="Hello")],
            [-1, -1, 0, 0, 1, 1, 1],
        ),
        # An empty system message renders nothing; the others keep their own indices.
        (
            "qwen3_8_medium_reasoning",
            [
                Message(role="system", content=" "),
                Message(role="user", content="Hi"),
                Message(role="assistant", content="Hello"),
            ],
            [1, 1, 2, 2, 2],
        ),
    ],
)
def test_segments_index_the_callers_messages(
    name: str, messages: list[Message], indices: list[int], tokenizer
) -> None:
    renderer = get_renderer(name, tokenizer)
    segments = renderer.supervised_segments(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    non_empty = [s for s in segments if s.chunk.length]
    assert [s.message_index for s in non_empty] == indices
    model_input, _ = renderer.build_supervised_example(messages)
    assert sum(s.chunk.length for s in segments) == model_input.length


def test_instruction_is_written_once(tokenizer) -> None:
    """The supervised path renders the prompt again from normalized messages; the instruction
    must not be prepended twice."""
    renderer = get_renderer("qwen3_8_low_reasoning", tokenizer)
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Hello")]
    model_input, _ = renderer.build_supervised_example(messages)
    text = tokenizer.decode(model_input.to_ints())
    assert text.count(REASONING_EFFORT_INSTRUCTIONS["low"]) == 1
