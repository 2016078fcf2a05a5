"""cookbook.serve.codec against the tinker SDK's own codec, which is the oracle.

Requests are put on the wire by the SDK's own ``AsyncTrainingResource.forward_backward`` (a stub
client captures the body and headers it would send); results are read back by the SDK's own
``deserialize_forward_backward_output`` / ``deserialize_sample_response``. Expected values are the
objects we built, adjusted only where the wire provably cannot carry a distinction (explained
at each place).
"""

from __future__ import annotations

import asyncio
import math
import typing
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from tinker import types
from tinker.proto import tinker_public_pb2 as pb
from tinker.proto.request_conv import forward_backward_request_to_proto
from tinker.proto.response_conv import (
    deserialize_forward_backward_output,
    deserialize_sample_response,
)
from tinker.resources.training import AsyncTrainingResource
from tinker.types.topk_logprobs import TopkLogprobs

from cookbook.backends.local.config import LocalModelConfig
from cookbook.backends.local.losses import run_loss
from cookbook.backends.local.model import LoraSettings, attach_lora
from cookbook.backends.local.runtime import build_base_model
from cookbook.serve.codec import (
    ProtocolError,
    decode_forward_backward_request,
    encode_forward_backward_output,
    encode_sample_response,
)

INT32 = st.integers(0, 2**31 - 1)
F32 = st.floats(width=32, allow_nan=False)


def sdk_wire(request: types.ForwardBackwardRequest, forward_only: bool, compress: bool):
    """(body, Content-Encoding) exactly as the SDK sends them for this request."""
    sent: dict = {}

    async def post(path, *, body, options, cast_to):
        sent.update(path=path, body=body, headers=options["headers"])

    config = SimpleNamespace(proto_compress_fwdbwd=compress)
    client = SimpleNamespace(_client_config=config, post=post, get=None, patch=None)
    client.put = client.delete = client.get_api_list = None
    resource = AsyncTrainingResource(client)  # type: ignore[arg-type]
    asyncio.run(resource.forward_backward(request=request, forward_only=forward_only))
    assert sent["path"] == "/api/v1/forward_backward"
    assert sent["headers"]["Content-Type"] == "application/x-protobuf"
    return sent["body"], sent["headers"].get("Content-Encoding")


# ---------------------------------------------------------------- strategies


@st.composite
def dense_tensors(draw) -> types.TensorData:
    dtype = draw(st.sampled_from(["float32", "int64"]))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    size = math.prod(shape)
    elements = F32 if dtype == "float32" else st.integers(-(2**63), 2**63 - 1)
    values = np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=dtype)
    if draw(st.booleans()):
        return types.TensorData.from_numpy(values.reshape(shape))
    # No shape given: the SDK sends none and the tensor is flat.
    return types.TensorData(data=values.tolist(), dtype=dtype)


@st.composite
def csr_tensors(draw) -> types.TensorData:
    """CSR built by hand from a mostly-zero matrix: row pointers are the running count of
    non-zeros per row, columns and values follow in row-major order."""
    dtype = draw(st.sampled_from(["float32", "int64"]))
    rows, cols = draw(st.integers(0, 4)), draw(st.integers(0, 5))
    cell = st.one_of(st.just(0), st.integers(-1000, 1000))
    dense = np.array(draw(st.lists(cell, min_size=rows * cols, max_size=rows * cols)), dtype=dtype)
    dense = dense.reshape(rows, cols)
    nz_rows, nz_cols = np.nonzero(dense)
    crow = np.concatenate([[0], np.cumsum(np.bincount(nz_rows, minlength=rows))]).astype(int)
    return types.TensorData(
        data=dense[nz_rows, nz_cols],
        dtype=dtype,
        shape=[rows, cols],
        sparse_crow_indices=crow.tolist(),
        sparse_col_indices=nz_cols.tolist(),
    )


