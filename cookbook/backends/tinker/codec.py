"""Client calls and their results as JSON, for cassettes (:mod:`.cassette`).

A call is described exactly as the fake backend's :class:`~cookbook.backends.fake.CallRecorder`
records it (``{"call": method, **fields}``: datums and prompts by digest, optimizer and
sampling parameters in full), so a cassette's call list compares directly with the reference's
recipe goldens. Results are serialised from the ``tinker.types`` the SDK returns, exactly:
float32 tensors go through Python floats, which represent them without loss.

Not kept: top-k logprobs of sampling responses and sparse tensor layouts other than the plain
CSR fields; the supervised loop reads neither.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic
from tinker import types

from cookbook.digests import datum_digest, tokens_digest
from cookbook.exceptions import ConfigurationError

CLIENT_RESULTS = {
    "create_lora_training_client": "training",
    "create_training_client_from_state": "training",
    "create_training_client_from_state_with_optimizer": "training",
    "create_sampling_client": "sampling",
    "save_weights_and_get_sampling_client": "sampling",
}
"""Methods whose result is a client, recorded by kind (and model id), not by value."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    # Objects with no JSON form are named by type: an address would make recordings differ.
    return json.loads(json.dumps(value, default=lambda o: type(o).__name__))


def describe_call(method: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"call": method, **fields}`` for a call made with keyword arguments ``kwargs``."""
    kw = dict(kwargs)
    fields: dict[str, Any] = {}
    if method in ("forward", "forward_backward"):
        data = kw.pop("data")
        fields = {
            "loss_fn": kw.pop("loss_fn"),
            "n": len(data),
            "datums": [datum_digest(d) for d in data],
        }
    elif method == "optim_step":
        params = kw.pop("optim_params", None) or kw.pop("adam_params", None)
        kw.pop("adam_params", None)
        key = "adam" if isinstance(params, types.AdamParams) else "optim_params"
        fields = {key: _jsonable(params)}
    elif method in ("save_state", "save_weights_for_sampler"):
        fields = {"name": kw.pop("name"), "ttl_seconds": kw.pop("ttl_seconds", None)}
    elif method in ("compute_logprobs", "sample"):
        fields = {"prompt": tokens_digest(kw.pop("prompt"))}
        if method == "sample":
            fields["num_samples"] = kw.pop("num_samples")
            fields["sampling_params"] = _jsonable(kw.pop("sampling_params"))
    elif method == "create_lora_training_client":
        fields = {
            "base_model": kw.pop("base_model"),
            "rank": kw.pop("rank", 32),
            "user_metadata": _jsonable(kw.pop("user_metadata", None)),
        }
    elif method.startswith("create_training_client_from_state"):
        fields = {"path": kw.pop("path"), "user_metadata": _jsonable(kw.pop("user_metadata", None))}
    elif method == "get_training_run_by_tinker_path":
        fields = {"path": kw.pop("tinker_path")}
    fields.update({key: _jsonable(value) for key, value in kw.items()})
    return {"call": method, **fields}


def _tensor(td: types.TensorData) -> dict[str, Any]:
    out: dict[str, Any] = {"dtype": td.dtype, "shape": td.shape, "data": td.data}
    if td.sparse_crow_indices is not None:
        out["sparse_crow_indices"] = list(td.sparse_crow_indices)
        out["sparse_col_indices"] = list(td.sparse_col_indices or [])
    return out


def _sequence(seq: types.SampledSequence) -> dict[str, Any]:
    return {
        "stop_reason": seq.stop_reason,
        "sequence_id": seq.sequence_id,
        "tokens": list(seq.tokens),
        "logprobs": seq.logprobs,
    }


def encode_result(method: str, value: Any) -> dict[str, Any]:
    """The JSON form of ``method``'s result; raises for a type a cassette cannot hold."""
    if method in CLIENT_RESULTS:
        return {"client": CLIENT_RESULTS[method], "model_id": getattr(value, "model_id", None)}
    if isinstance(value, types.ForwardBackwardOutput):
        return {
            "type": "ForwardBackwardOutput",
            "loss_fn_output_type": value.loss_fn_output_type,
            "loss_fn_outputs": [
                {name: _tensor(td) for name, td in out.items()} for out in value.loss_fn_outputs
            ],
            "metrics": dict(value.metrics),
        }
    if isinstance(value, types.SampleResponse):
        return {
            "type": "SampleResponse",
            "sequences": [_sequence(s) for s in value.sequences],
            "prompt_logprobs": value.prompt_logprobs,
            "prompt_cache_hit_tokens": value.prompt_cache_hit_tokens,
        }
    if isinstance(value, pydantic.BaseModel) and getattr(types, type(value).__name__, None) is type(
        value
    ):
        return {"type": type(value).__name__, "data": value.model_dump(mode="json")}
    if value is None or isinstance(value, list):  # compute_logprobs, deletes
        return {"type": "json", "data": value}
    raise ConfigurationError(f"cassette: cannot record the {type(value).__name__} of {method}")


def decode_result(encoded: Mapping[str, Any]) -> Any:
    """The ``tinker.types`` value of a recorded result (clients are the player's business)."""
    kind = encoded.get("type")
    if kind == "ForwardBackwardOutput":
        return types.ForwardBackwardOutput(
            loss_fn_output_type=encoded["loss_fn_output_type"],
            loss_fn_outputs=[
                {name: types.TensorData(**td) for name, td in out.items()}
                for out in encoded["loss_fn_outputs"]
            ],
            metrics=dict(encoded["metrics"]),
        )
    if kind == "SampleResponse":
        sequences = [
            types.SampledSequence(
                stop_reason=s["stop_reason"],
                sequence_id=s["sequence_id"],
                _tokens_list=s["tokens"],
                _logprobs_list=s["logprobs"],
            )
            for s in encoded["sequences"]
        ]
        return types.SampleResponse(
            sequences=sequences,
            prompt_cache_hit_tokens=encoded["prompt_cache_hit_tokens"],
            _prompt_logprobs_list=encoded["prompt_logprobs"],
        )
    if kind == "json":
        return encoded["data"]
    cls = getattr(types, str(kind), None)
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):
        return cls.model_validate(encoded["data"])
    raise ConfigurationError(f"cassette: unknown result type {kind!r}")
