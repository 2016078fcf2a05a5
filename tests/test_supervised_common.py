"""Datums and metrics of cookbook.supervised.common against the reference's semantics.

The first group ports the logic of tinker-cookbook 0.5.8's ``supervised/common_test.py`` (same
inputs and expected values, numpy weights instead of torch). The Llama 3 example's numbers were
produced by the reference itself (reference notes, section 2). The rest derive their expected
values by hand from the documented algorithm: right-truncate, drop empty chunks and trailing
images, then inputs = tokens[:-1] (chunk boundaries kept), targets = tokens[1:],
weights = weights[1:len(targets)+1].
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest
import tinker

from cookbook.exceptions import DataFormatError
from cookbook.renderers import TrainOnWhat
from cookbook.supervised.common import (
    compute_bpb,
    compute_mean_nll,
    conversation_to_datum,
    counted_byte_count,
    datum_from_model_input_weights,
)


def _mi(*chunks: list[int]) -> tinker.ModelInput:
    return tinker.ModelInput(chunks=[tinker.EncodedTextChunk(tokens=c) for c in chunks])


def _image(n_tokens: int) -> tinker.types.ImageChunk:
    return tinker.types.ImageChunk(data=b"\x89PNG", format="png", expected_tokens=n_tokens)


def _weights(datum: tinker.Datum) -> list[float]:
    return datum.loss_fn_inputs["weights"].data


def _targets(datum: tinker.Datum) -> list[int]:
    return datum.loss_fn_inputs["target_tokens"].data


def _chunks(datum: tinker.Datum) -> list[list[int]]:
    return [list(c.tokens) for c in datum.model_input.chunks]


# --- ported from the reference's supervised/common_test.py -----------------------------------


def test_reduction_mean_sums_to_one():
    datum = datum_from_model_input_weights(
        _mi([10, 20, 30, 40, 50]), np.array([0.0, 0.0, 1.0, 1.0, 1.0]), reduction="mean"
    )
    assert len(_weights(datum)) == 4
    assert math.isclose(sum(_weights(datum)), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("kwargs", [{"reduction": "none"}, {}], ids=["none", "default"])
def test_reduction_none_and_default_preserve_the_slice(kwargs):
    weights = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    datum = datum_from_model_input_weights(_mi([10, 20, 30, 40, 50]), weights, **kwargs)
    assert _weights(datum) == [0.0, 1.0, 1.0, 1.0]


def test_all_zero_weights_no_division_by_zero():
    datum = datum_from_model_input_weights(_mi([10, 20, 30]), np.zeros(3), reduction="mean")
    assert _weights(datum) == [0.0, 0.0]


def test_single_nonzero_weight_normalizes_to_one():
    datum = datum_from_model_input_weights(
        _mi([10, 20, 30]), np.array([0.0, 0.0, 5.0]), reduction="mean"
    )
    assert _weights(datum) == [0.0, 1.0]


def test_target_tokens_are_left_shifted():
    datum = datum_from_model_input_weights(_mi([10, 20, 30, 40]), np.ones(4))
    assert _targets(datum) == [20, 30, 40]
    assert datum.model_input.to_ints() == [10, 20, 30]


def test_trailing_empty_text_chunk_does_not_break_right_shift():
    datum = datum_from_model_input_weights(_mi([10], [20, 30], []), np.ones(3))
    assert datum.model_input.length == 2
    assert _targets(datum) == [20, 30]


def test_max_length_truncation_with_mean_reduction():
    weights = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    datum = datum_from_model_input_weights(
        _mi([10, 20, 30, 40, 50, 60]), weights, max_length=4, reduction="mean"
    )
    assert len(_weights(datum)) == 3
    assert math.isclose(sum(_weights(datum)), 1.0, rel_tol=1e-6)


def test_max_length_truncation_without_reduction():
    weights = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    datum = datum_from_model_input_weights(
        _mi([10, 20, 30, 40, 50, 60]), weights, max_length=4, reduction="none"
    )
    assert _weights(datum) == [1.0, 1.0, 1.0]


def test_invalid_reduction_raises():
    with pytest.raises(ValueError, match="Unknown reduction mode"):
        datum_from_model_input_weights(_mi([10, 20, 30]), np.ones(3), reduction="invalid")  # type: ignore[arg-type]


# --- beyond the reference's tests: structure, dtypes, images, errors --------------------------


def test_shift_keeps_chunk_boundaries_and_drops_a_last_chunk_of_one_token():
    # tokens 1 | 2 3 | 4: inputs lose the final token, which empties (and drops) the last chunk.
    datum = datum_from_model_input_weights(_mi([1], [2, 3], [4]), np.ones(4))
    assert _chunks(datum) == [[1], [2, 3]]
    assert _targets(datum) == [2, 3, 4]


def test_truncation_cuts_inside_a_chunk_before_the_shift():
    # 7 tokens cut to 5 -> 1 2 | 3 4 5 ; shifted -> inputs 1 2 | 3 4, targets 2 3 4 5.
    datum = datum_from_model_input_weights(_mi([1, 2], [3, 4, 5, 6], [7]), np.ones(7), 5)
    assert _chunks(datum) == [[1, 2], [3, 4]]
    assert _targets(datum) == [2, 3, 4, 5]
    assert datum.model_input.length == 4  # max_length - 1


def test_weights_are_float32_and_targets_int64_whatever_the_input_dtype():
    # Renderers return int64 weights when no BOS is involved; the datum always holds float32.
    datum = datum_from_model_input_weights(_mi([1, 2, 3, 4]), np.array([0, 0, 1, 1]), None, "mean")
    weights, targets = datum.loss_fn_inputs["weights"], datum.loss_fn_inputs["target_tokens"]
    assert (weights.dtype, weights.shape, weights.to_numpy().dtype) == ("float32", [3], np.float32)
    assert (targets.dtype, targets.shape, targets.to_numpy().dtype) == ("int64", [3], np.int64)
    assert _weights(datum) == [0.0, 0.5, 0.5]


def test_mean_reduction_divides_in_float32():
    # 1/3 as float32 (0.3333333432674408), not the float64 0.3333333333333333.
    datum = datum_from_model_input_weights(_mi([1, 2, 3, 4]), np.ones(4, np.int64), None, "mean")
    assert _weights(datum) == [float(np.float32(1) / np.float32(3))] * 3


def test_image_positions_become_zero_targets_and_trailing_images_are_dropped():
    # 5 | image(2) | 6 7 | image(3): the trailing image goes; tokens 5 0 0 6 7 -> targets 0 0 6 7.
    chunks = [
        tinker.EncodedTextChunk(tokens=[5]),
        _image(2),
        tinker.EncodedTextChunk(tokens=[6, 7]),
    ]
    model_input = tinker.ModelInput(chunks=[*chunks, _image(3)])
    datum = datum_from_model_input_weights(model_input, np.arange(8, dtype=np.float32))
    assert _targets(datum) == [0, 0, 6, 7]
    assert [c.length for c in datum.model_input.chunks] == [1, 2, 1]
    assert _weights(datum) == [1.0, 2.0, 3.0, 4.0]


def test_truncation_removes_an_image_whole():
    # 5 6 | image(3), max_length 4: the image cannot be cut, so it goes and 5 6 remain.
    model_input = tinker.ModelInput(chunks=[tinker.EncodedTextChunk(tokens=[5, 6]), _image(3)])
    datum = datum_from_model_input_weights(model_input, np.ones(5), max_length=4)
    assert datum.model_input.to_ints() == [5]
    assert _targets(datum) == [6]


@pytest.mark.parametrize("tokens", [[[7]], [[]], [[7], []]], ids=["one", "empty", "one+empty"])
def test_fewer_than_two_tokens_is_a_data_error(tokens):
    with pytest.raises(DataFormatError, match="at least 2 tokens"):
        datum_from_model_input_weights(_mi(*tokens), np.ones(1))


def test_an_image_alone_after_truncation_is_a_data_error():
    # image(2) | 1 2 cut to 2 tokens leaves the image, which is then dropped as trailing.
    model_input = tinker.ModelInput(chunks=[_image(2), tinker.EncodedTextChunk(tokens=[1, 2])])
    with pytest.raises(DataFormatError, match="at least 2 tokens"):
        datum_from_model_input_weights(model_input, np.ones(4), max_length=2)


# --- the reference's own output on the Llama 3 example (reference notes, section 2) ---------

LLAMA3_MESSAGES = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
]
LLAMA3_TOKENS = [
    128000, 128006, 9125, 128007, 271, 2675, 527, 11190, 13, 128009, 128006, 882,
    128007, 271, 13347, 128009, 128006, 78191, 128007, 271, 9906, 1070, 0, 128009,
]  # fmt: skip


def test_conversation_to_datum_matches_the_reference_llama3(llama3_renderer):
    datum = conversation_to_datum(LLAMA3_MESSAGES, llama3_renderer, max_length=None)
    assert datum.model_input.to_ints() == LLAMA3_TOKENS[:-1]
    assert _targets(datum) == LLAMA3_TOKENS[1:]
    assert _weights(datum) == [0.0] * 19 + [0.25] * 4


def test_conversation_to_datum_truncated_matches_the_reference_llama3(llama3_renderer):
    datum = conversation_to_datum(LLAMA3_MESSAGES, llama3_renderer, 10, reduction="none")
    assert datum.model_input.length == 9
    assert datum.model_input.to_ints() == LLAMA3_TOKENS[:9]
    assert _targets(datum) == LLAMA3_TOKENS[1:10]
    assert _weights(datum) == [0.0] * 9


def test_conversation_to_datum_passes_train_on_what(llama3_renderer):
    # ALL_TOKENS weights everything but the BOS; the BOS weight is the one the shift drops.
    datum = conversation_to_datum(
        LLAMA3_MESSAGES, llama3_renderer, None, TrainOnWhat.ALL_TOKENS, reduction="none"
    )
    assert _weights(datum) == [1.0] * 23


# --- compute_mean_nll -------------------------------------------------------------------------


def _td(data: list[float] | list[int], dtype: Literal["float32", "int64"]) -> tinker.TensorData:
    return tinker.TensorData(data=list(data), dtype=dtype, shape=[len(data)])


def test_mean_nll_is_weighted_over_the_whole_batch():
    # -(-1*1 + -3*0) - (-2*0.5) = 2 nats over total weight 1.5.
    logprobs = [_td([-1.0, -3.0], "float32"), _td([-2.0], "float32")]
    weights = [_td([1.0, 0.0], "float32"), _td([0.5], "float32")]
    assert math.isclose(compute_mean_nll(logprobs, weights), 2.0 / 1.5, rel_tol=1e-6)


def test_mean_nll_without_weight_is_nan():
    assert math.isnan(compute_mean_nll([_td([-1.0], "float32")], [_td([0.0], "float32")]))


def test_mean_nll_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        compute_mean_nll([_td([-1.0], "float32")], [])


# --- compute_bpb (ported from the reference's tests) ------------------------------------------


class _FakeTokenizer:
    """Each id decodes to a fixed string; specials exposed as ``all_special_ids``."""

    def __init__(self, vocab: dict[int, str], special_ids: set[int] | None = None):
        self.vocab = vocab
        self.all_special_ids = list(special_ids or [])

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.vocab[i] for i in ids)


class _MethodOnlySpecialTokenizer:
    """Specials exposed only through ``is_special_token``."""

    def __init__(self, vocab: dict[int, str], special_ids: set[int]):
        self.vocab = vocab
        self._special = special_ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.vocab[i] for i in ids)

    def is_special_token(self, token_id: int) -> bool:
        return token_id in self._special


def _bpb(logprobs, weights, targets, tok) -> float:
    return compute_bpb(
        [_td(logprobs, "float32")], [_td(weights, "float32")], [_td(targets, "int64")], tok
    )


@pytest.mark.parametrize(
    ("vocab", "specials", "logprobs", "weights", "targets", "nats", "n_bytes"),
    [
        # hand computation: "he"+"llo" = 5 bytes, 2 nats
        ({1: "he", 2: "llo"}, None, [-0.5, -1.5], [1, 1], [1, 2], 2.0, 5),
        # weight-0 prompt token counts on neither side
        ({1: "AB", 2: "x", 3: "yz"}, None, [-9.0, -1.0, -1.0], [0, 1, 1], [1, 2, 3], 2.0, 3),
        # weights are a mask: mean-reduced weights give the 0/1 answer
        ({1: "ab", 2: "cd"}, None, [-1.0, -3.0], [0.5, 0.5], [1, 2], 4.0, 4),
        # UTF-8 bytes, not characters: "café" 5 + "中" 3
        ({1: "café", 2: "中"}, None, [-1.0, -1.0], [1, 1], [1, 2], 2.0, 8),
        # a trained special token is dropped from both sides
        ({1: "hi", 99: "<|end|>"}, {99}, [-1.0, -5.0], [1, 1], [1, 99], 1.0, 2),
        # both at once: specials excluded under mean-reduced weights
        ({1: "ab", 2: "cd", 99: "<|end|>"}, {99}, [-1, -3, -9], [1 / 3] * 3, [1, 2, 99], 4.0, 4),
        # multi-turn: runs split by specials, each counted
        (
            {1: "ab", 2: "cd", 3: "ef", 99: "<|end|>"},
            {99},
            [-1.0, -2.0, -8.0, -3.0, -8.0],
            [1] * 5,
            [1, 2, 99, 3, 99],
            6.0,
            6,
        ),
    ],
    ids=["hand", "zero-weight", "mask", "utf8", "special", "special-mean", "multi-turn"],
)
def test_compute_bpb(vocab, specials, logprobs, weights, targets, nats, n_bytes):
    bpb = _bpb(logprobs, weights, targets, _FakeTokenizer(vocab, specials))
    assert math.isclose(bpb, nats / (math.log(2) * n_bytes), rel_tol=1e-6)


def test_compute_bpb_excludes_method_only_special_tokens():
    tok = _MethodOnlySpecialTokenizer({1: "hi", 99: "<|end|>"}, {99})
    bpb = _bpb([-1.0, -5.0], [1.0, 1.0], [1, 99], tok)
    assert math.isclose(bpb, 1.0 / (math.log(2) * 2), rel_tol=1e-6)


def test_compute_bpb_aggregates_across_batch():
    tok = _FakeTokenizer({1: "ab", 2: "cde"})
    bpb = compute_bpb(
        [_td([-1.0], "float32"), _td([-3.0], "float32")],
        [_td([1.0], "float32"), _td([1.0], "float32")],
        [_td([1], "int64"), _td([2], "int64")],
        tok,
    )
    assert math.isclose(bpb, 4.0 / (math.log(2) * 5), rel_tol=1e-6)


def test_compute_bpb_zero_bytes_returns_nan():
    assert math.isnan(_bpb([-1.0], [0.0], [1], _FakeTokenizer({1: "a"})))


def test_counted_byte_count_splits_runs():
    tok = _FakeTokenizer({1: "ab", 2: "GAP", 3: "cde"})
    assert counted_byte_count([1, 2, 3], [True, False, True], tok) == len("ab") + len("cde")


def test_compute_bpb_with_llama3_skips_eot(llama3_tokenizer):
    # " there!" + <|eot_id|> trained: eot is a special token, so only 7 bytes and 2 tokens count.
    targets = [*llama3_tokenizer.encode(" there!", add_special_tokens=False), 128009]
    assert len(targets) == 3
    bpb = _bpb([-1.0, -2.0, -50.0], [1.0, 1.0, 1.0], targets, llama3_tokenizer)
    assert math.isclose(bpb, 3.0 / (math.log(2) * len(b" there!")), rel_tol=1e-6)
