"""RoleColonRenderer unit tests.

The parse_response cases mirror the reference's own ``renderers/role_colon_test.py`` (0.5.8
sdist), same inputs and expectations, over the same model's tokenizer (Qwen/Qwen3.5-9B-Base,
here its offline build). The rendering facts are the reference's, observed at runtime and
recorded in the shared reference notes (section 1.7); the goldens cover the rest.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cookbook.parity.compare import compare_parse
from cookbook.renderers import (
    Message,
    ParseTermination,
    RoleColonRenderer,
    TrainOnWhat,
    get_renderer,
)
from cookbook.tokenizers import get_tokenizer

BASE_MODEL = "Qwen/Qwen3.5-9B-Base"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return get_tokenizer(BASE_MODEL, "offline")


@pytest.fixture(scope="module")
def renderer(tokenizer: Any) -> RoleColonRenderer:
    return RoleColonRenderer(tokenizer)


def _encode(renderer: RoleColonRenderer, text: str) -> list[int]:
    return renderer.tokenizer.encode(text, add_special_tokens=False)


# -- parse_response, as the reference's role_colon_test.py ----------------------------------------


def test_parse_response_eos_only_is_eos(renderer: RoleColonRenderer) -> None:
    """A base model that ends its answer with EOS and no delimiter: clean, but not a stop."""
    answer = "The answer is \\boxed{42}."
    tokens = [*_encode(renderer, answer), renderer.tokenizer.eos_token_id]
    message, termination = renderer.parse_response(tokens)
    assert termination == ParseTermination.EOS
    assert termination.is_clean and not termination.is_stop_sequence
    assert message == {"role": "assistant", "content": answer}


def test_parse_response_user_delimiter_is_stop_sequence(renderer: RoleColonRenderer) -> None:
    message, termination = renderer.parse_response(_encode(renderer, "Some answer.\n\nUser:"))
    assert termination == ParseTermination.STOP_SEQUENCE
    assert termination.is_clean and termination.is_stop_sequence
    assert message["content"] == "Some answer."


def test_parse_response_no_terminator_is_malformed(renderer: RoleColonRenderer) -> None:
    message, termination = renderer.parse_response(_encode(renderer, "Some incomplete answer"))
    assert termination == ParseTermination.MALFORMED
    assert not termination.is_clean
    assert message["content"] == "Some incomplete answer"


def test_parse_response_user_delimiter_with_eos_is_malformed(
    renderer: RoleColonRenderer,
) -> None:
    """The sampler should have stopped at the delimiter, so an EOS after it is malformed."""
    tokens = [*_encode(renderer, "Some answer.\n\nUser:"), renderer.tokenizer.eos_token_id]
    message, termination = renderer.parse_response(tokens)
    assert termination == ParseTermination.MALFORMED
    assert message["content"] == "Some answer."


def test_parse_response_multiple_user_delimiters_is_malformed(
    renderer: RoleColonRenderer,
) -> None:
    """The model went on to write the user's turn; the content is the first piece."""
    tokens = _encode(renderer, "Answer.\n\nUser: question?\n\nUser:")
    message, termination = renderer.parse_response(tokens)
    assert termination == ParseTermination.MALFORMED
    assert message["content"] == "Answer."


@pytest.mark.parametrize(
    "content",
    [" leading", "trailing ", "  both  ", " "],
    ids=["leading", "trailing", "both", "only-a-space"],
)
def test_parse_response_keeps_the_content_whitespace_it_rendered(
    renderer: RoleColonRenderer, content: str
) -> None:
    """Only the framing (one leading space, the separator) is removed, never content spaces."""
    tokens = _encode(renderer, " " + content + "\n\n" + "User:")
    message, termination = renderer.parse_response(tokens)
    assert termination == ParseTermination.STOP_SEQUENCE
    assert message["content"] == content


def test_parse_response_drops_one_separator_from_content_ending_in_one(
    renderer: RoleColonRenderer,
) -> None:
    """Reference logic: split on the first "\\n\\nUser:", then removesuffix("\\n\\n") anyway.
    Content "Done.\\n\\n" renders " Done.\\n\\n\\n\\nUser:"; the first piece is " Done.\\n\\n",
    which loses its "\\n\\n" - a known loss the round-trip invariant allows (and the
    assistant_ends_with_blank_line golden pins)."""
    message, termination = renderer.parse_response(_encode(renderer, " Done.\n\n\n\nUser:"))
    assert termination == ParseTermination.STOP_SEQUENCE
    assert message["content"] == "Done."


