"""The batch templates (``cookbook/renderers/batch_template*.py``) against the renderers.

``test_batch.py`` and ``test_batch_parity.py`` compare the batch path with the per-conversation
one on fixed and golden conversations; here generated plain conversations aim at what a
template must reproduce or refuse (empty and whitespace-only content, think tags, literal
markers, format braces, a system message anywhere, trainable flags, every ``TrainOnWhat``), and
each renderer listed is pinned to the template path, so a refactor cannot silently send it back
to the slower generic path.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch import _assert_same, _assert_same_as_per_conversation

import cookbook.renderers.batch as batch
from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.renderers.batch import TEMPLATES, build_supervised_examples_batch
from cookbook.renderers.gpt_oss import INTERNAL_SYSTEM_ROLE
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.tokenizers import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]

# Each is built with the tokenizer of its parity spec.
TEMPLATE_PATH_RENDERERS = [
    "gpt_oss_high_reasoning",
    "gpt_oss_low_reasoning",
    "gpt_oss_medium_reasoning",
    "gpt_oss_no_sysprompt",
    "nemotron3",
    "nemotron3_disable_thinking",
    "nemotron3_low_thinking",
    "nemotron3_preserve_thinking",
    "nemotron3_ultra",
    "nemotron3_ultra_disable_thinking",
    "nemotron3_ultra_medium_thinking",
    "nemotron3_ultra_preserve_thinking",
    "glm5_3_high_reasoning",
    "glm5_3_low_reasoning",
    "glm5_3_max_reasoning",
]


@cache
def _renderer(name: str) -> Renderer:
    spec = load_spec(ROOT / "specs" / "renderers" / f"{name}.yaml")
    assert isinstance(spec, RendererCasesSpec)
    return get_renderer(name, get_tokenizer(spec.model_name, "offline"))


_FRAGMENTS = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\n\n",
        "\t",
        "a",
        "Hi there.",
        "你好",
        "{role}",
        "{}",
        "<think>",
        "</think>",
        "<think></think>",
        "<|end|>",
        "<|return|>",
        "<|im_end|>",
        "<|im_start|>",
        "<tool_call>",
        "<|user|>",
        "<|assistant|>",
        "{reasoning effort: low}",
    ]
)
_TEXT = st.lists(_FRAGMENTS, max_size=4).map("".join)
_ROLES = [
    *["system", "user", "assistant"] * 4,
    "tool",
    "developer",
    INTERNAL_SYSTEM_ROLE,  # gpt-oss's own system prompt's role, given by a caller
]


@st.composite
def _conversation(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-5 messages in any role order: a system message first, later or not at all,
    consecutive turns of one role, a last message of any role; now and then a role some
    template does not take (handed to the renderer within the same batch)."""
    roles = draw(st.lists(st.sampled_from(_ROLES), min_size=1, max_size=5))
    return [{"role": role, "content": draw(_TEXT)} for role in roles]


@pytest.mark.parametrize("name", TEMPLATE_PATH_RENDERERS)
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_template_equals_per_conversation_on_generated_conversations(
    name: str, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    """Same examples or first error, same warnings; CUSTOMIZED gets alternating flags."""
    conversations = data.draw(st.lists(_conversation(), min_size=1, max_size=4))
    mode = data.draw(st.sampled_from(list(TrainOnWhat)))
    _assert_same_as_per_conversation(_renderer(name), conversations, mode, caplog)


@pytest.mark.parametrize("name", TEMPLATE_PATH_RENDERERS)
def test_plain_conversations_take_the_template_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain conversation is planned by the template: the renderer's own ``render_message``
    is never called (it would be, per message, on the generic path or a fallback)."""
    renderer = _renderer(name)
    assert type(renderer) in TEMPLATES
    conversations = [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ],
        [{"role": "user", "content": " x "}, {"role": "assistant", "content": ""}],
    ]
    mode = TrainOnWhat.ALL_MESSAGES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = [renderer.build_supervised_example(m, mode) for m in conversations]
        used: list[str] = []
        template_examples = batch.template_examples

        def recording(*args: Any) -> Any:
            used.append(name)
            return template_examples(*args)

        def refuse(*args: Any) -> Any:
            raise AssertionError("the renderer rendered a message itself")

        monkeypatch.setattr(batch, "template_examples", recording)
        monkeypatch.setattr(type(renderer), "render_message", refuse)
        examples = build_supervised_examples_batch(renderer, conversations, mode)
    assert used == [name]
    _assert_same(examples, single)
