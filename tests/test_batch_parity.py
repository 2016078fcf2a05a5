"""The batch path (``cookbook/renderers/batch.py``) equals the per-conversation renderer for
every renderer with a parity spec, on every golden case's conversation and on generated ones.

The batch path serves a renderer's own hooks from one batched encode, so it is only correct if
no renderer depends on how its texts were encoded: these tests render both ways and compare
chunks, ids, weights and dtype, or the error raised.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariant_strategies import conversations

from cookbook.image_processing_utils import offline_image_processor
from cookbook.parity.images import has_images, with_images
from cookbook.parity.record import with_tool_call_objects
from cookbook.renderers import (
    Renderer,
    ToolCall,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.tokenizers import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    spec.renderer: spec
    for path in sorted((ROOT / "specs" / "renderers").glob("*.yaml"))
    if isinstance(spec := load_spec(path), RendererCasesSpec)
}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@cache
def _renderer(name: str, images: bool) -> Renderer:
    spec = SPECS[name]
    processor = offline_image_processor(spec.model_name) if images else None
    tokenizer = get_tokenizer(spec.model_name, "offline")
    return get_renderer(name, tokenizer, processor, model_name=spec.model_name)


def _outcome(renderer: Renderer, messages: list, train_on_what: TrainOnWhat) -> Any:
    try:
        return renderer.build_supervised_example(messages, train_on_what)
    except Exception as error:
        return error


def _assert_same(batch: tuple, single: tuple, label: str) -> None:
    (b_input, b_weights), (s_input, s_weights) = batch, single
    assert b_input == s_input, f"{label}: chunks differ"
    assert b_weights.dtype == s_weights.dtype, f"{label}: weight dtype differs"
    np.testing.assert_array_equal(b_weights, s_weights, err_msg=label)


def _check_batch(renderer: Renderer, cases: list[tuple[str, list]], mode: TrainOnWhat) -> None:
    """The batch of the cases that render equals them one by one; each failing case raises its
    own error from the batch too, after a good one."""
    batch_first = build_supervised_examples_batch(
        renderer,
        [m for _, m in cases if not isinstance(_outcome(renderer, m, mode), Exception)],
        mode,
    )
    good = iter(batch_first)
    for case_id, messages in cases:
        single = _outcome(renderer, messages, mode)
        label = f"{case_id} {mode}"
        if not isinstance(single, Exception):
            _assert_same(next(good), single, label)
            continue
        others = [m for _, m in cases if m is not messages][:1]
        with pytest.raises(type(single), match=re.escape(str(single))):
            build_supervised_examples_batch(renderer, [*others, messages], mode)


def _golden_cases(name: str) -> Iterator[tuple[bool, TrainOnWhat, list[tuple[str, list]]]]:
    spec = SPECS[name]
    by_key: dict[tuple[bool, TrainOnWhat], list[tuple[str, list]]] = {}
    for case in spec.cases:
        dicts = case.message_dicts()
        messages = with_images(with_tool_call_objects(dicts, ToolCall))
        for mode in case.resolved_train_on_what():
            by_key.setdefault((has_images(dicts), mode), []).append((case.id, messages))
    for (images, mode), cases in by_key.items():
        yield images, mode, cases


@pytest.mark.parametrize("name", sorted(SPECS))
def test_batch_equals_per_conversation_on_golden_cases(name: str) -> None:
    """Every golden case's conversation, per TrainOnWhat, batched with the others. The batch
    runs first: ids a renderer cached from the batch's hooks would then show in its
    per-conversation output."""
    for images, mode, cases in _golden_cases(name):
        _check_batch(_renderer(name, images), cases, TrainOnWhat(mode))


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_batch_equals_per_conversation_on_generated_conversations(
    name: str, data: st.DataObject
) -> None:
    batch = data.draw(st.lists(conversations(name), min_size=1, max_size=4))
    mode = data.draw(st.sampled_from([TrainOnWhat.ALL_ASSISTANT_MESSAGES, TrainOnWhat.ALL_TOKENS]))
    check_generated(_renderer(name, False), batch, mode)


def check_generated(renderer: Renderer, batch: list[list], mode: TrainOnWhat) -> None:
    """The batch equals its conversations rendered one by one, or raises the first error one
    of them raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        singles = [_outcome(renderer, messages, mode) for messages in batch]
        errors = [single for single in singles if isinstance(single, Exception)]
        if errors:  # e.g. tml_v0 refuses ALL_TOKENS, as the reference does
            with pytest.raises(type(errors[0]), match=re.escape(str(errors[0]))):
                build_supervised_examples_batch(renderer, batch, mode)
            return
        examples = build_supervised_examples_batch(renderer, batch, mode)
    for i, (example, single) in enumerate(zip(examples, singles, strict=True)):
        _assert_same(example, single, f"#{i}")
