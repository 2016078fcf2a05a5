"""The Kimi K2.5/K2.6, DeepSeek V3 thinking and DeepSeek V4.1 batch templates
(``batch_templates_kimi.py``, ``batch_templates_deepseek.py``) equal the renderers on the inputs
where they could go wrong, and are really used.

The generated conversations aim at what the templates decide on: the last message (DeepSeek V3
thinking's ``<think></think>``), the previous role and runs of user messages (V4.1's markers and
template turns), the last user turn (V4.1's dropped reasoning), a first or later system message
(V4.1 splits the system turn; BPE merges whitespace across the effort line), empty content,
``<think>`` and literal markers in content, ``trainable`` flags, and every ``TrainOnWhat``.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch_parity import _assert_same, _outcome

from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.renderers.deepseek_v3 import EOS, special
from cookbook.tokenizers import get_tokenizer

MODELS = {
    **dict.fromkeys(
        [
            "kimi_k25",
            "kimi_k25_disable_thinking",
            "kimi_k26",
            "kimi_k26_disable_thinking",
            "kimi_k26_preserve_thinking",
        ],
        "cookbook-standin/kimi-k2.5",
    ),
    "deepseekv3_thinking": "deepseek-ai/DeepSeek-V3.1",
    **dict.fromkeys(
        [
            "deepseekv4_1",
            "deepseekv4_1_disable_thinking",
            "deepseekv4_1_low_reasoning",
            "deepseekv4_1_max_reasoning",
            "deepseekv4_1_preserve_thinking",
        ],
        "cookbook-standin/deepseek-v4.1",
    ),
}

_FRAGMENTS = [
    "",
    " ",
    "\n",
    "\n\n",
    "  spaced  ",
    "Hello",
    "你好",
    "<think>",
    "</think>",
    "<think>why</think>",
    "<|im_end|>",
    "<|im_middle|>",
    special("User"),
    special("Assistant"),
    special("System"),
    EOS,
    "{role}",
]
_TEXT = st.lists(st.sampled_from(_FRAGMENTS), max_size=3).map("".join)


# Kimi warns about tool messages without a name or call id, as the reference does.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@cache
def _renderer(name: str) -> Renderer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_renderer(name, get_tokenizer(MODELS[name], "offline"))


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["system", "user", "user", "assistant", "assistant", "tool"]))
    content: Any = draw(_TEXT)
    if draw(st.integers(0, 9)) == 0:  # structured content: handed to the renderer
        content = [{"type": "text", "text": content}]
    return {"role": role, "content": content}


@st.composite
def _batch(draw: st.DrawFn, mode: TrainOnWhat) -> list[list[dict[str, Any]]]:
    conversations = draw(st.lists(st.lists(_message(), min_size=1, max_size=5), max_size=4))
    for messages in conversations:
        flags = draw(st.sampled_from(["mode", "mode", "mode", "all", "none"]))
        for message in messages:
            if flags == "all" or (flags == "mode" and mode == TrainOnWhat.CUSTOMIZED):
                message["trainable"] = draw(st.booleans())
    return conversations


@pytest.mark.parametrize("name", list(MODELS))
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_template_equals_per_conversation_on_edge_cases(name: str, data: st.DataObject) -> None:
    """The conversations that render batch to the same examples; the whole batch raises the
    first failing conversation's error, as the per-conversation loop would."""
    renderer = _renderer(name)
    mode = data.draw(st.sampled_from(list(TrainOnWhat)))
    conversations = data.draw(_batch(mode))
    outcomes = [_outcome(renderer, messages, mode) for messages in conversations]
    rendered = [(m, o) for m, o in zip(conversations, outcomes, strict=True) if _ok(o)]
    examples = build_supervised_examples_batch(renderer, [m for m, _ in rendered], mode)
    for i, (example, (_, single)) in enumerate(zip(examples, rendered, strict=True)):
        _assert_same(example, single, f"#{i} {mode}")
    error = next((o for o in outcomes if not _ok(o)), None)
    if error is not None:
        with pytest.raises(type(error), match=re.escape(str(error))):
            build_supervised_examples_batch(renderer, conversations, mode)


def _ok(outcome: Any) -> bool:
    return not isinstance(outcome, Exception)


# The cases each template decides on, pinned outright (the generated ones may miss some).
DECISIVE = [
    # DeepSeek V4.1 thinking: "\n" after the effort line's "\n\n" merges across the boundary,
    # so the system turn is split by the renderer's own _prefix_split.
    [
        {"role": "system", "content": "\nBe brief."},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ],
    # A run of users (one template turn), then two assistants (no marker on the second).
    [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": ""},
    ],
    # A later system message starts a turn (V4.1) or is refused (V3).
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ],
    # The assistant speaks first; the last turn reasons in its text (V3: no empty block).
    [
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>r</think>a"},
    ],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
]


@pytest.mark.parametrize("train_on_what", list(TrainOnWhat), ids=str)
@pytest.mark.parametrize("name", list(MODELS))
def test_decisive_cases(name: str, train_on_what: TrainOnWhat) -> None:
    renderer = _renderer(name)
    conversations = DECISIVE
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        conversations = [
            [{**m, "trainable": (i + j) % 2 == 0} for j, m in enumerate(c)]
            for i, c in enumerate(conversations)
        ]
    for i, messages in enumerate(conversations):
        single = _outcome(renderer, messages, train_on_what)
        if _ok(single):
            (example,) = build_supervised_examples_batch(renderer, [messages], train_on_what)
            _assert_same(example, single, f"#{i}")
        else:
            with pytest.raises(type(single), match=re.escape(str(single))):
                build_supervised_examples_batch(renderer, [messages], train_on_what)


def test_decisive_cases_merge_across_the_effort_line() -> None:
    """The first case's point: its system text does not encode apart from the opening."""
    renderer = _renderer("deepseekv4_1")
    opening = renderer._opening("system")
    joined = renderer._encode(opening + DECISIVE[0][0]["content"])
    assert joined[: len(renderer._encode(opening))] != renderer._encode(opening)