chunks = st.one_of(
    st.builds(types.EncodedTextChunk, tokens=st.lists(INT32, max_size=8)),
    st.builds(
        types.ImageChunk,
        data=st.binary(max_size=16),
        format=st.sampled_from(["png", "jpeg"]),
        expected_tokens=st.none() | st.integers(0, 4096),
    ),
)
span_args = {"sequence_id": st.text(min_size=1, max_size=6), "offset": INT32, "length": INT32}
spans = st.lists(
    st.builds(types.PromptProvenanceSpan, **span_args)
    | st.builds(types.SampledProvenanceSpan, **span_args),
    max_size=3,
)


@st.composite
def datums(draw) -> types.Datum:
    names = st.sampled_from(
        ["target_tokens", "weights", "advantages", "logprobs", "mask", "sequence_ratio_mask"]
    )
    inputs = draw(st.dictionaries(names, dense_tensors() | csr_tensors(), max_size=3))
    with_spans = draw(st.booleans())
    return types.Datum(
        model_input=types.ModelInput(chunks=draw(st.lists(chunks, max_size=3))),
        loss_fn_inputs=inputs,
        model_input_spans=draw(spans) if with_spans else None,
        loss_fn_input_spans=draw(spans) if with_spans else None,
    )


@st.composite
def requests(draw) -> types.ForwardBackwardRequest:
    """Shaped like training_client._send_request: seq_id is request_id + 1."""
    config = st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.floats(allow_nan=False) | st.integers(-5, 5) | st.text(max_size=8),
        max_size=3,
    )
    return types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=draw(st.lists(datums(), max_size=3)),
            loss_fn=draw(st.sampled_from(typing.get_args(types.LossFnType))),
            loss_fn_config=draw(st.none() | config),
        ),
        model_id=draw(st.text(max_size=12)),
        seq_id=draw(st.none() | st.integers(1, 2**31 - 1)),
    )


# ---------------------------------------------------------------- requests


def assert_tensor_matches(got: types.TensorData, want: types.TensorData) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert got.sparse_crow_indices == want.sparse_crow_indices
    assert got.sparse_col_indices == want.sparse_col_indices
    # .data is the flat value list for both layouts (CSR: the listed values only).
    np.testing.assert_array_equal(np.array(got.data, want.dtype), np.array(want.data, want.dtype))
    if want.sparse_crow_indices is None:
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())


@given(request=requests(), forward_only=st.booleans(), compress=st.booleans())
def test_decode_inverts_the_sdk_request_encoder(request, forward_only, compress):
    body, encoding = sdk_wire(request, forward_only, compress)
    assert encoding == ("zstd" if compress else None)
    call = decode_forward_backward_request(body, encoding)

    fb_input = request.forward_backward_input
    assert call.model_id == request.model_id
    assert call.seq_id == (request.seq_id or 0)  # the SDK writes a missing seq_id as 0
    assert call.loss_fn == fb_input.loss_fn
    assert call.forward_only is forward_only
    # Numbers travel as doubles and an empty config sends nothing at all.
    config = fb_input.loss_fn_config or {}
    want_config = {k: v if isinstance(v, str) else float(v) for k, v in config.items()}
    assert call.loss_fn_config == (want_config or None)

    assert len(call.data) == len(fb_input.data)
    for got, want in zip(call.data, fb_input.data, strict=True):
        assert got.model_input == want.model_input  # pydantic equality: every chunk field
        assert sorted(got.loss_fn_inputs) == sorted(want.loss_fn_inputs)
        for name, tensor in want.loss_fn_inputs.items():
            assert_tensor_matches(got.loss_fn_inputs[name], tensor)
        # Two empty span lists send nothing, so they come back as "no provenance".
        has_spans = bool(want.model_input_spans or want.loss_fn_input_spans)
        assert got.model_input_spans == (want.model_input_spans if has_spans else None)
        assert got.loss_fn_input_spans == (want.loss_fn_input_spans if has_spans else None)


