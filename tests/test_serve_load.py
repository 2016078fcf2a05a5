"""N SDK clients training and sampling through one cookbook-serve at once, under injected
faults: each gets exactly the results it gets alone on a clean server, and the server's
``--record`` log holds each client's calls exactly once, in its order - nothing lost, nothing
applied twice. 3 clients x 2 steps in ``nox -s tests``; 8 x 4 under the ``fuzz`` profile."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_serve import ADAM, MODEL, _config, _sdk
from tinker import types

from cookbook.serve.server import RunningServer, serve

pytestmark = pytest.mark.fuzz

BIG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
CLIENTS, STEPS = (8, 4) if BIG else (3, 2)
# Refusals, lost answers and slow futures at a seeded rate: the SDK's retries meet the dedupe.
FAULTS = "500@*~0.05,drop@*~0.05,429@*~0.03,slow:1@*~0.1,seed=11"


def _batch(client: int, step: int) -> list[types.Datum]:
    rng = np.random.default_rng([client, step])
    data = []
    for _ in range(2):
        tokens = rng.integers(0, 128_000, size=20).tolist()
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 19},
            )
        )
    return data


def _client(server: RunningServer, client: int) -> tuple[dict[str, Any], str]:
    """One client's training and sampling: its results and its model id."""
    with _sdk(server) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        out: dict[str, Any] = {"logprobs": [], "metrics": []}
        for step in range(STEPS):
            fb = tc.forward_backward(_batch(client, step), "cross_entropy")
            optim = tc.optim_step(ADAM[step % 2])
            out["logprobs"].append([o["logprobs"].tolist() for o in fb.result().loss_fn_outputs])
            out["metrics"].append(optim.result().metrics)
        sampler = tc.save_weights_and_get_sampling_client().result()
        prompt = types.ModelInput.from_ints([1000 + client, 1001, 1002, 1003])
        response = sampler.sample(prompt, 2, types.SamplingParams(max_tokens=4, seed=client))
        out["samples"] = [(s.tokens, s.logprobs) for s in response.result().sequences]
        return out, tc.model_id


def _calls_by_client(record: Path, ids: dict[int, str]) -> dict[int, list[dict]]:
    """The recorded calls of each client; a sampler's id is ``{model_id}:sample:{n}``."""
    owner = {model_id: client for client, model_id in ids.items()}
    calls: dict[int, list[dict]] = {client: [] for client in ids}
    for line in record.read_text().splitlines():
        call = json.loads(line)
        calls[owner[call.pop("model_id").split(":sample:")[0]]].append(call)
    return calls


def test_concurrent_clients_lose_nothing_and_repeat_nothing(tmp_path: Path) -> None:
    alone: dict[int, Any] = {}
    alone_ids: dict[int, str] = {}
    with serve(_config(tmp_path / "alone", record=tmp_path / "alone.jsonl")) as server:
        for client in range(CLIENTS):
            alone[client], alone_ids[client] = _client(server, client)
    together: dict[int, Any] = {}
    together_ids: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(client: int) -> None:
        try:
            together[client], together_ids[client] = _client(server, client)
        except BaseException as error:
            errors.append(error)

    record = tmp_path / "together.jsonl"
    with serve(_config(tmp_path / "together", FAULTS, record=record)) as server:
        threads = [threading.Thread(target=run, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        served, injected = server.httpd.routes.served, len(server.injected())
    assert errors == []
    assert together == alone
    expected = _calls_by_client(tmp_path / "alone.jsonl", alone_ids)
    assert _calls_by_client(record, together_ids) == expected
    applied = sum(len(calls) for calls in expected.values())
    assert applied == CLIENTS * (2 * STEPS + 3) and injected > 0  # create, steps, save, sample
    print(
        f"load: {CLIENTS} clients, {served} requests served, {injected} faults injected, "
        f"{applied} calls applied once each"
    )  # shown with -s
