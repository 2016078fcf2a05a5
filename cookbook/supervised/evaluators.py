"""Held-out NLL through a sampling client: the reference's ``SamplerNLLEvaluator``.

It scores weights the way training does, but on a sampler snapshot of the pre-step weights,
so ``test/nll`` at step ``s`` is comparable with ``train_mean_nll`` of the same step.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import tinker

from cookbook.data.dataset import SupervisedDataset
from cookbook.supervised.common import compute_bpb, compute_mean_nll
from cookbook.tokenizers import Tokenizer


class SamplerNLLEvaluator:
    """``{name}/nll`` (and ``{name}/bpb`` with a tokenizer) over fixed datums."""

    def __init__(
        self, data: list[tinker.Datum], name: str = "test", tokenizer: Tokenizer | None = None
    ):
        self.data = data
        self.name = name
        self.tokenizer = tokenizer

    @classmethod
    def from_dataset(
        cls, dataset: SupervisedDataset, name: str = "test", tokenizer: Tokenizer | None = None
    ) -> SamplerNLLEvaluator:
        data = list(
            itertools.chain.from_iterable(dataset.get_batch(i) for i in range(len(dataset)))
        )
        return cls(data, name=name, tokenizer=tokenizer)

    def __call__(self, sampling_client: Any) -> dict[str, float]:
        # All requests first, then the results: the service overlaps them, as the
        # reference's asyncio.gather does, and the call order stays the datum order.
        futures = [
            sampling_client.compute_logprobs(
                datum.model_input.append_int(int(datum.loss_fn_inputs["target_tokens"].data[-1]))
            )
            for datum in self.data
        ]
        # The first position has no logprob; the rest line up with the datum's weights.
        logprobs = [
            tinker.TensorData.from_numpy(np.array(f.result()[1:], dtype=np.float32))
            for f in futures
        ]
        weights = [d.loss_fn_inputs["weights"] for d in self.data]
        metrics = {f"{self.name}/nll": compute_mean_nll(logprobs, weights)}
        if self.tokenizer is not None:
            targets = [d.loss_fn_inputs["target_tokens"] for d in self.data]
            metrics[f"{self.name}/bpb"] = compute_bpb(logprobs, weights, targets, self.tokenizer)
        return metrics