def test_loss_fn_config_prefers_v2_and_falls_back_to_the_legacy_map():
    old_client = pb.ForwardBackwardRequest(loss_fn="ppo", loss_fn_config={"clip": 0.25})
    body = old_client.SerializeToString()
    assert decode_forward_backward_request(body).loss_fn_config == {"clip": 0.25}

    both = pb.ForwardBackwardRequest(loss_fn_config={"clip": 0.25})
    both.loss_fn_config_v2["clip"].number = 0.5
    both.loss_fn_config_v2["mode"].text = "token"
    config = decode_forward_backward_request(both.SerializeToString()).loss_fn_config
    assert config == {"clip": 0.5, "mode": "token"}


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY"])
def test_uncompressed_encodings(encoding):
    body = pb.ForwardBackwardRequest(model_id="m", seq_id=7).SerializeToString()
    assert decode_forward_backward_request(body, encoding).seq_id == 7


def test_zstd_frames_without_content_size_are_accepted():
    body = pb.ForwardBackwardRequest(model_id="m", seq_id=9).SerializeToString()
    stream = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    compressed = stream.compress(body) + stream.flush()
    assert decode_forward_backward_request(compressed, " Zstd ").seq_id == 9


# ---------------------------------------------------------------- malformed requests


def _request_proto() -> pb.ForwardBackwardRequest:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"weights": [1.0, 0.0, 1.0], "target_tokens": [2, 3, 4]},
    )
    fb_input = types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy")
    request = types.ForwardBackwardRequest(fb_input, model_id="m", seq_id=1)
    return forward_backward_request_to_proto(request)


def _weights(msg):
    return msg.data[0].loss_fn_inputs["weights"]


def _csr(shape, crow, col, nnz):
    """A weights tensor replaced by a CSR one; the values are zeros, only the layout matters."""

    def mutate(msg):
        weights = _weights(msg)
        weights.ClearField("shape")
        weights.shape.extend(shape)
        weights.sparse_csr.values = np.zeros(nnz, np.float32).tobytes()
        weights.sparse_csr.crow_indices = np.array(crow, np.int64).tobytes()
        weights.sparse_csr.col_indices = np.array(col, np.int64).tobytes()

    return mutate, "['weights'].sparse_csr: not a valid CSR matrix"


MALFORMED = {
    "dense byte count": (lambda m: setattr(_weights(m), "dense", b"\0" * 5), "['weights'].dense"),
    "shape": (lambda m: _weights(m).shape.append(2), "['weights'].shape"),
    "dtype": (lambda m: setattr(_weights(m), "dtype", pb.DTYPE_INT32), "['weights'].dtype"),
    "no encoding": (lambda m: _weights(m).ClearField("dense"), "neither dense nor sparse_csr"),
    # Each case breaks one CSR rule (the valid layout is checked separately below).
    "csr 3-d shape": _csr([1, 3, 2], [0, 1], [0], 1),
    "csr row count": _csr([2, 3], [0, 1], [0], 1),
    "csr first pointer": _csr([2, 3], [1, 1, 1], [0], 1),
    "csr last pointer": _csr([2, 3], [0, 1, 1], [0, 2], 2),
    "csr decreasing": _csr([2, 3], [0, 2, 1], [0], 1),
    "csr column range": _csr([2, 3], [0, 1, 1], [3], 1),
    "csr column count": _csr([2, 3], [0, 1, 1], [0, 1], 1),
    "token bytes": (
        lambda m: setattr(m.data[0].model_input[0].encoded_text, "tokens", b"\1\2\3"),
        "data[0].model_input[0].encoded_text",
    ),
    "dmel chunk": (
        lambda m: setattr(m.data[0].model_input.add().dmel, "dmel", b"x"),
        "data[0].model_input[1]: chunk type dmel",
    ),
    "empty chunk": (lambda m: m.data[0].model_input.add(), "model_input[1]: chunk type unset"),
    "image format": (
        lambda m: m.data[0].model_input.add().image.MergeFrom(pb.ImageChunk(format="gif")),
        "model_input[1].image.format",
    ),
    "empty span": (lambda m: m.data[0].model_input_spans.add(), "data[0].model_input_spans[0]"),
    "span id": (
        lambda m: (
            m.data[0]
            .loss_fn_input_spans.add()
            .sampled_tokens.MergeFrom(pb.SampledProvenanceSpan(length=1))
        ),
        "loss_fn_input_spans[0].sampled_tokens",
    ),
    "config arm": (lambda m: m.loss_fn_config_v2["kl"].Clear(), "loss_fn_config_v2['kl']"),
}


