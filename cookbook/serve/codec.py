"""Server side of the tinker SDK 0.38 protobuf codec.

The SDK posts ``forward_backward`` bodies as protobuf (``tinker/proto/request_conv.py``) and reads
ForwardBackwardOutput/SampleResponse results only as protobuf (``response_conv.py``). Each function
here inverts one SDK function, so the SDK's own decoder rebuilds exactly what the server hands in;
messages come from the SDK's generated module, so the schema cannot drift from the client.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import zstandard
from google.protobuf.message import DecodeError
from tinker import types
from tinker.proto import tinker_public_pb2 as pb
from tinker.types.topk_logprobs import MASK_LOGPROB, TopkLogprobs

from cookbook.exceptions import CookbookError

# The public wire carries only these two dtypes in both directions (request_conv writes nothing
# else); int32/bfloat16 exist in the schema for internal use only.
_FROM_PROTO_DTYPE = {pb.DTYPE_FLOAT32: "float32", pb.DTYPE_INT64: "int64"}
_TO_PROTO_DTYPE = {name: code for code, name in _FROM_PROTO_DTYPE.items()}
_NUMPY_DTYPE = {"float32": np.dtype(np.float32), "int64": np.dtype(np.int64)}
_STOP_REASON = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}


class ProtocolError(CookbookError, ValueError):
    """A request body the server cannot decode; the server answers HTTP 400 with ``str(self)``,
    one line naming the offending field."""


@dataclass(frozen=True)
class ForwardBackwardCall:
    """One decoded ``/api/v1/forward_backward`` body (forward() uses the same endpoint)."""

    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float | str] | None
    forward_only: bool
    data: list[types.Datum]


def decode_forward_backward_request(
    body: bytes, content_encoding: str | None = None, max_size: int | None = None
) -> ForwardBackwardCall:
    """Inverse of ``forward_backward_request_to_proto`` plus the ``forward_only`` flag and the
    optional zstd compression that ``AsyncTrainingResource.forward_backward`` add; a body that
    decompresses to over ``max_size`` bytes is refused before it is all in memory."""
    msg = pb.ForwardBackwardRequest()
    try:
        msg.ParseFromString(_decompress(body, content_encoding, max_size))
    except DecodeError as exc:
        raise ProtocolError(f"body: not a ForwardBackwardRequest protobuf ({exc})") from exc
    return ForwardBackwardCall(
        model_id=msg.model_id,
        seq_id=msg.seq_id,
        loss_fn=msg.loss_fn,
        loss_fn_config=_loss_fn_config(msg),
        forward_only=msg.forward_only,
        data=[_datum(datum, f"data[{i}]") for i, datum in enumerate(msg.data)],
    )


# zstd turns 256 compressed bytes into at most ~8 MiB: the overshoot past max_size per step.
_ZSTD_STEP = 256


def _decompress(body: bytes, content_encoding: str | None, max_size: int | None) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "zstd":
        raise ProtocolError(f"Content-Encoding: {content_encoding!r} is not supported (zstd)")
    # Streaming also accepts frames whose header omits the content size (decompress() refuses
    # them); eof and unused_data still reject a truncated or padded body.
    # Fed in steps, so a small bomb cannot expand to gigabytes before the size check.
    stream = zstandard.ZstdDecompressor().decompressobj()
    raw = bytearray()
    fed = 0
    try:
        while fed < len(body) and not stream.eof:
            raw += stream.decompress(body[fed : fed + _ZSTD_STEP])
            fed += _ZSTD_STEP
            if max_size is not None and len(raw) > max_size:
                raise ProtocolError(f"body: zstd data decompresses to over {max_size} bytes")
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"body: invalid zstd data ({exc})") from exc
    if not stream.eof or stream.unused_data or fed < len(body):
        raise ProtocolError("body: zstd data is truncated or followed by extra bytes")
    return bytes(raw)


def _loss_fn_config(msg: pb.ForwardBackwardRequest) -> dict[str, float | str] | None:
    """The SDK dual-writes floats to both maps and strings only to v2, so v2 is complete when
    set; the legacy map is read only for clients that predate v2."""
    if not msg.loss_fn_config_v2:
        return dict(sorted(msg.loss_fn_config.items())) or None
    config: dict[str, float | str] = {}
    for key, value in sorted(msg.loss_fn_config_v2.items()):
        arm = value.WhichOneof("value")
        if arm is None:
            raise ProtocolError(f"loss_fn_config_v2[{key!r}]: neither number nor text is set")
        config[key] = getattr(value, arm)
    return config


def _datum(msg: pb.Datum, where: str) -> types.Datum:
    chunks = [_chunk(chunk, f"{where}.model_input[{j}]") for j, chunk in enumerate(msg.model_input)]
    inputs = {
        name: _tensor(tensor, f"{where}.loss_fn_inputs[{name!r}]")
        for name, tensor in sorted(msg.loss_fn_inputs.items())
    }
    # Empty and absent span lists look the same on the wire; Datum wants both or neither.
    spans: dict[str, list] = {}
    if msg.model_input_spans or msg.loss_fn_input_spans:
        for field in ("model_input_spans", "loss_fn_input_spans"):
            spans[field] = [
                _span(s, f"{where}.{field}[{k}]") for k, s in enumerate(getattr(msg, field))
            ]
    return types.Datum(model_input=types.ModelInput(chunks=chunks), loss_fn_inputs=inputs, **spans)


def _chunk(msg: pb.Chunk, where: str) -> types.EncodedTextChunk | types.ImageChunk:
    kind = msg.WhichOneof("chunk")
    if kind == "encoded_text":
        tokens = _frombuffer(msg.encoded_text.tokens, np.dtype(np.int32), f"{where}.encoded_text")
        return types.EncodedTextChunk(tokens=tokens.tolist())
    if kind == "image":
        image = msg.image
        if image.format not in ("png", "jpeg"):
            raise ProtocolError(f"{where}.image.format: {image.format!r} is not png or jpeg")
        expected = image.expected_tokens if image.HasField("expected_tokens") else None
        return types.ImageChunk(data=image.data, format=image.format, expected_tokens=expected)
    raise ProtocolError(f"{where}: chunk type {kind or 'unset'} is not encoded_text or image")


def _frombuffer(raw: bytes, dtype: np.dtype, where: str) -> np.ndarray:
    if len(raw) % dtype.itemsize:
        raise ProtocolError(f"{where}: {len(raw)} bytes is not a whole number of {dtype} values")
    return np.frombuffer(raw, dtype=dtype).copy()


def _tensor(msg: pb.Tensor, where: str) -> types.TensorData:
    """Inverse of ``request_conv._tensor_data_to_proto``. An empty shape means the sender had
    none (the SDK writes shape only when set), so it decodes as None: a flat tensor."""
    dtype = _FROM_PROTO_DTYPE.get(msg.dtype)
    if dtype is None:
        raise ProtocolError(f"{where}.dtype: {msg.dtype} is not float32 or int64")
    shape = list(msg.shape)
    encoding = msg.WhichOneof("encoding")
    if encoding == "dense":
        values = _frombuffer(msg.dense, _NUMPY_DTYPE[dtype], f"{where}.dense")
        if shape and (min(shape) < 0 or math.prod(shape) != values.size):
            raise ProtocolError(f"{where}.shape: {shape} does not hold {values.size} values")
        return types.TensorData(data=values, dtype=dtype, shape=shape or None)
    if encoding == "sparse_csr":
        csr = msg.sparse_csr
        values = _frombuffer(csr.values, _NUMPY_DTYPE[dtype], f"{where}.sparse_csr.values")
        crow = _frombuffer(csr.crow_indices, np.dtype(np.int64), f"{where}.sparse_csr.crow_indices")
        col = _frombuffer(csr.col_indices, np.dtype(np.int64), f"{where}.sparse_csr.col_indices")
        # Checked here so a bad matrix is a 400 now, not a torch error when the loss densifies it.
        ok = len(shape) == 2 and min(shape) >= 0 and crow.size == shape[0] + 1
        ok = ok and crow[0] == 0 and crow[-1] == values.size == col.size
        if not ok or np.any(np.diff(crow) < 0) or np.any((col < 0) | (col >= shape[1])):
            raise ProtocolError(f"{where}.sparse_csr: not a valid CSR matrix of shape {shape}")
        return types.TensorData(values, dtype, shape, crow.tolist(), col.tolist())
    raise ProtocolError(f"{where}: tensor has neither dense nor sparse_csr data")


def _span(msg: pb.ProvenanceSpan, where: str):
    kind = msg.WhichOneof("span")
    if kind is None:
        raise ProtocolError(f"{where}: neither prompt_tokens nor sampled_tokens is set")
    cls = types.PromptProvenanceSpan if kind == "prompt_tokens" else types.SampledProvenanceSpan
    arm = getattr(msg, kind)
    try:
        return cls(sequence_id=arm.sequence_id, offset=arm.offset, length=arm.length)
    except ValueError as exc:
        raise ProtocolError(f"{where}.{kind}: {exc}") from exc


def encode_forward_backward_output(output: types.ForwardBackwardOutput) -> bytes:
    """Inverse of ``deserialize_forward_backward_output``: every field of every datum becomes one
    BatchedTensor (byte offsets, trailing shape). Datums whose trailing shapes or dtypes differ
    from their predecessor's start a new ArrayRecord, the SDK's layout for ragged outputs; in the
    usual case that is a single record."""
    msg = pb.ForwardBackwardOutput(loss_fn_output_type=output.loss_fn_output_type)
    for key, value in output.metrics.items():
        msg.metrics[key] = float(value)
    names = sorted(output.loss_fn_outputs[0]) if output.loss_fn_outputs else []
    arrays = []
    for i, datum in enumerate(output.loss_fn_outputs):
        if sorted(datum) != names:
            # The SDK indexes every field by datum position, so one missing field corrupts all.
            raise ValueError(f"loss_fn_outputs[{i}]: fields {sorted(datum)} differ from {names}")
        arrays.append({name: _output_array(datum[name]) for name in names})
    for _, run in itertools.groupby(
        arrays, key=lambda datum: [(a.dtype.str, a.shape[1:]) for a in datum.values()]
    ):
        group = list(run)
        record = msg.loss_fn_outputs.add(num_datums=len(group))
        for name in names:
            parts = [datum[name] for datum in group]
            batched = record.fields[name]
            batched.dtype = _TO_PROTO_DTYPE[str(parts[0].dtype)]
            batched.trailing_shape.extend(parts[0].shape[1:])
            batched.offsets = np.cumsum([0] + [p.nbytes for p in parts], dtype=np.int64).tobytes()
            batched.data = b"".join(p.tobytes() for p in parts)
    return msg.SerializeToString()


def _output_array(td: types.TensorData) -> np.ndarray:
    # ascontiguousarray makes a 0-d value 1-d, which is what the SDK would read anyway: it
    # rebuilds every output as [leading, *trailing].
    return np.ascontiguousarray(td.to_numpy(), dtype=_NUMPY_DTYPE[td.dtype])


def encode_sample_response(response: types.SampleResponse) -> bytes:
    """Inverse of ``deserialize_sample_response``. Each field is read from its numpy form when
    set, else from the SDK's private list storage (what the local and fake backends fill) via
    the public list property. A prompt position without a logprob (None in the list form, as
    for the first token) travels as NaN, which the SDK's ``prompt_logprobs`` turns back into
    None. ``sequence_id`` is not on the wire: the SDK stamps it from ``sample_sequence_ids``."""
    msg = pb.SampleResponse(prompt_cache_hit_tokens=response.prompt_cache_hit_tokens)
    for i, seq in enumerate(response.sequences):
        if seq.stop_reason not in _STOP_REASON:
            raise ValueError(f"sequences[{i}].stop_reason: {seq.stop_reason!r} is not stop/length")
        out = msg.sequences.add(stop_reason=_STOP_REASON[seq.stop_reason])
        tokens = seq.tokens_np if seq.tokens_np is not None else seq.tokens
        out.tokens = np.asarray(tokens, dtype=np.int32).tobytes()
        logprobs = seq.logprobs_np if seq.logprobs_np is not None else seq.logprobs
        if logprobs is not None:
            out.logprobs = np.asarray(logprobs, dtype=np.float32).tobytes()
        topk = seq.topk_logprobs_np if seq.topk_logprobs_np is not None else seq.topk_logprobs
        if topk is not None:
            out.topk_sampled_logprobs.CopyFrom(_topk(topk))
    prompt = response.prompt_logprobs_np
    if prompt is None and response.prompt_logprobs is not None:
        prompt = [math.nan if value is None else value for value in response.prompt_logprobs]
    if prompt is not None:
        msg.prompt_logprobs = np.asarray(prompt, dtype=np.float32).tobytes()
    topk = response.topk_prompt_logprobs_np
    if topk is None:
        topk = response.topk_prompt_logprobs
    if topk is not None:
        msg.topk_prompt_logprobs.CopyFrom(_topk(topk))
    if response.target_prompt_logprobs is not None or response.prompt_alt_tokens is not None:
        # Silently dropping them would hand the caller None for data it asked for.
        raise ValueError("target_prompt_logprobs/prompt_alt_tokens: not served by cookbook-serve")
    return msg.SerializeToString()


def _topk(topk: TopkLogprobs | list[list[tuple[int, float]] | None]) -> pb.TopkLogprobs:
    """Rows of the list form are padded with the sentinel cells that ``topk_to_lists`` strips
    (all-sentinel for None), so both forms decode to the same lists. k is at least 1: the SDK
    reads k = 0 as "not requested", which would turn all-None rows into None."""
    if isinstance(topk, list):
        k = max((len(row) for row in topk if row), default=1)
        ids = np.zeros((len(topk), k), dtype=np.int32)
        logprobs = np.full((len(topk), k), MASK_LOGPROB, dtype=np.float32)
        for i, row in enumerate(topk):
            for j, (token, logprob) in enumerate(row or []):
                ids[i, j], logprobs[i, j] = token, logprob
        topk = TopkLogprobs(token_ids=ids, logprobs=logprobs)
    length, k = topk.token_ids.shape
    return pb.TopkLogprobs(
        token_ids=np.asarray(topk.token_ids, dtype=np.int32).tobytes(),
        logprobs=np.asarray(topk.logprobs, dtype=np.float32).tobytes(),
        k=k,
        length=length,
    )
