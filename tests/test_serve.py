"""cookbook-serve through the unmodified tinker SDK: the same results as the local backend in
process, every operation applied exactly once (retries, injected faults), the version guard,
keys, binding and the CLI's errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import served_runs
import tinker
from tinker import types

from cookbook.backends.local.config import LocalModelConfig
from cookbook.backends.local.service import LocalServiceClient
from cookbook.backends.tinker import TinkerRestClient, TinkerServiceClient, clients
from cookbook.exceptions import ConfigurationError
from cookbook.serve import compat, routes
from cookbook.serve.cli import main as serve_main
from cookbook.serve.engine import ModelMap
from cookbook.serve.faults import FaultPlan
from cookbook.serve.server import RunningServer, ServeConfig, check_bind, serve
from cookbook.tokenizers import get_tokenizer

MODEL = "meta-llama/Llama-3.1-8B"
KEY = "tml-SERVEkey0123456789abcdef"
# The stand-in of tests/test_recipe_cli.py's TINY spec: small enough for a step in ~0.1 s.
SMALL = LocalModelConfig(**served_runs.SMALL)
ADAM = [types.AdamParams(learning_rate=lr, beta1=0.9, beta2=0.95, eps=1e-8) for lr in (1e-2, 5e-3)]


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


def _config(tmp_path: Path, faults: str | None = None, **kwargs: object) -> ServeConfig:
    return ServeConfig(
        state_dir=tmp_path / "serve",
        model_map=ModelMap(default=SMALL),
        faults=FaultPlan.parse(faults) if faults else None,
        **kwargs,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve(_config(tmp_path)) as running:
        yield running


def _sdk(server: RunningServer) -> tinker.ServiceClient:
    return tinker.ServiceClient(base_url=server.url, api_key=KEY)


def _rest(sdk: tinker.ServiceClient) -> TinkerRestClient:
    """REST look-ups over ``sdk``'s own connections, released when it closes. A
    ``tinker.RestClient(base_url=..., api_key=...)`` takes the SDK's process-wide holder for that
    URL, which nothing closes: it is finalised at interpreter exit, after the SDK's event loop,
    and prints "Exception ignored in InternalClientHolder.__del__" after the test summary."""
    return TinkerServiceClient(sdk, secrets=[KEY]).create_rest_client()


def _datum(seed: int) -> types.Datum:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 128_000, size=24).tolist()
    weights = (np.arange(23) >= 8).astype(np.float32).tolist()
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )


BATCHES = [[_datum(0), _datum(1)], [_datum(2), _datum(3)]]


def _train(service: object) -> dict[str, object]:
    """Two steps, a save, scoring and seeded sampling: what any client can compare."""
    tc = service.create_lora_training_client(base_model=MODEL, rank=8).result()
    out: dict[str, object] = {"logprobs": [], "grad_norms": []}
    for batch, adam in zip(BATCHES, ADAM, strict=True):
        fb = tc.forward_backward(batch, "cross_entropy")
        step = tc.optim_step(adam)
        out["logprobs"].append([o["logprobs"].tolist() for o in fb.result().loss_fn_outputs])
        out["grad_norms"].append(step.result().metrics["local/grad_norm"])
    sampler = service.create_sampling_client(
        model_path=tc.save_weights_for_sampler("final").result().path
    ).result()
    prompt = types.ModelInput.from_ints(list(range(1000, 1012)))
    out["scores"] = sampler.compute_logprobs(prompt).result()
    response = sampler.sample(prompt, 2, types.SamplingParams(max_tokens=6, seed=3)).result()
    out["samples"] = [(s.tokens, s.logprobs, s.stop_reason) for s in response.sequences]
    return out


def test_the_sdk_through_the_server_equals_the_local_backend_in_process(
    server: RunningServer, tmp_path: Path
) -> None:
    with _sdk(server) as sdk:
        served = _train(sdk)
    local = LocalServiceClient(tmp_path / "local", SMALL, seed=0, tokenizer=get_tokenizer(MODEL))
    assert served == _train(local)
    assert served["scores"][0] is None and len(served["samples"][0][0]) == 6
    calls = [c["call"] for c in server.recorded()]
    assert calls == [
        "create_lora_training_client",
        *["forward_backward", "optim_step"] * 2,
        "save_weights_for_sampler",
        "compute_logprobs",
        "sample",
    ]
    assert [c["adam"]["learning_rate"] for c in server.recorded() if "adam" in c] == [1e-2, 5e-3]


FAULTS = (
    "500@forward_backward#1,drop@optim_step#1,429@retrieve_future#3,"
    "slow:2@forward_backward#2,drop@asample#1,500@create_model#1"
)


def test_under_injected_faults_no_step_is_lost_or_applied_twice(tmp_path: Path) -> None:
    with serve(_config(tmp_path / "clean")) as clean, _sdk(clean) as sdk:
        expected = _train(sdk)
        expected_calls = clean.recorded()
    with serve(_config(tmp_path / "faulty", FAULTS)) as faulty, _sdk(faulty) as sdk:
        assert _train(sdk) == expected
        assert faulty.recorded() == expected_calls
        injected = {(f["endpoint"], f["kind"]) for f in faulty.injected()}
    # Every rule fired: the equality above held through each of them.
    assert injected == {
        ("forward_backward", "500"),
        ("optim_step", "drop"),
        ("retrieve_future", "429"),
        ("forward_backward", "slow"),
        ("asample", "drop"),
        ("create_model", "500"),
    }


def _post(server: RunningServer, endpoint: str, body: dict, **headers: str) -> httpx.Response:
    headers = {"X-API-Key": KEY, **headers}
    return httpx.post(f"{server.url}/api/v1/{endpoint}", json=body, headers=headers)


def test_a_resent_operation_is_applied_once(server: RunningServer) -> None:
    session = _post(
        server,
        "create_session",
        {"tags": [], "user_metadata": None, "sdk_version": tinker.__version__},
    ).json()["session_id"]
    create = {"session_id": session, "model_seq_id": 0, "base_model": MODEL}
    first, again = (_post(server, "create_model", create).json() for _ in range(2))
    assert first["request_id"] == again["request_id"]
    model_id = _post(server, "retrieve_future", {"request_id": first["request_id"]}).json()[
        "model_id"
    ]
    step = {"model_id": model_id, "seq_id": 1, "adam_params": {"learning_rate": 0.1}}
    ids = {_post(server, "optim_step", step).json()["request_id"] for _ in range(3)}
    assert len(ids) == 1
    assert _post(server, "retrieve_future", {"request_id": ids.pop()}).status_code == 200
    assert [c["call"] for c in server.recorded()] == ["create_lora_training_client", "optim_step"]


def test_the_installed_sdk_is_one_the_server_speaks() -> None:
    # Fails when tinker drifts outside the range: re-check the wire protocol, then widen it.
    assert compat.unsupported_sdk(tinker.__version__) is None, tinker.__version__


@pytest.mark.parametrize("version", ["0.37.2", "0.39.0", "1.0.0"])
def test_another_sdk_version_gets_a_clear_error(server: RunningServer, version: str) -> None:
    reply = _post(server, "client/config", {"sdk_version": version})
    assert reply.status_code == 400
    detail = reply.json()["detail"]
    assert f"this client is tinker {version}" in detail and compat.SUPPORTED_SDK_RANGE in detail
    by_header = _post(
        server, "get_info", {"model_id": "x"}, **{"X-Stainless-Package-Version": version}
    )
    assert by_header.status_code == 400 and by_header.json()["detail"] == detail


def test_the_sdk_itself_reports_the_version_error(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinker.lib import internal_client_holder

    monkeypatch.setattr(internal_client_holder, "tinker_sdk_version", "0.37.0")
    with (
        pytest.raises(tinker.BadRequestError, match=r"this client is tinker 0\.37\.0"),
        _sdk(server) as sdk,
    ):
        sdk.create_lora_training_client(base_model=MODEL, rank=8).result()


def test_the_tinker_backend_ends_its_sdk_session_however_the_block_ends(
    server: RunningServer,
) -> None:
    """An open SDK session keeps heartbeating after its server is gone; conftest.py's check
    sees it, and ``closing()`` (what cookbook-run and evals use) ends it, error or not."""
    from conftest import _live_sdk_sessions

    client = TinkerServiceClient(_sdk(server), secrets=[KEY])
    with pytest.raises(RuntimeError, match="mid-run"), client.closing():
        client.create_lora_training_client(base_model=MODEL, rank=8).result()
        assert list(_live_sdk_sessions().values()) == ["session-1-1"]
        raise RuntimeError("mid-run")
    assert _live_sdk_sessions() == {}


def test_a_client_holder_left_open_is_seen(server: RunningServer) -> None:
    """conftest.py fails a test that leaves an SDK holder open (the GC would close it at some
    arbitrary later point, at exit after the SDK's loop is gone). It sees one being used, and
    sees it closed once its service client is."""
    from conftest import _sdk_holders_created

    with _sdk_holders_created() as created:
        sdk = _sdk(server)
        sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        [(holder, where)] = created
        assert not holder._closed and where.startswith("test_serve.py:")
        sdk.close("success").result()
        assert holder._closed


def test_a_session_the_service_cannot_finish_is_released_within_the_bound(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK would retry a failing finish for five minutes, heartbeating all the while; the
    run waits CLOSE_TIMEOUT_S, says so in one line, and the SDK client is released."""
    from conftest import _live_sdk_sessions

    dispatch = routes.Routes._dispatch

    def finish_unavailable(self: routes.Routes, method: str, endpoint: str, *rest: object):
        if endpoint.endswith("/finish"):  # retryable: the SDK backs off and asks again
            return routes._error(503, "finish unavailable")
        return dispatch(self, method, endpoint, *rest)

    monkeypatch.setattr(routes.Routes, "_dispatch", finish_unavailable)
    monkeypatch.setattr(clients, "CLOSE_TIMEOUT_S", 0.5)
    client = TinkerServiceClient(_sdk(server), secrets=[KEY])
    client.create_lora_training_client(base_model=MODEL, rank=8).result()
    client.close("errored")
    assert "tinker: could not end the session cleanly (TimeoutError)" in caplog.text
    assert _live_sdk_sessions(settle_s=10) == {}


def test_keys_are_required_and_never_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cookbook.serve")
    assert _post(server, "create_session", {}, **{"X-API-Key": "sk-wrong"}).status_code == 401
    assert httpx.get(f"{server.url}/api/v1/healthz").json()["server"] == "cookbook-serve"
    with _sdk(server) as sdk:
        sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
    assert caplog.records  # the access log ran...
    assert KEY not in caplog.text  # ...without the key


def test_unknown_endpoints_and_bad_bodies_are_one_line_errors(server: RunningServer) -> None:
    missing = _post(server, "unload_model", {"model_id": "m"})
    assert missing.status_code == 404
    assert missing.json()["detail"] == "cookbook-serve does not implement POST /api/v1/unload_model"
    bad = httpx.post(
        f"{server.url}/api/v1/forward_backward",
        content=b"\xff\x00garbage",
        headers={"X-API-Key": KEY},
    )
    assert bad.status_code == 400 and bad.json()["detail"].startswith("forward_backward: ")
    unknown = _post(server, "optim_step", {"model_id": "nope", "adam_params": {}})
    assert unknown.json()["detail"] == "optim_step: unknown model_id 'nope'"


def test_binding_beyond_loopback_needs_allow_remote() -> None:
    check_bind("127.0.0.1", allow_remote=False)
    check_bind("localhost", allow_remote=False)
    with pytest.raises(ConfigurationError, match="--allow-remote"):
        check_bind("0.0.0.0", allow_remote=False)
    check_bind("0.0.0.0", allow_remote=True, api_key=KEY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "boom@optim_step"], "--faults: rule 1 'boom@optim_step': unknown kind"),
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--model-map", "{map}"], "{map}:2: m.hidden_size: "),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model_map = tmp_path / "map.yaml"
    model_map.write_text("m:\n  hidden_size: -1\n")
    args = [a.format(map=model_map) for a in args]
    assert serve_main(["--port", "0", "--state-dir", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message.format(map=model_map) in err
    assert not (tmp_path / "s").exists()


RUN_FAULTS = (
    "500@forward_backward#2,drop@optim_step#3,429@asample#2,slow:2@forward_backward#3,"
    "drop@save_weights#1,500@retrieve_future~0.05,seed=3"
)


@pytest.mark.parametrize("faults", [None, RUN_FAULTS], ids=["clean", "faults"])
def test_cookbook_run_through_the_server_equals_the_local_run(
    faults: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's promise: `--set backend=tinker` against cookbook-serve trains through the
    real SDK with the local profile, and its metrics are the in-process local run's - also
    when the server refuses, drops and delays requests."""
    from test_recipe_cli import TINY

    from cookbook.cli import main as run_main

    spec = tmp_path / "tiny.yaml"
    # TINY's stand-in is SMALL (the server's); the overlay must reach the served run too.
    spec.write_text(TINY + "  overlay: {max_steps: 4, learning_rate: 1.0e-2}\n", "utf-8")
    assert (
        run_main([str(spec), "--set", "backend=local", "--log-dir", str(tmp_path / "local")]) == 0
    )
    served_dir = tmp_path / "served"
    with serve(_config(tmp_path, faults)) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", KEY)
        assert run_main([str(spec), "--set", "backend=tinker", "--log-dir", str(served_dir)]) == 0
    metrics = [
        (tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("local", "served")
    ]
    assert len(metrics[0]) == 4 and metrics[0] == metrics[1]
    config = json.loads((served_dir / "config.json").read_text())
    assert config["served_by"]["url"] == server.url and config["spec"]["max_steps"] == 4
    calls = [c["call"] for c in server.recorded()]
    saves = (tmp_path / "local" / "checkpoints.jsonl").read_text().splitlines()
    assert calls.count("optim_step") == 4 and calls.count("save_state") == len(saves) > 0
    if faults:
        assert {f["endpoint"] for f in server.injected()} >= {
            "forward_backward",
            "optim_step",
            "asample",
            "save_weights",
        }


def test_the_cli_serves_until_terminated(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "cookbook.serve", "--port", "0", "--port-file", str(port_file)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        banner = proc.stdout.readline()  # printed once listening: no polling, no sleeps
        url = banner.split()[-1]
        assert banner.startswith("cookbook-serve listening on http://127.0.0.1:")
        assert url.endswith(":" + port_file.read_text())
        assert httpx.get(f"{url}/api/v1/healthz").json()["status"] == "ok"
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "stopped after 1 requests, 0 applied calls, 0 injected faults" in out


def test_a_saved_state_resumes_exactly_and_names_its_run(server: RunningServer) -> None:
    with _sdk(server) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        tc.forward_backward(BATCHES[0], "cross_entropy").result()
        tc.optim_step(ADAM[0]).result()
        path = tc.save_state("mid").result().path
        resumed = sdk.create_training_client_from_state_with_optimizer(path).result()
        steps = []
        for client in (tc, resumed):
            client.forward_backward(BATCHES[1], "cross_entropy").result()
            steps.append(client.optim_step(ADAM[1]).result().metrics)
        run = _rest(sdk)
        owner = run.get_training_run_by_tinker_path(path).result()
    assert path == f"tinker://{tc.model_id}/weights/mid"
    assert steps[0] == steps[1]  # same adapter, same AdamW moments, same step count
    assert (owner.training_run_id, owner.base_model) == (tc.model_id, MODEL)


def test_an_eval_through_the_server_scores_like_the_local_backend(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A served run's checkpoint, evaluated through the server (sampling and scoring via the
    SDK), gets the in-process local eval's samples and score."""
    from test_recipe_cli import TINY

    from cookbook.cli import main as run_main
    from cookbook.specs.recipe import FinalSample

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY + "  overlay: {max_steps: 2, learning_rate: 1.0e-2}\n", "utf-8")
    small = [f"--set=local.model.{k}={v}" for k, v in SMALL.model_dump(exclude_unset=True).items()]
    arithmetic = ["specs/evals/arithmetic.yaml", "--set=source.count=4", *small]
    results = {}
    for backend in ("local", "tinker"):
        if backend == "tinker":
            monkeypatch.setenv("TINKER_BASE_URL", server.url)
            monkeypatch.setenv("TINKER_API_KEY", KEY)
        run, out = tmp_path / f"run-{backend}", tmp_path / f"eval-{backend}"
        assert run_main([str(spec), f"--set=backend={backend}", f"--log-dir={run}"]) == 0
        argv = [*arithmetic, f"--set=backend={backend}", f"--checkpoint={run}", f"--log-dir={out}"]
        assert run_main(argv) == 0
        results[backend] = (
            (out / "samples.jsonl").read_text(),
            json.loads((out / "results.json").read_text())["score"],
        )
    assert results["tinker"] == results["local"]
    # Through the server: the served run's final sample, then the eval's 4 questions, each
    # one greedy sample of at most 8 tokens (the eval spec's).
    asked = [c["sampling_params"] for c in server.recorded() if c["call"] == "sample"]
    assert [p["max_tokens"] for p in asked] == [FinalSample().max_tokens, 8, 8, 8, 8]


def test_a_served_run_replays_from_its_cassette_without_the_server(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cassette notes that cookbook-serve answered, so the replay (no server, no key)
    takes the same local profile and reproduces the run's files."""
    from test_recipe_cli import TINY

    from cookbook.cli import main as run_main

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY + "  overlay: {max_steps: 3, learning_rate: 1.0e-2}\n", "utf-8")
    tape = tmp_path / "tape.jsonl"
    monkeypatch.setenv("TINKER_BASE_URL", server.url)
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    served = [str(spec), "--set=backend=tinker", f"--log-dir={tmp_path / 'served'}"]
    assert run_main([*served, f"--set=tinker.record={tape}"]) == 0
    monkeypatch.delenv("TINKER_API_KEY")
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:9")  # nothing answers there
    replayed = [str(spec), "--set=backend=tinker", f"--log-dir={tmp_path / 'replayed'}"]
    assert run_main([*replayed, f"--set=tinker.replay={tape}"]) == 0
    for name in ("metrics.jsonl", "checkpoints.jsonl", "samples.jsonl"):
        original = (tmp_path / "served" / name).read_text()
        assert original and (tmp_path / "replayed" / name).read_text() == original, name


def test_checkpoints_outlive_the_server_that_saved_them(tmp_path: Path) -> None:
    """A restarted server (same state dir) resumes and samples what its predecessor saved,
    even when that one was killed in the middle of writing its path index."""
    prompt = types.ModelInput.from_ints(list(range(1000, 1012)))
    with serve(_config(tmp_path)) as first, _sdk(first) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        tc.forward_backward(BATCHES[0], "cross_entropy").result()
        tc.optim_step(ADAM[0]).result()
        state = tc.save_state("mid").result().path
        weights = tc.save_weights_for_sampler("mid").result().path
        scores = sdk.create_sampling_client(model_path=weights).result()
        want = scores.compute_logprobs(prompt).result()
        tc.forward_backward(BATCHES[1], "cross_entropy").result()
        next_step = tc.optim_step(ADAM[1]).result().metrics
    index = tmp_path / "serve" / "paths.jsonl"
    index.write_text(index.read_text() + '{"tinker": "tinker://torn', "utf-8")
    with serve(_config(tmp_path)) as second, _sdk(second) as sdk:
        sampler = sdk.create_sampling_client(model_path=weights).result()
        assert sampler.compute_logprobs(prompt).result() == want
        run = _rest(sdk)
        assert run.get_training_run_by_tinker_path(state).result().lora_rank == 8
        resumed = sdk.create_training_client_from_state_with_optimizer(state).result()
        assert resumed.model_id != tc.model_id  # a new session on the new server
        resumed.forward_backward(BATCHES[1], "cross_entropy").result()
        assert resumed.optim_step(ADAM[1]).result().metrics == next_step
