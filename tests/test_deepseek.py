"""DeepSeek V3 renderers beyond the golden cases: registry, options and prefill composition.

Token parity with the reference is proved by the goldens; these cover what a conversation case
cannot express - constructor options the registry never passes and the caller's prefill.
"""

from __future__ import annotations

import pytest

from cookbook.exceptions import RendererError
from cookbook.parity import invariants
from cookbook.renderers import (
    DeepSeekV3DisableThinkingRenderer,
    DeepSeekV3ThinkingRenderer,
    Message,
    get_renderer,
)
from cookbook.renderers.deepseek_v3 import special
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

MODEL = "deepseek-ai/DeepSeek-V3.1"

# name -> (class, has_extension_property), as tinker_cookbook/renderers/__init__.py (0.5.8)
# constructs them: the plain name is the non-thinking renderer, the second name its alias.
REGISTRY = {
    "deepseekv3": (DeepSeekV3DisableThinkingRenderer, True),
    "deepseekv3_disable_thinking": (DeepSeekV3DisableThinkingRenderer, True),
    "deepseekv3_thinking": (DeepSeekV3ThinkingRenderer, False),
}


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(MODEL, "offline")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class(name: str, tokenizer) -> None:
    cls, extends = REGISTRY[name]
    renderer = get_renderer(name, tokenizer)
    assert type(renderer) is cls
    assert renderer.has_extension_property is extends
    eos = tokenizer.convert_tokens_to_ids(special("end\u2581of\u2581sentence"))
    assert renderer.get_stop_sequences() == [eos]


def test_later_system_messages_need_system_role_as_user(tokenizer) -> None:
    """Off (as registered), a second system message is refused; on, it becomes a user turn:
    the User role token followed by its text, exactly like a user message."""
    as_system = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Now in French."},
    ]
    as_user = [*as_system[:2], {"role": "user", "content": "Now in French."}]
    with pytest.raises(RendererError, match="system message at start"):
        DeepSeekV3DisableThinkingRenderer(tokenizer).build_generation_prompt(as_system)
    renderer = DeepSeekV3DisableThinkingRenderer(tokenizer, system_role_as_user=True)
    assert (
        renderer.build_generation_prompt(as_system).to_ints()
        == renderer.build_generation_prompt(as_user).to_ints()
    )


def test_thinking_prefill_comes_before_the_callers(tokenizer) -> None:
    """The prompt ends with "<think>" and then the caller's prefill, encoded as one text;
    after a tool result there is no "<think>" (tool use stays in non-thinking mode)."""
    renderer = get_renderer("deepseekv3_thinking", tokenizer)
    question = [{"role": "user", "content": "2+2?"}]
    plain = renderer.build_generation_prompt(question, prefill=None).to_ints()
    prefilled = renderer.build_generation_prompt(question, prefill="Let me").to_ints()
    head = plain[: -len(tokenizer.encode("<think>", add_special_tokens=False))]
    assert prefilled == head + tokenizer.encode("<think>Let me", add_special_tokens=False)
    after_tool = [*question, {"role": "tool", "content": "4"}]
    prompt = renderer.build_generation_prompt(after_tool, prefill="So").to_ints()
    assert prompt[-len(tokenizer.encode("So", add_special_tokens=False)) :] == tokenizer.encode(
        "So", add_special_tokens=False
    )
    assert tokenizer.convert_tokens_to_ids("<think>") not in prompt


def test_strip_thinking_off_keeps_history_reasoning_and_extends(tokenizer) -> None:
    """With history kept, an earlier turn renders as it was produced, so each generation
    prompt is a prefix of the next conversation's rendering."""
    renderer = DeepSeekV3ThinkingRenderer(tokenizer, strip_thinking_from_history=False)
    assert renderer.has_extension_property
    turn = {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "Add."}, {"type": "text", "text": "4"}],
    }
    first = [{"role": "user", "content": "2+2?"}, turn]
    full = [*first, {"role": "user", "content": "3+3?"}]
    rendered = renderer.build_generation_prompt(full).to_ints()
    assert tokenizer.decode(rendered).count("<think>Add.</think>") == 1
    prompt = renderer.build_generation_prompt(first[:1]).to_ints()
    assert rendered[: len(prompt)] == prompt


# -- negative control for the round-trip invariant -----------------------------------------


class _DeepSeekThinkingForgetsThePrefill(DeepSeekV3ThinkingRenderer):
    """Parses a reply without putting back the <think> the generation prompt prefilled, so the
    reasoning of a produced turn comes back as text."""

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        return response


DEEPSEEK_CONTROL: list[Message] = [
    Message(role="user", content="What is 2+2?"),
    Message(
        role="assistant",
        content=[{"type": "thinking", "thinking": "Add."}, {"type": "text", "text": "4"}],
    ),
]


def test_deepseek_control_conversation_passes() -> None:
    invariants.check_all(
        get_renderer("deepseekv3_thinking", get_tokenizer(MODEL, "offline")), DEEPSEEK_CONTROL
    )


def test_deepseek_negative_control() -> None:
    broken = _DeepSeekThinkingForgetsThePrefill(
        get_renderer("deepseekv3_thinking", get_tokenizer(MODEL, "offline")).tokenizer
    )
    with pytest.raises(AssertionError, match=r"^\[assistant-round-trip\]"):
        invariants.check_assistant_round_trip(broken, DEEPSEEK_CONTROL)
