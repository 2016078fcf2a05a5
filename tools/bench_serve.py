"""What the wire protocol costs: the same work in process and through cookbook-serve.

One process runs the training steps of ``tools/bench_local_backend.py`` (same batches,
``forward_backward(cross_entropy)`` + ``optim_step(AdamW)``) and the scoring of held-out prompts
on the same stand-in (``LocalModelConfig()``, seed 0) two ways: ``local``, the in-process
:class:`~cookbook.backends.local.LocalServiceClient`; ``served``, the unmodified tinker SDK
against ``cookbook.serve.server.serve`` on loopback, waiting on each result, and
``served_pipelined``, which submits a step's two calls and keeps one more step in flight before
waiting, as our trainer does (``submit_ahead: 1``). The first step's logprobs and the first
scores must be identical both ways before timing; rounds alternate after a warm-up.

Per step the wire adds protobuf encoding of the datums (SDK) and decoding (server), and back for
the logprobs (``wire_bytes_per_step``); JSON for ``optim_step``; per call a POST answered with a
request id, then a ``retrieve_future`` long poll that returns when the server's worker is done
(``http_requests_per_step``); and the SDK's asyncio thread and the HTTP handler threads compete
with torch for the cores. Waiting puts all of it in series with the compute; pipelining can
overlap it where a core is free.

Scoring (``--part scoring`` alone) is ``compute_logprobs`` of each held-out prompt
(``--score-batches`` batches), all requests first (as the test-set NLL
evaluator does). The SDK sends it as a one-token ``sample`` with prompt logprobs (the local
backend scores and samples that in one forward pass, but still picks a token the call throws
away); ``local_sample1`` runs that request in process, separating the wire from the compute.

Scoring rounds are many and short, so each round's served/local is reported too
(``paired_ratios``: the two ran back to back), with quartiles and extremes, beside the ratio of
medians; ``cpu_s`` is the process's CPU time per round, the in-process server's threads
included, and ``wire_ms_per_prompt`` what the wire adds to one prompt.

    python tools/bench_serve.py --output reports/bench/serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TINKER_TELEMETRY", "0")  # telemetry posts would add unrelated requests

import bench_local_backend as bench
import tinker
from tinker import types
from tinker.proto.request_conv import forward_backward_request_to_proto

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.serve.codec import encode_forward_backward_output
from cookbook.serve.server import RunningServer, ServeConfig, serve
from cookbook.tokenizers import get_tokenizer
from cookbook.versions import package_versions

SUBMIT_AHEAD = 1
API_KEY = "tml-bench"


def train_waiting(client: Any, batches: list[list[types.Datum]]) -> list[Any]:
    """Each result awaited before the next call."""
    outputs = []
    for batch in batches:
        outputs.append(client.forward_backward(batch, "cross_entropy").result())
        client.optim_step(bench.ADAM).result()
    return outputs


def train_pipelined(client: Any, batches: list[list[types.Datum]]) -> None:
    in_flight: deque[tuple[Any, Any]] = deque()
    for batch in batches:
        in_flight.append(
            (client.forward_backward(batch, "cross_entropy"), client.optim_step(bench.ADAM))
        )
        if len(in_flight) > SUBMIT_AHEAD:
            for future in in_flight.popleft():
                future.result()
    for pair in in_flight:
        for future in pair:
            future.result()


def score(sampler: Any, prompts: list[types.ModelInput]) -> list[list[float | None]]:
    futures = [sampler.compute_logprobs(prompt) for prompt in prompts]
    return [future.result() for future in futures]


def score_as_served(sampler: Any, prompts: list[types.ModelInput]) -> None:
    """What the SDK's compute_logprobs asks the server for, run in process."""
    params = types.SamplingParams(max_tokens=1)
    futures = [sampler.sample(p, 1, params, include_prompt_logprobs=True) for p in prompts]
    for future in futures:
        future.result()


