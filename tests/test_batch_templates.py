"""The batch templates (``cookbook/renderers/batch_template*.py``) against the renderers.

``test_batch.py`` and ``test_batch_parity.py`` compare the batch path with the per-conversation
one on fixed and golden conversations; here generated plain conversations aim at what a
template must reproduce or refuse (empty and whitespace-only content, think tags, literal
markers, format braces, a system message anywhere, trainable flags, every ``TrainOnWhat``) for
gpt-oss, Nemotron 3 and GLM-5.3 (the other families' own files do the same for theirs), and
every renderer but tml_v0 is pinned to the template path, so a refactor cannot silently send it
back to the slower generic path.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch import _assert_same
from test_batch_parity import SPECS
from test_batch_template_path import _assert_same_as_per_conversation

import cookbook.renderers.batch as batch
from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.renderers.batch import TEMPLATES, build_supervised_examples_batch
from cookbook.renderers.gpt_oss import INTERNAL_SYSTEM_ROLE
from cookbook.tokenizers import get_tokenizer

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
    return get_renderer(name, get_tokenizer(SPECS[name].model_name, "offline"))


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


# Every renderer with parity specs but tml_v0 (which renders whole conversations only).
EVERY_TEMPLATE_RENDERER = sorted(name for name in SPECS if name != "tml_v0")

_PLAIN = [
    {"role": "system", "content": "  Be brief.\n"},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "Seven."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": ""},
]


def test_every_renderer_but_tml_v0_has_a_usable_template() -> None:
    missing = [
        name
        for name in EVERY_TEMPLATE_RENDERER
        if type(_renderer(name)) not in TEMPLATES
        or not TEMPLATES[type(_renderer(name))].usable(_renderer(name))
    ]
    assert missing == []


@pytest.mark.parametrize("train_on_what", list(TrainOnWhat), ids=str)
@pytest.mark.parametrize("name", EVERY_TEMPLATE_RENDERER)
def test_plain_conversations_take_the_template_path(
    name: str, train_on_what: TrainOnWhat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the generic path and the renderer's own supervised path broken, the batch still
    gives the renderer's examples: the template built them. ``render_message`` is refused too,
    except in the two prompted modes, whose generation-prompt check renders the prompt through
    the renderer (that is not the supervised path)."""
    renderer = _renderer(name)
    # Both open with a system message: a default one the renderer adds has no trainable flag.
    conversations = [_PLAIN, _PLAIN[:3]]
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    if customized and TEMPLATES[type(renderer)].leading_messages(renderer):
        pytest.skip("the renderer's own leading message has no trainable flag: CUSTOMIZED raises")
    if customized:
        conversations = [
            [{**m, "trainable": m["role"] == "assistant"} for m in c] for c in conversations
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = [renderer.build_supervised_example(c, train_on_what) for c in conversations]

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a plain conversation left the template path")

        cls = type(renderer)
        monkeypatch.setattr(batch, "_generic_examples", refuse)
        monkeypatch.setattr(cls, "build_supervised_example", refuse)
        monkeypatch.setattr(cls, "supervised_segments", refuse)
        if train_on_what not in (
            TrainOnWhat.LAST_ASSISTANT_MESSAGE,
            TrainOnWhat.LAST_ASSISTANT_TURN,
        ):
            monkeypatch.setattr(cls, "render_message", refuse)
        examples = build_supervised_examples_batch(renderer, conversations, train_on_what)
    _assert_same(examples, single)
