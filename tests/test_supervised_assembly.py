"""``build_supervised_example`` builds its example without segments; ``supervised_segments``
reports them. Both come from one loop (``_render_for_training``), so here they are held to
the same example: for every built-in renderer with segments, generated conversations (tool
calls included where the renderer has a tool format) and every ``TrainOnWhat`` without a
generation prompt, the example equals the segments' chunks with each weight repeated over its
chunk, dtype included, or both raise the same error. A renderer that overrides
``supervised_segments`` must see its override used by ``build_supervised_example``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from invariant_strategies import conversations, tool_conversations
from test_invariants import RENDERER_TOKENIZER_MODELS, TOOL_RENDERERS, _renderer

from cookbook.renderers import Renderer, TrainOnWhat
from cookbook.renderers.base import Segment
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.types import RenderedMessage, text_chunk
from cookbook.tokenizers import get_tokenizer

# The modes whose weights come from the segments alone (the prompted ones then zero the
# generation prompt, which the segments do not describe).
_UNPROMPTED = [
    TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    TrainOnWhat.ALL_MESSAGES,
    TrainOnWhat.ALL_TOKENS,
    TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES,
    TrainOnWhat.CUSTOMIZED,
]
# tml_v0 renders whole conversations: it has no segments.
_WITH_SEGMENTS = sorted(name for name in RENDERER_TOKENIZER_MODELS if name != "tml_v0")


def _outcome(call: object) -> tuple[str, object]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", call()  # type: ignore[operator]
    except Exception as error:  # the same error from both is the expected outcome
        return "error", (type(error), str(error))


def _from_segments(segments: list[Segment]) -> tuple[list[list[int]], np.ndarray]:
    """The example as the segments describe it (the old assembly, for comparison)."""
    lengths = [s.chunk.length for s in segments]
    weights = [s.weight for s in segments]
    floats = any(isinstance(w, float) for w, n in zip(weights, lengths, strict=True) if n)
    dtype = np.float32 if floats or not any(lengths) else np.int64
    return [s.chunk.tokens for s in segments], np.repeat(np.array(weights, dtype=dtype), lengths)


def _assert_example_is_its_segments(renderer: Renderer, messages: list, mode: TrainOnWhat) -> None:
    if mode == TrainOnWhat.CUSTOMIZED:
        messages = [{**m, "trainable": m["role"] == "assistant"} for m in messages]
    example = _outcome(lambda: renderer.build_supervised_example(messages, mode))
    segments = _outcome(lambda: renderer.supervised_segments(messages, mode))
    assert example[0] == segments[0], (example, segments)
    if example[0] == "error":
        assert example == segments
        return
    model_input, weights = example[1]
    tokens, expected = _from_segments(segments[1])
    assert [c.tokens for c in model_input.chunks] == tokens
    assert weights.dtype == expected.dtype
    np.testing.assert_array_equal(weights, expected)


@pytest.mark.parametrize("name", _WITH_SEGMENTS)
@given(data=st.data(), mode=st.sampled_from(_UNPROMPTED))
def test_example_is_its_segments(name: str, data: st.DataObject, mode: TrainOnWhat) -> None:
    renderer = _renderer(name)
    _assert_example_is_its_segments(renderer, data.draw(conversations(name)), mode)


@pytest.mark.parametrize("name", sorted(set(TOOL_RENDERERS) & set(_WITH_SEGMENTS)))
@given(data=st.data(), mode=st.sampled_from(_UNPROMPTED))
def test_tool_example_is_its_segments(name: str, data: st.DataObject, mode: TrainOnWhat) -> None:
    renderer = _renderer(name)
    _assert_example_is_its_segments(
        renderer, data.draw(tool_conversations(TOOL_RENDERERS[name])), mode
    )


def test_an_override_of_supervised_segments_makes_the_example() -> None:
    """A subclass that lays its segments out itself is not bypassed by the lean path."""

    class Doubled(Llama3Renderer):
        def supervised_segments(self, messages, train_on_what, **kwargs):  # type: ignore[no-untyped-def]
            segments = super().supervised_segments(messages, train_on_what, **kwargs)
            return [s._replace(weight=s.weight * 2) for s in segments]

    tokenizer = get_tokenizer(RENDERER_TOKENIZER_MODELS["llama3"], "offline")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]
    _, plain = Llama3Renderer(tokenizer).build_supervised_example(
        messages, TrainOnWhat.ALL_MESSAGES
    )
    _, doubled = Doubled(tokenizer).build_supervised_example(messages, TrainOnWhat.ALL_MESSAGES)
    np.testing.assert_array_equal(doubled, plain * 2)


def test_rendered_message_is_still_the_frozen_dataclass() -> None:
    """Its hand-written ``__init__`` keeps the generated one's signature, defaults and
    equality; the instance stays frozen."""
    chunk = text_chunk([1, 2])
    rendered = RenderedMessage([chunk], chunk)
    assert rendered == RenderedMessage(output=[chunk], header=chunk, stop_overlap=None)
    assert [f.name for f in dataclasses.fields(RenderedMessage)] == [
        "output",
        "header",
        "stop_overlap",
    ]
    assert RenderedMessage([chunk]).header is None
    assert dataclasses.replace(rendered, stop_overlap=chunk).stop_overlap is chunk
    with pytest.raises(dataclasses.FrozenInstanceError):
        rendered.header = None  # type: ignore[misc]