def test_a_valid_csr_layout_passes_the_checks():
    mutate, _ = _csr([2, 3], [0, 2, 3], [0, 2, 1], 3)
    msg = _request_proto()
    mutate(msg)
    weights = decode_forward_backward_request(msg.SerializeToString()).data[0].loss_fn_inputs
    assert weights["weights"].sparse_crow_indices == [0, 2, 3]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fields_name_the_field(case):
    mutate, fragment = MALFORMED[case]
    msg = _request_proto()
    decode_forward_backward_request(msg.SerializeToString())  # the unmutated body is fine
    mutate(msg)
    with pytest.raises(ProtocolError) as err:
        decode_forward_backward_request(msg.SerializeToString())
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_bodies_and_encodings():
    body = _request_proto().SerializeToString()
    compressed = zstandard.ZstdCompressor().compress(body)
    cases = [
        (b"\xff\xff\xff\xff", None, "not a ForwardBackwardRequest protobuf"),
        (body[:-3], None, "not a ForwardBackwardRequest protobuf"),
        (body, "gzip", "Content-Encoding: 'gzip'"),
        (body, "zstd", "invalid zstd data"),
        (compressed[:-4], "zstd", "truncated"),
        (compressed + b"junk", "zstd", "extra bytes"),
    ]
    for payload, encoding, fragment in cases:
        with pytest.raises(ProtocolError, match=fragment):
            decode_forward_backward_request(payload, encoding)
    assert issubclass(ProtocolError, ValueError)


# ---------------------------------------------------------------- forward_backward results


@st.composite
def outputs(draw) -> types.ForwardBackwardOutput:
    """Per-datum token counts vary (the leading dim); each field has one trailing shape."""
    fields = draw(
        st.dictionaries(
            st.sampled_from(["logprobs", "elementwise_loss", "ids", "topk"]),
            st.tuples(
                st.sampled_from(["float32", "int64"]), st.lists(st.integers(1, 3), max_size=2)
            ),
            max_size=3,
        )
    )
    loss_fn_outputs = []
    for _ in range(draw(st.integers(0, 4))):
        datum = {}
        for name, (dtype, trailing) in fields.items():
            shape = [draw(st.integers(0, 5)), *trailing]
            size = math.prod(shape)
            elements = F32 if dtype == "float32" else st.integers(-(2**63), 2**63 - 1)
            values = draw(st.lists(elements, min_size=size, max_size=size))
            datum[name] = types.TensorData.from_numpy(np.array(values, dtype).reshape(shape))
        loss_fn_outputs.append(datum)
    metrics = draw(st.dictionaries(st.text(max_size=10), st.floats(allow_nan=False), max_size=3))
    output_type = draw(st.sampled_from(["ArrayRecord", "TorchLossReturn"]))
    return types.ForwardBackwardOutput(output_type, loss_fn_outputs, metrics)


def assert_outputs_match(got: types.ForwardBackwardOutput, want: types.ForwardBackwardOutput):
    assert got.loss_fn_output_type == want.loss_fn_output_type
    assert got.metrics == want.metrics
    assert len(got.loss_fn_outputs) == len(want.loss_fn_outputs)
    for got_datum, want_datum in zip(got.loss_fn_outputs, want.loss_fn_outputs, strict=True):
        assert sorted(got_datum) == sorted(want_datum)
        for name, want_tensor in want_datum.items():
            assert got_datum[name].dtype == want_tensor.dtype
            assert got_datum[name].shape == want_tensor.shape
            np.testing.assert_array_equal(got_datum[name].to_numpy(), want_tensor.to_numpy())


