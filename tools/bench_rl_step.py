"""An RL step on the local backend, split into its phases, and what cookbook-serve adds to it.

One RL step as ``rl.train`` makes it: ``save_weights_and_get_sampling_client`` (``save``), one
``sample(num_samples=group_size)`` per group, all submitted before any result is awaited
(``sampling``), datums with group-centred advantages (the policy-gradient datums of
``recipes/rl_loop``), ``forward_backward(importance_sampling)`` (``forward_backward``) and
``optim_step(Adam)`` (``optimizer``), each awaited before the next phase so that the phases can
be timed apart. The reward is a deterministic function of the sampled tokens (the share of even
token ids), so advantages are not zero and the weights move as in real training.

Two variants train the same stand-in (``LocalModelConfig()``, seed 0) from the same start, in
one process, in rounds whose order alternates after a warm-up: ``local``, the in-process
:class:`~cookbook.backends.local.LocalServiceClient`; ``served``, the unmodified tinker SDK
against ``cookbook.serve.server.serve`` on loopback. Sampling is seeded per request, so both
sample the same tokens; the first step's samples and logprobs must be identical both ways
before timing. Both run the same number of steps, so they stay in lockstep.

Reported: each variant's median step time and per-phase medians, the share of each phase in the
local step, and ``served/local`` (goal <= 1.15x) per step and per phase.

    python tools/bench_rl_step.py --output reports/bench/rl_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TINKER_TELEMETRY", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import bench_local_backend as bench
import tinker
from bench_serve import API_KEY
from tinker import types

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.recipes.rl_loop import _datum as policy_gradient_datum
from cookbook.renderers import get_renderer
from cookbook.serve.server import ServeConfig, serve
from cookbook.tokenizers import get_tokenizer
from cookbook.versions import package_versions

TARGET_OVERHEAD = 1.15
PHASES = ("save", "sampling", "forward_backward", "optimizer")
QUESTIONS = [f"What is {x} + {y}?" for x, y in ((17, 25), (3, 98), (41, 7), (66, 66))]


def reward(tokens: list[int]) -> float:
    return sum(1 for t in tokens if t % 2 == 0) / max(len(tokens), 1)


class RLStep:
    """One variant's training client; :meth:`step` runs a step and records its phases."""

    def __init__(self, client: Any, prompts: list[types.ModelInput], args: Any) -> None:
        self.client, self.prompts = client, prompts
        self.group_size = args.group_size
        self.params = types.SamplingParams(max_tokens=args.max_tokens, seed=args.seed)
        self.phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self.first: list[Any] | None = None

    def _timed(self, phase: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = work()
        self.phases[phase].append(time.perf_counter() - start)
        return result

    def _sample(self, sampler: Any) -> list[Any]:
        futures = [sampler.sample(p, self.group_size, self.params) for p in self.prompts]
        return [future.result() for future in futures]

    def step(self) -> None:
        sampler = self._timed("save", lambda: self.client.save_weights_and_get_sampling_client())
        sampler = sampler.result() if hasattr(sampler, "result") else sampler
        responses = self._timed("sampling", lambda: self._sample(sampler))
        datums = []
        for prompt, response in zip(self.prompts, responses, strict=True):
            rewards = [reward(list(s.tokens)) for s in response.sequences]
            mean = sum(rewards) / len(rewards)
            for sequence, r in zip(response.sequences, rewards, strict=True):
                datums.append(
                    policy_gradient_datum(prompt, sequence.tokens, sequence.logprobs, r - mean)
                )
        fb = self._timed(
            "forward_backward",
            lambda: self.client.forward_backward(datums, "importance_sampling").result(),
        )
        self._timed("optimizer", lambda: self.client.optim_step(bench.ADAM).result())
        if self.first is None:
            self.first = [
                [(list(s.tokens), list(s.logprobs)) for s in r.sequences] for r in responses
            ] + [o["logprobs"].tolist() for o in fb.loss_fn_outputs]


def _medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(t) for name, t in times.items()}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    tokenizer = get_tokenizer(bench.MODEL_NAME, "offline")
    renderer = get_renderer("llama3", tokenizer)
    prompts = [
        renderer.build_generation_prompt([{"role": "user", "content": q}])
        for q in QUESTIONS[: args.groups]
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(ServeConfig(state_dir=Path(tmp) / "serve", seed=bench.SEED)) as server,
        tinker.ServiceClient(base_url=server.url, api_key=API_KEY) as sdk,
    ):
        local = LocalServiceClient(
            Path(tmp) / "local", LocalModelConfig(), bench.SEED, tokenizer=tokenizer
        )
        clients = {
            "local": local.create_lora_training_client(bench.MODEL_NAME, rank=bench.RANK),
            "served": sdk.create_lora_training_client(base_model=bench.MODEL_NAME, rank=bench.RANK),
        }
        steps = {name: RLStep(c.result(), prompts, args) for name, c in clients.items()}
        for variant in steps.values():
            variant.step()
        if steps["local"].first != steps["served"].first:
            raise SystemExit("in-process and served first RL steps differ: not the same work")
        for variant in steps.values():  # the first step is the comparison: not timed
            variant.phases = {phase: [] for phase in PHASES}
        times = bench.time_rounds(
            {
                name: (lambda v=v: [v.step() for _ in range(args.steps_per_round)])
                for name, v in steps.items()
            },
            args.rounds,
        )
        stand_in = local.describe()
    warm_up = args.steps_per_round  # time_rounds' warm-up round
    phases = {
        name: _medians({p: t[warm_up:] for p, t in v.phases.items()}) for name, v in steps.items()
    }
    step_s = {name: m / args.steps_per_round for name, m in _medians(times).items()}
    local_total = sum(phases["local"].values())
    overhead = step_s["served"] / step_s["local"]
    return {
        "median_step_s": step_s,
        "phase_median_s": phases,
        "local_phase_share": {p: s / local_total for p, s in phases["local"].items()},
        "ratios": {
            "served/local": overhead,
            **{
                f"served/local {p}": phases["served"][p] / phases["local"][p]
                for p in PHASES
                if phases["local"][p] > 0
            },
        },
        "target_overhead": TARGET_OVERHEAD,
        "meets_target": overhead <= TARGET_OVERHEAD,
        "round_times_s": times,
        "model": {"stand_in": stand_in, "seed": bench.SEED},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--groups", type=int, default=2, choices=range(1, len(QUESTIONS) + 1))
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7, help="the sampling requests' seed")
    parser.add_argument("--steps-per-round", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    result = {
        "benchmark": "rl_step_phases_and_serve_overhead",
        **measure(args),
        "workload": {
            "prompts": QUESTIONS[: args.groups],
            "renderer": "llama3",
            "groups": args.groups,
            "group_size": args.group_size,
            "max_tokens": args.max_tokens,
            "steps_per_round": args.steps_per_round,
            "rounds": args.rounds,
            "loss_fn": "importance_sampling",
            "reward": "share of even token ids, centred per group",
            "lora_rank": bench.RANK,
            "adam": bench.ADAM.model_dump(),
        },
        "machine": {**bench.machine_info(), "loadavg_start": load, "loadavg_end": os.getloadavg()},
        "versions": package_versions(bench.PACKAGES),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    share = ", ".join(f"{p} {s:.0%}" for p, s in result["local_phase_share"].items())
    print(
        f"RL step local {result['median_step_s']['local']:.3f}s ({share}); served/local "
        f"{result['ratios']['served/local']:.2f}x (target <= {TARGET_OVERHEAD}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
