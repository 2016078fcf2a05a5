"""The local backend's sampling client: scores and samples with a frozen copy of the adapter.

A sampling client shares its training client's model object but runs it with its own snapshot
of the adapter weights (swapped into the adapter's parameters for the duration of one request,
then swapped back), so training on afterwards never changes what an existing sampling client
computes, and a snapshot costs only the adapter's size, not a copy of the (vocabulary-sized)
base model. Requests run one at a time (in process by construction, in cookbook-serve on its
single engine worker), which is what makes the swap safe; it costs a few hundred pointer
assignments per request where ``torch.func.functional_call`` re-walked the whole model at
every decoded token.

Sampling semantics
------------------
- Each request runs its prompt once (KV cache); its samples then decode together
  (``DECODE_ROWS`` at a time) on that cache repeated once per sample: one step feeds every
  sample's newest token and computes the last position's logits only, so the
  vocabulary-sized LM head (what a CPU decode step costs) is read once per step for all
  samples, not once per sample. A sample that has stopped stays in the batch, its results
  ignored, so the others' values never depend on when it stopped. The client keeps its
  latest prompts' passes (``PREFILL_CACHE_TOKENS`` prompt tokens in all, the newest
  always): the RL loop sends one request per sample, so the members of a group share
  one prompt pass. The pass is a pure function of the prompt and the frozen snapshot, so
  reusing it returns exactly what recomputing it would.
- ``temperature == 0``: greedy (ties go to the lowest token id). Otherwise logits are divided
  by the temperature, then ``top_k`` (if > 0) and ``top_p`` (if < 1) filter them, and a token
  is drawn with a ``torch.Generator`` seeded from ``(seed, sample index)``. ``seed=None`` takes
  the service seed, a digest of the request (prompt, sampling params, num_samples) and how many
  times this client was sent that same request: runs are reproducible and repeated calls still
  differ, whatever order concurrent requests arrive in (the RL loop samples its groups
  concurrently; through cookbook-serve their arrival order varies from run to run). Identical
  requests are interchangeable, so only which of them gets which draw can vary.
- The returned ``logprobs`` are those of the model's own distribution (temperature 1, no
  filtering) at each sampled token, as vLLM reports by default.
- ``stop``: integer ids stop right after that token is sampled; strings stop once the decoded
  sampled text contains one (needs the tokenizer given to the service client). The stop
  token(s) are part of the returned sequence, ``stop_reason="stop"``; otherwise sampling ends
  at ``max_tokens`` (default :data:`cookbook.backends.fake.DEFAULT_MAX_TOKENS`) or at the
  model's context length with ``stop_reason="length"``.
- Determinism: the result is a function of the request (prompt, params, ``num_samples``,
  seed) and the snapshot. A one-sample request (how the RL loop samples) computes exactly
  what the plain per-sample loop computes, bit for bit. With several samples the batched
  float32 products (:func:`~cookbook.backends.local.decoding.head_logits`) can differ from a
  one-sample request's in the last bits: the first sample of a request and a one-sample
  request with the same seed draw with the same generator from the same distribution, but a
  draw on the edge between two tokens may go the other way.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from tinker import types

from cookbook.backends.fake import DEFAULT_MAX_TOKENS
from cookbook.backends.fake_core import FakeFuture, SamplingClientAsyncTwins
from cookbook.backends.local.decoding import head_logits, parse_stops, pick
from cookbook.backends.local.model import (
    LoraSettings,
    adapter_parameters,
    attach_lora,
    cache_keyword,
    check_tokens,
)
from cookbook.backends.local.runtime import Runtime
from cookbook.exceptions import ConfigurationError

PREFILL_CACHE_TOKENS = (
    4096  # prompt tokens whose passes a sampling client keeps (SmolLM2: 46 kB each)
)
DECODE_ROWS = 64  # samples decoded together at most: 64 x 128256 logits = 33 MB per buffer

_SAMPLE_REQUESTS = itertools.count()
"""Numbers the process's sample requests, so every sampled sequence's ``sequence_id`` is
distinct (the SDK's contract; StableReinforce datums name sequences by it)."""


def _derive_seed(*parts: int) -> int:
    digest = hashlib.sha256(json.dumps(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class LocalSamplingClient(SamplingClientAsyncTwins):
    """Scores and samples with the model and a frozen adapter snapshot."""

    def __init__(
        self,
        runtime: Runtime,
        model: torch.nn.Module,
        adapter: Mapping[str, torch.Tensor],
        base_model: str,
    ) -> None:
        self._model = model
        self._live = adapter_parameters(model)
        self._adapter = {name: t.detach().clone() for name, t in adapter.items()}
        self._prefills: collections.OrderedDict[tuple[int, ...], tuple[torch.Tensor, Any]] = (
            collections.OrderedDict()
        )
        self._base_model = base_model
        self._vocab_size = runtime.vocab_size
        self._tokenizer = runtime.tokenizer
        self._seed = runtime.seed
        self._repeats: collections.Counter[str] = collections.Counter()
        self._cache_keyword = cache_keyword()
        self._max_positions = model.config.max_position_embeddings

    def get_base_model(self) -> str:
        return self._base_model

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """The model runs with this client's adapter snapshot inside, its own outside."""
        live = {name: param.data for name, param in self._live.items()}
        try:
            for name, param in self._live.items():
                param.data = self._adapter[name]
            yield
        finally:
            for name, param in self._live.items():
                param.data = live[name]

    def _logits(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Logits of the first row; called inside :meth:`_snapshot`."""
        with torch.no_grad():
            return self._model(input_ids=input_ids, **kwargs).logits[0]

    def _prompt(self, prompt: types.ModelInput) -> list[int]:
        try:
            tokens = prompt.to_ints()
        except ValueError:
            raise ConfigurationError("the local backend takes text-only prompts") from None
        if not tokens:
            raise ConfigurationError("the prompt is empty")
        if len(tokens) > self._max_positions:
            raise ConfigurationError(
                f"the prompt has {len(tokens)} tokens; the local model takes "
                f"{self._max_positions} (max_position_embeddings)"
            )
        return check_tokens(tokens, self._vocab_size, "prompt").tolist()

    def _prompt_logprobs(
        self, tokens: list[int], last_n: int | None, logits: torch.Tensor | None = None
    ) -> list[float | None]:
        if logits is None:
            logits = self._logits(torch.tensor([tokens]), use_cache=False)
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        scored = logprobs.gather(1, torch.tensor(tokens[1:])[:, None])[:, 0].tolist()
        values: list[float | None] = [None, *scored]
        if last_n is not None:
            values[: len(values) - last_n] = [None] * (len(values) - last_n)
        return values

    def compute_logprobs(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> FakeFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it; the first entry is None."""
        tokens = self._prompt(prompt)
        with self._snapshot():
            return FakeFuture(self._prompt_logprobs(tokens, prompt_logprobs_last_n))

    def _stopped(self, out: list[int], stop_ids: set[int], stop_strings: list[str]) -> bool:
        if out[-1] in stop_ids:
            return True
        if not stop_strings:
            return False
        text = self._tokenizer.decode(out)
        return any(s in text for s in stop_strings)

    def _prefill(self, tokens: list[int]) -> tuple[torch.Tensor, Any]:
        """The prompt's last-position logits and its KV cache, computed once per prompt while
        it is among the latest ones kept (samples copy the cache, never change it)."""
        from transformers import DynamicCache

        key = tuple(tokens)
        if key in self._prefills:
            self._prefills.move_to_end(key)
            return self._prefills[key]
        cache = DynamicCache()
        logits = self._logits(
            torch.tensor([tokens]), use_cache=True, logits_to_keep=1, **{self._cache_keyword: cache}
        )[-1]
        self._prefills[key] = logits, cache
        while sum(map(len, self._prefills)) > PREFILL_CACHE_TOKENS and len(self._prefills) > 1:
            self._prefills.popitem(last=False)
        return logits, cache

    def _next_logits(self, ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Last-position logits of each row of ``ids`` (``[rows, 1]``) continuing ``cache``.
        One row runs the model's own head, as it always has; several rows share
        :func:`~cookbook.backends.local.decoding.head_logits`' faster vocabulary product."""
        cached = {"use_cache": True, self._cache_keyword: cache}
        if len(ids) == 1:
            return self._logits(ids, logits_to_keep=1, **cached)[-1:]
        with torch.no_grad():
            hidden = self._model.model(input_ids=ids, **cached).last_hidden_state
        return head_logits(self._model.lm_head, hidden[:, -1])

    def _decode(
        self,
        limit: int,
        params: types.SamplingParams,
        stops: tuple[set[int], list[str]],
        seeds: list[int],
        first_logits: torch.Tensor | None,
        prompt_cache: Any,
    ) -> list[tuple[list[int], list[float], str]]:
        """(tokens, logprobs, stop reason) of one sample per seed, at most ``limit`` tokens
        each, decoded together. Their first tokens come from the prompt's logits; then the
        prompt's KV cache, repeated once per sample, takes every sample's newest token per
        step. A finished sample stays in the batch (fed its last token, its results ignored)
        so the others' products keep their shapes and their values never depend on which
        samples stopped when."""
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        outs: list[list[int]] = [[] for _ in seeds]
        logprobs: list[list[float]] = [[] for _ in seeds]
        reasons = ["length"] * len(seeds)
        live = list(range(len(seeds)))
        cache = None
        for step in range(limit):
            if step == 0:
                logits = first_logits[None].expand(len(live), -1)
            else:
                if cache is None:
                    cache = copy.deepcopy(prompt_cache)
                    if len(seeds) > 1:
                        cache.batch_repeat_interleave(len(seeds))
                logits = self._next_logits(torch.tensor([out[-1:] for out in outs]), cache)
            rows = logits if len(live) == len(seeds) else logits[live]
            tokens, chosen = pick(rows, params, [generators[i] for i in live])
            for i, token, logprob in zip(live, tokens, chosen, strict=True):
                outs[i].append(token)
                logprobs[i].append(logprob)
                if self._stopped(outs[i], *stops):
                    reasons[i] = "stop"
            live = [i for i in live if reasons[i] == "length"]
            if not live:
                break
        return list(zip(outs, logprobs, reasons, strict=True))

    def _unseeded(self, tokens: list[int], num_samples: int, params: types.SamplingParams) -> int:
        request = json.dumps([tokens, num_samples, params.model_dump(mode="json")])
        key = hashlib.sha256(request.encode("utf-8")).hexdigest()
        self._repeats[key] += 1
        return _derive_seed(self._seed, int(key[:15], 16), self._repeats[key])

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> FakeFuture[types.SampleResponse]:
        if topk_prompt_logprobs or topk_sample_logprobs or prompt_alt_tokens_k:
            raise ConfigurationError("the local backend does not return top-k logprobs")
        if target_prompt_logprobs is not None:
            raise ConfigurationError("the local backend does not take target_prompt_logprobs")
        if num_samples < 1:
            raise ConfigurationError(f"num_samples must be >= 1, got {num_samples}")
        params = sampling_params
        if params.temperature < 0 or not 0 < params.top_p <= 1:
            raise ConfigurationError("sample: needs temperature >= 0 and 0 < top_p <= 1")
        stops = parse_stops(params.stop)
        if stops[1] and self._tokenizer is None:
            raise ConfigurationError(
                "sample: string stop sequences need a tokenizer (LocalServiceClient(tokenizer=))"
            )
        tokens = self._prompt(prompt)
        seed = (
            params.seed if params.seed is not None else self._unseeded(tokens, num_samples, params)
        )
        with self._snapshot():
            return FakeFuture(
                self._sample(
                    tokens,
                    num_samples,
                    params,
                    stops,
                    seed,
                    include_prompt_logprobs,
                    prompt_logprobs_last_n,
                )
            )

    def _sample(
        self,
        tokens: list[int],
        num_samples: int,
        params: types.SamplingParams,
        stops: tuple[set[int], list[str]],
        seed: int,
        include_prompt_logprobs: bool,
        prompt_logprobs_last_n: int | None,
    ) -> types.SampleResponse:
        # A one-token sample with prompt logprobs (how the SDK sends compute_logprobs) takes
        # its token from the same forward pass that scores the prompt.
        full = (
            self._logits(torch.tensor([tokens]), use_cache=False)
            if include_prompt_logprobs and params.max_tokens == 1
            else None
        )
        limit = DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens
        limit = min(limit, self._max_positions - len(tokens))
        first, prompt_cache = None if full is None else full[-1], None
        if first is None and limit > 0:
            first, prompt_cache = self._prefill(tokens)
        request = next(_SAMPLE_REQUESTS)
        seeds = [_derive_seed(seed, index) for index in range(num_samples)]
        decoded = [
            row
            for start in range(0, num_samples, DECODE_ROWS)
            for row in self._decode(
                limit, params, stops, seeds[start : start + DECODE_ROWS], first, prompt_cache
            )
        ]
        sequences = [
            types.SampledSequence(
                stop_reason=reason,
                sequence_id=f"local-{request}:{index}",
                _tokens_list=out,
                _logprobs_list=logprobs,
            )
            for index, (out, logprobs, reason) in enumerate(decoded)
        ]
        prompt_logprobs = (
            self._prompt_logprobs(tokens, prompt_logprobs_last_n, full)
            if include_prompt_logprobs
            else None
        )
        return types.SampleResponse(sequences=sequences, _prompt_logprobs_list=prompt_logprobs)


def sampling_client_from_path(runtime: Runtime, path: str) -> LocalSamplingClient:
    """A sampling client on the adapter of a ``save_weights_for_sampler`` checkpoint."""
    payload = runtime.load_checkpoint(path, "sampler")
    model = attach_lora(runtime.base, LoraSettings(**payload["lora"]))
    return LocalSamplingClient(runtime, model, payload["adapter"], payload["base_model"])