def test_an_rl_request_and_its_local_result_round_trip():
    """What the cookbook's RL loop sends (torch tensors, a clip config) and what the local
    backend answers for it, through the SDK's own encoder and decoder."""
    datums = [
        types.Datum(
            model_input=types.ModelInput.from_ints(list(range(3, 3 + n))),
            loss_fn_inputs={
                "target_tokens": types.TensorData.from_torch(torch.arange(4, 4 + n)),
                "logprobs": types.TensorData.from_torch(-torch.rand(n)),
                "advantages": types.TensorData.from_torch(torch.linspace(-1, 1, n)),
            },
        )
        for n in (5, 9)
    ]
    config = {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=datums, loss_fn="ppo", loss_fn_config=config
        ),
        model_id="m",
        seq_id=3,
    )
    call = decode_forward_backward_request(*sdk_wire(request, False, True))
    assert (call.loss_fn, call.loss_fn_config) == ("ppo", config)
    for got, want in zip(call.data, datums, strict=True):
        for name, tensor in want.loss_fn_inputs.items():
            assert_tensor_matches(got.loss_fn_inputs[name], tensor)
    small = LocalModelConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=16,
    )
    model = attach_lora(build_base_model(small, 32, 0), LoraSettings(2, 4.0, 0))
    output = run_loss(
        model,
        call.data,
        call.loss_fn,
        call.loss_fn_config,
        vocab_size=32,
        full_logprobs=False,
        backward=False,
    )
    assert_outputs_match(
        deserialize_forward_backward_output(encode_forward_backward_output(output)), output
    )


@given(output=outputs())
def test_forward_backward_output_round_trips_through_the_sdk(output):
    wire = encode_forward_backward_output(output)
    assert_outputs_match(deserialize_forward_backward_output(wire), output)
    parsed = pb.ForwardBackwardOutput.FromString(wire)
    if output.loss_fn_outputs:  # same trailing shape everywhere: one ArrayRecord for all
        assert [r.num_datums for r in parsed.loss_fn_outputs] == [len(output.loss_fn_outputs)]


def test_ragged_trailing_shapes_split_into_records():
    def datum(k: int) -> dict[str, types.TensorData]:
        return {
            "topk": types.TensorData.from_numpy(np.arange(2 * k, dtype=np.float32).reshape(2, k))
        }

    output = types.ForwardBackwardOutput("ArrayRecord", [datum(1), datum(1), datum(3)], {})
    wire = encode_forward_backward_output(output)
    assert [r.num_datums for r in pb.ForwardBackwardOutput.FromString(wire).loss_fn_outputs] == [
        2,
        1,
    ]
    assert_outputs_match(deserialize_forward_backward_output(wire), output)


def test_scalar_outputs_come_back_one_dimensional():
    # The SDK rebuilds every output as [leading, *trailing], so a 0-d value is read as shape [1].
    scalar = types.TensorData.from_numpy(np.array(2.5, dtype=np.float32))
    wire = encode_forward_backward_output(
        types.ForwardBackwardOutput("ArrayRecord", [{"loss": scalar}])
    )
    got = deserialize_forward_backward_output(wire).loss_fn_outputs[0]["loss"]
    assert got.shape == [1] and got.data == [2.5]


def test_outputs_with_different_fields_are_refused():
    one = {"logprobs": types.TensorData.from_numpy(np.zeros(2, np.float32))}
    output = types.ForwardBackwardOutput("ArrayRecord", [one, {}])
    with pytest.raises(ValueError, match=r"loss_fn_outputs\[1\]"):
        encode_forward_backward_output(output)


# ---------------------------------------------------------------- sample results


