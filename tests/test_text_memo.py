"""The renderers' memo of repeated texts (``Renderer._encode_fixed``, kept per tokenizer by
``cookbook/renderers/encoding.py``).

The memo only saves encodes; these tests pin that it cannot change a result: an example's token
lists changed by a caller, the batch renderer's recording copies (placeholder ids from hooks on
the instance) and a replaced tokenizer all leave the next rendering equal to a fresh renderer's.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tinker

from cookbook.renderers import Message, get_renderer
from cookbook.renderers.batch import TEMPLATES
from cookbook.renderers.deepseek_v3 import EOS
from cookbook.renderers.encoding import forget
from cookbook.tokenizers import get_tokenizer

QWEN3_5 = "Qwen/Qwen3.5-9B"
LLAMA3 = "meta-llama/Llama-3.1-8B"

_SYSTEM = "You are a careful assistant. " * 8  # longer than the tokenizer-level memo keeps
_MEMO_CONVERSATION: list[Message] = [
    Message(role="system", content=_SYSTEM),
    Message(role="user", content="Name a prime."),
    Message(role="assistant", content="Seven."),
]
MEMO_RENDERERS = [
    ("qwen3", "Qwen/Qwen3-8B"),
    ("qwen3_vl", "Qwen/Qwen3-VL-30B-A3B-Instruct"),
    ("qwen3_5", QWEN3_5),
    ("qwen3_8_low_reasoning", "Qwen/Qwen3.8-27B"),
    ("nemotron3", "cookbook-standin/nemotron-3"),
    ("llama3", LLAMA3),
    ("role_colon", LLAMA3),
]


def _ids(example: tuple[tinker.ModelInput, np.ndarray]) -> list[list[int]]:
    return [list(chunk.tokens) for chunk in example[0].chunks]


@pytest.mark.parametrize(("name", "model"), MEMO_RENDERERS, ids=[n for n, _ in MEMO_RENDERERS])
def test_memoised_texts_cannot_be_changed_through_an_example(name: str, model: str) -> None:
    """Changing the token lists of one example leaves the next example (memo hits) intact."""
    renderer = get_renderer(name, get_tokenizer(model))
    first = renderer.build_supervised_example(_MEMO_CONVERSATION)
    expected = _ids(first)
    for chunk in first[0].chunks:
        chunk.tokens.append(0)  # type: ignore[union-attr]
    assert _ids(renderer.build_supervised_example(_MEMO_CONVERSATION)) == expected
    fresh = get_renderer(name, renderer.tokenizer)
    assert _ids(fresh.build_supervised_example(_MEMO_CONVERSATION)) == expected


@pytest.mark.parametrize(("name", "model"), MEMO_RENDERERS, ids=[n for n, _ in MEMO_RENDERERS])
def test_instance_hooks_bypass_the_memo(name: str, model: str) -> None:
    """A copy whose ``_encode`` is replaced (the batch renderer's recording copies answer with
    placeholder ids) neither reads nor fills the memo it shares with the original."""
    tokenizer = get_tokenizer(model)
    expected = _ids(get_renderer(name, tokenizer).build_supervised_example(_MEMO_CONVERSATION))
    renderer = get_renderer(name, tokenizer)
    # Another conversation first: the memo and the stop token exist before the copy shares them.
    renderer.build_supervised_example(_MEMO_CONVERSATION[1:])
    recorder = copy.copy(renderer)
    recorder._encode = lambda text: []  # type: ignore[method-assign]
    recorder._encode_split = lambda text: []  # type: ignore[method-assign]
    assert _ids(recorder.build_supervised_example(_MEMO_CONVERSATION)) != expected
    assert _ids(renderer.build_supervised_example(_MEMO_CONVERSATION)) == expected


def test_memo_belongs_to_the_tokenizer() -> None:
    """A renderer given another tokenizer does not answer from the old one's memo."""
    renderer = get_renderer("qwen3_5", get_tokenizer(QWEN3_5))
    assert renderer._encode_fixed(_SYSTEM) == renderer.tokenizer.encode(
        _SYSTEM, add_special_tokens=False
    )
    other = get_tokenizer(LLAMA3)
    renderer.tokenizer = other
    assert renderer._encode_fixed(_SYSTEM) == other.encode(_SYSTEM, add_special_tokens=False)


def test_a_batch_template_encodes_its_end_tokens_once_per_tokenizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ChatTemplate.usable`` runs on every batch call; its end tokens come from the memo."""
    renderer = get_renderer("deepseekv3", get_tokenizer("deepseek-ai/DeepSeek-V3.1"))
    template = TEMPLATES[type(renderer)]
    backend = renderer.tokenizer._tokenizer
    encoded: list[list[str]] = []

    def counting(texts: list[str], *args: object, **kwargs: object) -> object:
        encoded.append(texts)
        return encode_batch_fast(texts, *args, **kwargs)

    encode_batch_fast = backend.encode_batch_fast
    monkeypatch.setattr(backend, "encode_batch_fast", counting)
    forget(renderer.tokenizer)
    assert template.usable(renderer)
    assert encoded == [[EOS]]
    assert template.usable(renderer) and template.usable(renderer)
    assert encoded == [[EOS]]