def requests_per_call(server: RunningServer, run: Callable[[], object], calls: int) -> float:
    before = server.httpd.routes.served
    run()
    return (server.httpd.routes.served - before) / calls


def sampler_after_first_step(service: Any, client: Any) -> Any:
    path = client.save_weights_for_sampler("bench").result().path
    return service.create_sampling_client(model_path=path).result()


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes: how far one round's figure can be trusted."""
    ordered = sorted(values)
    quartiles = (
        statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    )
    return {
        "median": statistics.median(ordered),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": ordered[0],
        "max": ordered[-1],
    }


def summarise(
    times: dict[str, list[float]], cpu: dict[str, list[float]], tokens: int, *ratios: str
) -> dict[str, Any]:
    """``ratios``: ``"a/b"``, the median round time of variant a over b's; ``paired_ratios``:
    a over b within each round (the two ran back to back, so a load change between rounds
    cancels), with their spread; ``cpu_s``: the process's CPU seconds per round (the server is
    a thread of it, so they include its work)."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    pairs = {r: r.split("/") for r in ratios}
    return {
        "median_round_s": medians,
        "tokens_per_s": {name: tokens / m for name, m in medians.items()},
        "ratios": {r: medians[a] / medians[b] for r, (a, b) in pairs.items()},
        "paired_ratios": {
            r: spread([x / y for x, y in zip(times[a], times[b], strict=True)])
            for r, (a, b) in pairs.items()
        },
        "cpu_ratios": {
            r: statistics.median(cpu[a]) / statistics.median(cpu[b]) for r, (a, b) in pairs.items()
        },
        "round_times_s": times,
        "cpu_s": cpu,
    }


def wire_bytes(batch: list[types.Datum], output: types.ForwardBackwardOutput) -> dict[str, int]:
    """The protobuf bodies of one forward_backward, as the SDK and the server encode them."""
    fb_input = types.ForwardBackwardInput(data=batch, loss_fn="cross_entropy")
    request = types.ForwardBackwardRequest(forward_backward_input=fb_input, model_id="m", seq_id=1)
    return {
        "forward_backward_request": forward_backward_request_to_proto(request).ByteSize(),
        "forward_backward_response": len(encode_forward_backward_output(output)),
    }


def measure(args: argparse.Namespace, batches: list, prompts: list) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(ServeConfig(state_dir=Path(tmp) / "serve", seed=bench.SEED)) as server,
        tinker.ServiceClient(base_url=server.url, api_key=API_KEY) as sdk,
    ):
        tokenizer = get_tokenizer(bench.MODEL_NAME, "offline")
        local = LocalServiceClient(
            Path(tmp) / "local", LocalModelConfig(), bench.SEED, tokenizer=tokenizer
        )
        local_tc = local.create_lora_training_client(bench.MODEL_NAME, rank=bench.RANK).result()
        served_tc = sdk.create_lora_training_client(
            base_model=bench.MODEL_NAME, rank=bench.RANK
        ).result()
        first = {"local": train_waiting(local_tc, batches[:1])[0]}
        first["served"] = train_waiting(served_tc, batches[:1])[0]
        logprobs = {
            n: [o["logprobs"].tolist() for o in f.loss_fn_outputs] for n, f in first.items()
        }
        if logprobs["local"] != logprobs["served"]:
            raise SystemExit("in-process and served first steps differ: not the same computation")
        local_sampler = sampler_after_first_step(local, local_tc)
        served_sampler = sampler_after_first_step(sdk, served_tc)
        if score(local_sampler, prompts) != score(served_sampler, prompts):
            raise SystemExit("in-process and served scores differ: not the same computation")
        training = {
            "local": lambda: train_waiting(local_tc, batches),
            "served": lambda: train_waiting(served_tc, batches),
            "served_pipelined": lambda: train_pipelined(served_tc, batches),
        }
        scoring = {
            "local": lambda: score(local_sampler, prompts),
            "local_sample1": lambda: score_as_served(local_sampler, prompts),
            "served": lambda: score(served_sampler, prompts),
        }
        result: dict[str, Any] = {}
        tokens = sum(d.model_input.length for b in batches for d in b)
        scored = sum(p.length for p in prompts)
        if args.part in ("all", "training"):
            requests = {
                name: requests_per_call(server, training[name], len(batches))
                for name in ("served", "served_pipelined")
            }
            cpu: dict[str, list[float]] = {}
            times = bench.time_rounds(training, args.rounds, cpu)
            ratios = ("served/local", "served_pipelined/local")
            result["training"] = {
                **summarise(times, cpu, tokens, *ratios),
                "http_requests_per_step": requests,
            }
        if args.part in ("all", "scoring"):
            scoring_requests = requests_per_call(server, scoring["served"], len(prompts))
            cpu = {}
            times = bench.time_rounds(scoring, args.scoring_rounds, cpu)
            served_s = statistics.median(times["served"])
            local_s = statistics.median(times["local"])
            result["scoring"] = {
                **summarise(times, cpu, scored, "served/local", "served/local_sample1"),
                "http_requests_per_prompt": scoring_requests,
                "wire_ms_per_prompt": 1000 * (served_s - local_s) / len(prompts),
            }
        stand_in = local.describe()
    return {
        **result,
        "wire_bytes_per_step": wire_bytes(batches[0], first["local"]),
        "first_step": {"loss:sum": first["local"].metrics["loss:sum"], "served_identical": True},
        "model": {"stand_in": stand_in, "seed": bench.SEED},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--scoring-rounds",
        type=int,
        default=11,
        help="scoring rounds (more than training's: a scoring round is short and noisy)",
    )
    parser.add_argument(
        "--score-batches", type=int, default=2, help="held-out batches scored per round"
    )
    parser.add_argument("--part", choices=("all", "training", "scoring"), default="all")
    args = parser.parse_args(argv)
    made = bench.make_batches(
        args.batch_size, args.max_length, args.steps_per_round + args.score_batches
    )
    batches = made[: args.steps_per_round]
    test = [datum for batch in made[args.steps_per_round :] for datum in batch]
    # Scored as the test-set NLL evaluator scores a datum: its input plus the last target.
    prompts = [d.model_input.append_int(d.loss_fn_inputs["target_tokens"].data[-1]) for d in test]
    result = {
        "benchmark": "serve_wire_overhead",
        **measure(args, batches, prompts),
        "workload": {
            "data": "tinker_cookbook/example_data/conversations.jsonl, llama3 renderer, "
            "all_assistant_messages; the batches after the training batches are scored",
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "steps_per_round": args.steps_per_round,
            "rounds": args.rounds,
            "scoring_rounds": args.scoring_rounds,
            "part": args.part,
            "test_prompts": len(prompts),
            "submit_ahead": SUBMIT_AHEAD,
            "lora_rank": bench.RANK,
            "adam": bench.ADAM.model_dump(),
        },
        "machine": bench.machine_info(),
        "versions": package_versions(bench.PACKAGES),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    if "training" in result:
        t = result["training"]["ratios"]
        print(
            f"served/local training: {t['served/local']:.2f}x waiting on each result, "
            f"{t['served_pipelined/local']:.2f}x pipelined"
        )
    if "scoring" in result:
        scoring = result["scoring"]
        paired = scoring["paired_ratios"]["served/local"]
        print(
            f"served/local scoring: {scoring['ratios']['served/local']:.2f}x of the medians; "
            f"per round {paired['median']:.2f}x (quartiles {paired['q1']:.2f}-{paired['q3']:.2f}, "
            f"{paired['min']:.2f}-{paired['max']:.2f} over {args.scoring_rounds} rounds); CPU "
            f"{scoring['cpu_ratios']['served/local']:.2f}x; "
            f"{scoring['wire_ms_per_prompt']:.1f} ms a prompt on the wire"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
