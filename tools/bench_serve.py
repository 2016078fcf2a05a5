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

Scoring is ``compute_logprobs`` of each prompt, all requests first (as the test-set NLL
evaluator does). The SDK sends it as a one-token ``sample`` with prompt logprobs (the local
backend scores and samples that in one forward pass, but still picks a token the call throws
away); ``local_sample1`` runs that request in process, separating the wire from the compute.

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


def summarise(times: dict[str, list[float]], tokens: int, *ratios: str) -> dict[str, Any]:
    """``ratios``: ``"a/b"``, the median round time of variant a over b's."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "median_round_s": medians,
        "tokens_per_s": {name: tokens / m for name, m in medians.items()},
        "ratios": {r: medians[r.split("/")[0]] / medians[r.split("/")[1]] for r in ratios},
        "round_times_s": times,
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
        requests = {
            name: requests_per_call(server, training[name], len(batches))
            for name in ("served", "served_pipelined")
        }
        scoring_requests = requests_per_call(server, scoring["served"], len(prompts))
        training_times = bench.time_rounds(training, args.rounds)
        scoring_times = bench.time_rounds(scoring, args.rounds)
        stand_in = local.describe()
    tokens = sum(d.model_input.length for b in batches for d in b)
    scored = sum(p.length for p in prompts)
    return {
        "training": {
            **summarise(training_times, tokens, "served/local", "served_pipelined/local"),
            "http_requests_per_step": requests,
        },
        "scoring": {
            **summarise(scoring_times, scored, "served/local", "served/local_sample1"),
            "http_requests_per_prompt": scoring_requests,
        },
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
    args = parser.parse_args(argv)
    *batches, test = bench.make_batches(args.batch_size, args.max_length, args.steps_per_round + 1)
    # Scored as the test-set NLL evaluator scores a datum: its input plus the last target.
    prompts = [d.model_input.append_int(d.loss_fn_inputs["target_tokens"].data[-1]) for d in test]
    result = {
        "benchmark": "serve_wire_overhead",
        **measure(args, batches, prompts),
        "workload": {
            "data": "tinker_cookbook/example_data/conversations.jsonl, llama3 renderer, "
            "all_assistant_messages; the batch after the training batches is scored",
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "steps_per_round": args.steps_per_round,
            "rounds": args.rounds,
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
    t, s = result["training"]["ratios"], result["scoring"]["ratios"]
    print(
        f"served/local: training {t['served/local']:.2f}x waiting on each result, "
        f"{t['served_pipelined/local']:.2f}x pipelined; scoring {s['served/local']:.2f}x "
        f"({s['served/local_sample1']:.2f}x over the same request in process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
