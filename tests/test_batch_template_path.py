"""The batch renderer's template path (``cookbook/renderers/batch_template*.py``) on fixed
conversations: every family's template renders them as its renderer does, warnings included, or
hands the ones it cannot plan to the renderer (which raises its own error).

``test_batch.py`` covers the generic (recording) path and the batched encodes; the families'
``test_batch_templates*.py`` files drive the templates with generated conversations.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
from test_batch import CONVERSATIONS, _assert_same
from test_batch_parity import _outcome

from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.tokenizers import get_tokenizer

KIMI_K25_NAMES = [
    "kimi_k25",
    "kimi_k25_disable_thinking",
    "kimi_k26",
    "kimi_k26_disable_thinking",
    "kimi_k26_preserve_thinking",
]
DEEPSEEK_V4_1_NAMES = [
    "deepseekv4_1",
    "deepseekv4_1_disable_thinking",
    "deepseekv4_1_low_reasoning",
    "deepseekv4_1_max_reasoning",
    "deepseekv4_1_preserve_thinking",
]

# Conversations the data-driven templates (batch_template.py) must render as the renderer does,
# or hand to it: a leading, a later or no system message, think blocks in content (DeepSeek
# strips them), empty content, format braces, literal markers, a structured content, tool calls.
TEMPLATE_CONVERSATIONS: list[list[dict[str, Any]]] = [
    *CONVERSATIONS,
    [{"role": "user", "content": "{role} {Role} {} {0}"}],
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
    ],
    [
        {"role": "user", "content": "q <think>u</think> <|im_end|>"},
        {"role": "assistant", "content": "<think>r</think>ans"},
        {"role": "user", "content": "z"},
        {"role": "assistant", "content": " </think> t "},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
    ],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": []}],
]
TEMPLATE_RENDERERS = [
    ("kimi_k2", "cookbook-standin/kimi-k2"),
    ("deepseekv3", "deepseek-ai/DeepSeek-V3.1"),
    # batch_templates_kimi.py, batch_templates_deepseek.py
    *((name, "cookbook-standin/kimi-k2.5") for name in KIMI_K25_NAMES),
    ("deepseekv3_thinking", "deepseek-ai/DeepSeek-V3.1"),
    *((name, "cookbook-standin/deepseek-v4.1") for name in DEEPSEEK_V4_1_NAMES),
    *(
        (f"gpt_oss_{variant}", "openai/gpt-oss-20b")
        for variant in ("high_reasoning", "low_reasoning", "medium_reasoning", "no_sysprompt")
    ),
    ("nemotron3_low_thinking", "cookbook-standin/nemotron-3"),
    ("glm5_3_high_reasoning", "cookbook-standin/glm-5.3"),
    # batch_templates_qwen.py
    ("qwen3", "Qwen/Qwen3-8B"),
    ("qwen3_vl", "Qwen/Qwen3-VL-30B-A3B-Instruct"),
    ("qwen3_5", "Qwen/Qwen3.5-9B"),
    ("qwen3_8_low_reasoning", "Qwen/Qwen3.8-27B"),
]


@pytest.mark.parametrize("train_on_what", list(TrainOnWhat), ids=str)
@pytest.mark.parametrize(("name", "model"), TEMPLATE_RENDERERS)
def test_template_path_equals_per_conversation(
    name: str, model: str, train_on_what: TrainOnWhat, caplog: pytest.LogCaptureFixture
) -> None:
    """Renderers on the template path: same examples, and the same warnings (one log record
    per conversation where ALL_ASSISTANT_MESSAGES meets no extension property, gpt-oss's
    UserWarning where a system message meets its own)."""
    renderer = get_renderer(name, get_tokenizer(model, "offline"))
    conversations = TEMPLATE_CONVERSATIONS
    _assert_same_as_per_conversation(renderer, conversations, train_on_what, caplog)


def _assert_same_as_per_conversation(
    renderer: Renderer,
    conversations: list[list[dict[str, Any]]],
    train_on_what: TrainOnWhat,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch equals the conversations one by one (trainable flags added for CUSTOMIZED),
    raises the first error one of them raises, and logs as many warnings."""
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        conversations = [
            [{**m, "trainable": (i + j) % 2 == 0} for j, m in enumerate(c)]
            for i, c in enumerate(conversations)
        ]
    outcomes = [_outcome(renderer, m, train_on_what) for m in conversations]
    errors = [o for o in outcomes if isinstance(o, Exception)]
    if errors:  # Kimi K2 with CUSTOMIZED: its default system message carries no flag
        with pytest.raises(type(errors[0]), match=re.escape(str(errors[0]))):
            build_supervised_examples_batch(renderer, conversations, train_on_what)
    conversations = [c for c, o in zip(conversations, outcomes, strict=True) if o not in errors]
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")  # gpt-oss warns of a system message beside its own
        caplog.clear()
        single = [renderer.build_supervised_example(m, train_on_what) for m in conversations]
        single_warnings = [str(w.message) for w in warned], len(caplog.records)
        caplog.clear()
        warned.clear()
        batch = build_supervised_examples_batch(renderer, conversations, train_on_what)
    _assert_same(batch, single)
    assert ([str(w.message) for w in warned], len(caplog.records)) == single_warnings


def test_template_path_raises_the_renderers_error() -> None:
    """DeepSeek refuses a system message after the first: the template hands it over."""
    renderer = get_renderer("deepseekv3", get_tokenizer("deepseek-ai/DeepSeek-V3.1", "offline"))
    late_system = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
    with pytest.raises(Exception) as single_error:
        renderer.build_supervised_example(late_system)
    with pytest.raises(type(single_error.value), match=re.escape(str(single_error.value))):
        build_supervised_examples_batch(renderer, [*CONVERSATIONS, late_system])