@st.composite
def topk_matrices(draw, length: int) -> TopkLogprobs:
    k = draw(st.integers(0, 3))
    ids = draw(st.lists(INT32, min_size=length * k, max_size=length * k))
    lps = draw(st.lists(F32, min_size=length * k, max_size=length * k))
    return TopkLogprobs(
        token_ids=np.array(ids, np.int32).reshape(length, k),
        logprobs=np.array(lps, np.float32).reshape(length, k),
    )


@st.composite
def sampled_sequences(draw) -> types.SampledSequence:
    tokens = np.array(draw(st.lists(INT32, max_size=6)), np.int32)
    logprobs = draw(st.lists(F32, min_size=len(tokens), max_size=len(tokens)))
    return types.SampledSequence(
        stop_reason=draw(st.sampled_from(["stop", "length"])),
        sequence_id="s",
        tokens_np=tokens,
        logprobs_np=np.array(logprobs, np.float32) if draw(st.booleans()) else None,
        topk_logprobs_np=draw(st.none() | topk_matrices(len(tokens))),
    )


@st.composite
def sample_responses(draw) -> types.SampleResponse:
    prompt_len = draw(st.integers(0, 6))
    # As compute_logprobs sees it: the first prompt position has no logprob (NaN -> None).
    prompt = draw(st.lists(F32 | st.just(math.nan), min_size=prompt_len, max_size=prompt_len))
    with_prompt = draw(st.booleans())
    return types.SampleResponse(
        sequences=draw(st.lists(sampled_sequences(), max_size=3)),
        prompt_logprobs_np=np.array([math.nan, *prompt], np.float32) if with_prompt else None,
        topk_prompt_logprobs_np=draw(st.none() | topk_matrices(prompt_len + 1)),
        prompt_cache_hit_tokens=draw(INT32),
    )


def assert_topk_matches(got: TopkLogprobs | None, want: TopkLogprobs | None) -> None:
    if want is None or want.token_ids.size == 0:
        assert got is None  # the SDK reads an empty matrix (length or k of 0) as absent
        return
    np.testing.assert_array_equal(got.token_ids, want.token_ids)
    np.testing.assert_array_equal(got.logprobs, want.logprobs)


@given(response=sample_responses())
def test_sample_response_round_trips_through_the_sdk(response):
    got = deserialize_sample_response(encode_sample_response(response))
    assert got.prompt_cache_hit_tokens == response.prompt_cache_hit_tokens
    assert len(got.sequences) == len(response.sequences)
    for got_seq, want_seq in zip(got.sequences, response.sequences, strict=True):
        assert got_seq.stop_reason == want_seq.stop_reason
        assert got_seq.sequence_id is None  # stamped later from the future's sample_sequence_ids
        assert got_seq.tokens_np.dtype == np.int32
        np.testing.assert_array_equal(got_seq.tokens_np, want_seq.tokens_np)
        assert got_seq.tokens == want_seq.tokens
        if want_seq.logprobs_np is None or want_seq.logprobs_np.size == 0:
            assert got_seq.logprobs_np is None  # empty bytes are "absent" to the SDK
        else:
            assert got_seq.logprobs_np.tobytes() == want_seq.logprobs_np.tobytes()
        assert_topk_matches(got_seq.topk_logprobs_np, want_seq.topk_logprobs_np)
    if response.prompt_logprobs_np is None:
        assert got.prompt_logprobs is None
    else:
        assert got.prompt_logprobs_np.tobytes() == response.prompt_logprobs_np.tobytes()
        assert got.prompt_logprobs[0] is None
        assert got.prompt_logprobs == response.prompt_logprobs  # NaN <-> None, both ways
    assert_topk_matches(got.topk_prompt_logprobs_np, response.topk_prompt_logprobs_np)