def test_eos_only_stripped_when_last(renderer: RoleColonRenderer) -> None:
    """An EOS id inside the reply is text, not a terminator: no delimiter, no trailing EOS."""
    eos = renderer.tokenizer.eos_token_id
    tokens = [*_encode(renderer, "a"), eos, *_encode(renderer, "b")]
    message, termination = renderer.parse_response(tokens)
    assert termination == ParseTermination.MALFORMED
    assert message["content"] == "a" + renderer.tokenizer.eos_token + "b"


# -- rendering facts ---------------------------------------------------------------------------

CONVERSATION = [
    Message(role="system", content="You are helpful."),
    Message(role="user", content="Hi"),
    Message(role="assistant", content="Hello there!"),
]


def test_generation_prompt_and_supervised_text(renderer: RoleColonRenderer) -> None:
    decode = renderer.tokenizer.decode
    prompt = renderer.build_generation_prompt(CONVERSATION[:-1]).to_ints()
    assert decode(prompt) == "System: You are helpful.\n\nUser: Hi\n\nAssistant:"
    model_input, weights = renderer.build_supervised_example(
        CONVERSATION, TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    ids = model_input.to_ints()
    assert decode(ids) == (
        "System: You are helpful.\n\nUser: Hi\n\nAssistant: Hello there!\n\nUser:"
    )
    trained = [decode([i]) for i, w in zip(ids, weights, strict=True) if w]
    assert trained == [" Hello", " there", "!", "\n\n", "User", ":"]
    assert weights.dtype.name == "int64"  # no BOS weight, no prompt zeroing: all ints


def test_qwen35_tokenizer_has_no_bos(renderer: RoleColonRenderer) -> None:
    assert renderer.tokenizer.bos_token is None
    assert renderer._bos_tokens == []


def test_llama_base_tokenizer_gets_its_bos() -> None:
    """meta-llama/Llama-3.1-8B recommends role_colon; its tokenizer declares <|begin_of_text|>."""
    llama = RoleColonRenderer(get_tokenizer("meta-llama/Llama-3.1-8B", "offline"))
    prompt = llama.build_generation_prompt(CONVERSATION[:-1]).to_ints()
    assert prompt[0] == 128000
    assert llama.tokenizer.decode(prompt).startswith("<|begin_of_text|>System:")
    _, weights = llama.build_supervised_example(CONVERSATION)
    assert weights[0] == 0 and weights.dtype.name == "float32"


def test_trailing_user_message_appends_the_placeholder_overlap(
    renderer: RoleColonRenderer,
) -> None:
    """Every message has a stop_overlap and the base assembly appends the last one, so a
    conversation ending on a user turn ends in the reference's "<UNUSED>" text."""
    messages = [Message(role="user", content="Hi")]
    model_input, weights = renderer.build_supervised_example(messages, TrainOnWhat.ALL_MESSAGES)
    text = renderer.tokenizer.decode(model_input.to_ints())
    assert text == "User: Hi\n\n<UNUSED>"
    placeholder = len(_encode(renderer, "<UNUSED>"))
    assert weights.tolist()[-placeholder:] == [1] * placeholder  # trained like its message


def test_stop_sequences_and_capabilities(renderer: RoleColonRenderer) -> None:
    assert renderer.get_stop_sequences() == ["\n\nUser:"]
    assert renderer.has_extension_property
    with pytest.raises(NotImplementedError, match="tool calling"):
        renderer.create_conversation_prefix_with_tools([])


def test_registered_under_its_reference_name(tokenizer: Any) -> None:
    assert isinstance(get_renderer("role_colon", tokenizer), RoleColonRenderer)


# -- the golden gate covers the EOS endings ----------------------------------------------------


def test_parity_gate_checks_the_eos_endings() -> None:
    """role_colon goldens record EOS endings (its EOS is no stop token); a changed or missing
    one must fail the comparison, not be skipped."""
    golden_file = ROOT / "golden" / "renderers" / "role_colon" / "single_turn_with_system.json"
    expected = json.loads(golden_file.read_text("utf-8"))["outputs"]["parse_response"]
    assert expected["eos_instead_of_stop"]["termination"] == "eos"
    assert compare_parse(expected, copy.deepcopy(expected)) is None
    changed = copy.deepcopy(expected)
    changed["eos_instead_of_stop"]["termination"] = "malformed"
    assert "eos_instead_of_stop" in (compare_parse(expected, changed) or "")
    missing = {k: v for k, v in expected.items() if k != "stop_then_eos"}
    assert "stop_then_eos" in (compare_parse(expected, missing) or "")
