"""Public API shape of the renderers, mirroring the reference's downstream-compat tests."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers import (
    _NEWER_REFERENCE_ONLY,
    ParseTermination,
    Renderer,
    TrainOnWhat,
    builtin_renderer_names,
    get_renderer,
    register_renderer,
    unregister_renderer,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

MSGS = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
]


def test_train_on_what_has_the_reference_values() -> None:
    # Values from tinker_cookbook/renderers/base.py (0.5.8), member for member.
    assert {t.name: t.value for t in TrainOnWhat} == {
        "LAST_ASSISTANT_MESSAGE": "last_assistant_message",
        "LAST_ASSISTANT_TURN": "last_assistant_turn",
        "ALL_ASSISTANT_MESSAGES": "all_assistant_messages",
        "ALL_MESSAGES": "all_messages",
        "ALL_TOKENS": "all_tokens",
        "ALL_USER_AND_SYSTEM_MESSAGES": "all_user_and_system_messages",
        "CUSTOMIZED": "customized",
    }


def test_signatures_and_defaults_mirror_the_reference() -> None:
    sig = inspect.signature(Renderer.build_supervised_example)
    assert sig.parameters["train_on_what"].default is TrainOnWhat.LAST_ASSISTANT_MESSAGE
    plural = inspect.signature(Renderer.build_supervised_examples)
    assert plural.parameters["train_on_what"].default is TrainOnWhat.LAST_ASSISTANT_TURN
    prompt = inspect.signature(Renderer.build_generation_prompt)
    assert list(prompt.parameters) == ["self", "messages", "role", "prefill"]
    assert list(inspect.signature(get_renderer).parameters) == [
        "name",
        "tokenizer",
        "image_processor",
        "model_name",
    ]


def test_supervised_example_types(llama3_renderer) -> None:
    model_input, weights = llama3_renderer.build_supervised_example(MSGS)
    assert isinstance(model_input, tinker.ModelInput)
    assert isinstance(weights, np.ndarray) and weights.shape == (model_input.length,)
    datum = tinker.Datum(model_input=model_input, loss_fn_inputs={"weights": weights})
    assert datum.loss_fn_inputs["weights"].dtype == "float32"


def test_plain_strings_work_as_train_on_what(llama3_renderer) -> None:
    by_enum = llama3_renderer.build_supervised_example(MSGS, TrainOnWhat.ALL_MESSAGES)[1]
    by_str = llama3_renderer.build_supervised_example(MSGS, "all_messages")[1]
    assert by_enum.tolist() == by_str.tolist()


def test_extension_renderer_builds_one_example(llama3_renderer) -> None:
    assert llama3_renderer.has_extension_property
    examples = llama3_renderer.build_supervised_examples(MSGS)
    assert len(examples) == 1


def test_prefill_is_appended_to_the_generation_prompt(llama3_renderer, llama3_tokenizer) -> None:
    plain = llama3_renderer.build_generation_prompt(MSGS[:-1]).to_ints()
    prefilled = llama3_renderer.build_generation_prompt(MSGS[:-1], prefill="Sure").to_ints()
    assert prefilled == plain + llama3_tokenizer.encode("Sure", add_special_tokens=False)


def test_two_stop_tokens_in_a_reply_raise_a_value_error(llama3_renderer, llama3_tokenizer) -> None:
    reply = llama3_tokenizer.encode("53 + 18 = 71<|eot_id|><|eot_id|>", add_special_tokens=False)
    with pytest.raises(ValueError, match=r"expected .* 1"):
        llama3_renderer.parse_response(reply)


def test_parse_without_stop_token_is_malformed(llama3_renderer, llama3_tokenizer) -> None:
    message, termination = llama3_renderer.parse_response(
        llama3_tokenizer.encode("53 + 18 = 71", add_special_tokens=False)
    )
    assert message["content"] == "53 + 18 = 71"
    assert termination is ParseTermination.MALFORMED and not termination.is_clean


def test_unknown_renderer_message_matches_the_reference(llama3_tokenizer) -> None:
    with pytest.raises(RendererError, match=r"Unknown renderer: nope\. If this is a custom"):
        get_renderer("nope", llama3_tokenizer)


def test_newer_reference_renderer_says_why_it_is_missing(llama3_tokenizer) -> None:
    with pytest.raises(RendererError, match=r"tinker-cookbook 0\.6\.1.*tml-renderers"):
        get_renderer("kimi_k31_pro_high_reasoning", llama3_tokenizer)


def test_newer_reference_names_are_those_0_6_1_adds() -> None:
    """The refusal list is exactly what golden/0.6.1/registry.json adds over the gate's names,
    minus anything cookbook implements."""
    gate = set(json.loads((GOLDEN / "registry.json").read_text())["names"])
    newer = set(json.loads((GOLDEN / "0.6.1" / "registry.json").read_text())["names"])
    assert (newer - gate) - set(builtin_renderer_names()) == _NEWER_REFERENCE_ONLY


def test_custom_renderers_can_be_registered(llama3_tokenizer) -> None:
    class Custom(type(get_renderer("llama3", llama3_tokenizer))):
        pass

    register_renderer("custom_llama", lambda tok, _proc: Custom(tok))
    try:
        renderer = get_renderer("custom_llama", llama3_tokenizer, model_name="m")
        assert isinstance(renderer, Custom) and renderer._model_name == "m"
    finally:
        assert unregister_renderer("custom_llama")


@pytest.mark.parametrize(
    ("name", "model", "label"),
    [
        ("glm5_3_high_reasoning", "cookbook-standin/glm-5.3", "GLM-5.3"),
        ("deepseekv4_1", "cookbook-standin/deepseek-v4.1", "DeepSeek V4.1"),
    ],
)
def test_an_image_in_an_assistant_message_is_refused(name: str, model: str, label: str) -> None:
    """Renderers that write thinking and text apart refuse any other assistant part, with the
    reference's message (0.5.8: glm5_3.py:371, deepseek_v4_1.py:163; both raise it on this
    conversation, tried in the golden virtualenv)."""
    from cookbook.tokenizers import get_tokenizer

    renderer = get_renderer(name, get_tokenizer(model, "offline"))
    parts = [{"type": "thinking", "thinking": "t"}, {"type": "image", "image": "data:,"}]
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": parts}]
    message = f"{label} renderer does not support 'image' content parts"
    for build in (renderer.build_supervised_example, renderer.build_generation_prompt):
        with pytest.raises(RendererError, match=f"^{message}$"):
            build(conversation)