@given(response=sample_responses())
def test_list_form_responses_decode_to_the_same_lists(response):
    """The local and fake backends fill the SDK's private list storage instead of numpy; the
    public list properties must survive the wire unchanged."""
    as_lists = types.SampleResponse(
        sequences=[
            types.SampledSequence(
                seq.stop_reason,
                seq.sequence_id,
                _tokens_list=seq.tokens,
                _logprobs_list=seq.logprobs,
                _topk_logprobs_list=seq.topk_logprobs,
            )
            for seq in response.sequences
        ],
        prompt_cache_hit_tokens=response.prompt_cache_hit_tokens,
        _prompt_logprobs_list=response.prompt_logprobs,
        _topk_prompt_logprobs_list=response.topk_prompt_logprobs,
    )
    assert as_lists.prompt_logprobs_np is None  # really the list path

    def on_the_wire(topk):  # zero positions: the SDK reads an empty matrix as absent
        return topk or None

    got = deserialize_sample_response(encode_sample_response(as_lists))
    assert got.prompt_cache_hit_tokens == as_lists.prompt_cache_hit_tokens
    for got_seq, want_seq in zip(got.sequences, as_lists.sequences, strict=True):
        assert got_seq.stop_reason == want_seq.stop_reason
        assert got_seq.tokens == want_seq.tokens
        assert got_seq.logprobs == (want_seq.logprobs or None)  # empty is absent on the wire
        assert got_seq.topk_logprobs == on_the_wire(want_seq.topk_logprobs)
    assert got.prompt_logprobs == as_lists.prompt_logprobs  # None -> NaN -> None
    assert got.topk_prompt_logprobs == on_the_wire(as_lists.topk_prompt_logprobs)


@pytest.mark.parametrize("list_form", [False, True])
def test_compute_logprobs_shape(list_form):
    """What compute_logprobs reads: one token, prompt logprobs with None first. The list form
    is how the local backend builds it."""
    if list_form:
        seq = types.SampledSequence("length", "local-0", _tokens_list=[42], _logprobs_list=[-1.0])
        response = types.SampleResponse([seq], _prompt_logprobs_list=[None, -0.5, -2.25])
    else:
        seq = types.SampledSequence("length", "s", tokens_np=np.array([42], np.int32))
        prompt = np.array([np.nan, -0.5, -2.25], np.float32)
        response = types.SampleResponse([seq], prompt_logprobs_np=prompt)
    got = deserialize_sample_response(encode_sample_response(response))
    assert got.prompt_logprobs == [None, -0.5, -2.25]
    assert got.sequences[0].tokens == [42]
    assert got.sequences[0].logprobs == ([-1.0] if list_form else None)


def test_topk_list_rows_are_padded_with_the_sdk_sentinel():
    rows = [[(7, -0.5), (3, -1.5)], None, [(9, -0.25)]]
    seq = types.SampledSequence("stop", "s", _tokens_list=[1, 2, 3], _topk_logprobs_list=rows)
    got = deserialize_sample_response(encode_sample_response(types.SampleResponse([seq])))
    topk = got.sequences[0].topk_logprobs_np
    # Independent of the SDK's list helper: empty cells are token 0 with logprob -99999.
    np.testing.assert_array_equal(topk.token_ids, [[7, 3], [0, 0], [9, 0]])
    np.testing.assert_array_equal(topk.logprobs, [[-0.5, -1.5], [-99999, -99999], [-0.25, -99999]])
    assert got.sequences[0].topk_logprobs == rows

    # Requested but nothing reported stays a list of None, not "not requested".
    seq = types.SampledSequence("stop", "s", _tokens_list=[1, 2], _topk_logprobs_list=[None, None])
    got = deserialize_sample_response(encode_sample_response(types.SampleResponse([seq])))
    assert got.sequences[0].topk_logprobs == [None, None]


def test_unservable_sample_fields_are_refused():
    seq = types.SampledSequence("stop", "s", tokens_np=np.array([1], np.int32))
    with pytest.raises(ValueError, match="stop_reason"):
        encode_sample_response(types.SampleResponse([types.SampledSequence("eos", "s")]))
    target = types.TensorData.from_numpy(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="target_prompt_logprobs"):
        encode_sample_response(types.SampleResponse([seq], target_prompt_logprobs=target))
