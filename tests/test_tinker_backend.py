"""The tinker backend offline: pipelining, retries that never apply a step twice, resume,
one-line key-free errors, the bounded connectivity check.

The SDK is played by the fake backend (cookbook/backends/fake.py): the SDK's client surface,
real ``tinker.types`` results, and faults where a service fails - at submit (``faults``: the
call never ran) and at result time (``result_faults``: the call ran, its update is applied,
but its future raises first; TimeoutErrors there are slow futures). The exceptions are the
SDK's own classes, built the way its HTTP layer builds them. Expected calls, metrics and
checkpoints are the reference's (golden/recipes), so "nothing lost, nothing applied twice"
is checked against what the reference did, not against another run of ours.
"""

from __future__ import annotations

import inspect
import json
import socket
import time
from concurrent.futures import Future
from functools import partial
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import tinker
from test_recipe_cli import TINY
from test_recipe_parity import ROOT, _data, _tokenizer, spec_for
from tinker import types
from tinker.lib.public_interfaces.api_future import AwaitableConcurrentFuture
from tinker.lib.retryable_exception import RetryableException

from cookbook.backends.fake import FakeFuture, FakeServiceClient
from cookbook.backends.tinker import RetryPolicy, TinkerServiceClient, clients, service
from cookbook.cli import main
from cookbook.exceptions import BackendError
from cookbook.parity import recipe as r
from cookbook.specs.recipe import CheckpointSemantics
from cookbook.supervised.checkpoints import last_checkpoint, read_checkpoints
from cookbook.supervised.train import ResumePoint, SupervisedTrainer

GOLDEN = r.load_recipe_golden(ROOT / "golden" / "recipes" / "no_robots_len256.json")
N_CALLS = len(GOLDEN["layers"]["run"]["calls"])
KEY = "tml-SECRETkey0123456789abcdefXYZ"
REQUEST = httpx.Request("POST", "https://tinker.invalid/api/v1/forward_backward")
POLICY = RetryPolicy(max_attempts=4)  # base 1 s, jitter 0.25, seed 0


def _healthy(url: str, timeout: float) -> httpx.Response:
    """A Tinker service that answers its health check (and is not cookbook-serve)."""
    return httpx.Response(200, json={"status": "ok"})


def status_error(cls: type, status: int, detail: str = "busy", **headers: str) -> Exception:
    """As tinker._base_client._make_status_error_from_response builds it from a response."""
    body = {"detail": detail}
    response = httpx.Response(status, request=REQUEST, json=body, headers=headers)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


TRANSIENT = {
    "rate_limit": lambda: status_error(tinker.RateLimitError, 429),
    "server_error": lambda: status_error(tinker.InternalServerError, 503),
    "timeout": lambda: tinker.APITimeoutError(request=REQUEST),
    "dropped_connection": lambda: tinker.APIConnectionError(request=REQUEST),
}


def applied(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls that ran: a call fault is recorded but never ran (the crash fault stays)."""
    return [c for c in calls if "fault" not in c or "injected fault" in c["fault"]]


def run_wrapped(
    tmp: Path,
    *,
    faults: dict | None = None,
    result_faults: dict | None = None,
    resume: bool = False,
    semantics: CheckpointSemantics = CheckpointSemantics.REFERENCE,
) -> dict[str, Any]:
    """Our loop through the wrapper over the fake SDK; what this run recorded and appended."""
    spec = spec_for(GOLDEN, semantics)
    log, state = tmp / "log", tmp / "state"
    log.mkdir(parents=True, exist_ok=True)
    metrics_before = len(r.read_jsonl(log / "metrics.jsonl"))
    checkpoints_before = len(read_checkpoints(log))
    fake = FakeServiceClient(state, faults=faults, result_faults=result_faults)
    sleeps: list[float] = []
    client = TinkerServiceClient(fake, policy=POLICY, sleep=sleeps.append)
    data = _data(spec)
    trainer = SupervisedTrainer(
        spec, spec.renderer_name, client, data.train, data.test, _tokenizer(spec), log
    )
    record = last_checkpoint(log) if resume else None
    keys = ("epoch", "batch", "elapsed_tokens", "state_path")
    point = ResumePoint(*(record[k] for k in keys)) if record else None
    error = None
    try:
        trainer.run(point)
    except BackendError as exc:
        error = str(exc)
    return {
        "calls": applied(fake.recorder.calls),
        "metrics": r.read_jsonl(log / "metrics.jsonl")[metrics_before:],
        "checkpoints": read_checkpoints(log)[checkpoints_before:],
        "events": fake.recorder.events,
        "sleeps": sleeps,
        "error": error,
        "final": json.loads((state / "run-0001" / "weights" / "final.json").read_text())
        if (state / "run-0001" / "weights" / "final.json").exists()
        else None,
    }


def test_fault_free_run_matches_the_reference_and_keeps_its_pipelining(tmp_path: Path) -> None:
    run = run_wrapped(tmp_path / "wrapped")
    assert r.compare_layer(GOLDEN, "run", run) is None, r.compare_layer(GOLDEN, "run", run)
    assert run["sleeps"] == [] and run["error"] is None
    # The wrapper adds no wait: the loop asks for each result at exactly the point it does on
    # the bare SDK-shaped fake, so submit-ahead keeps the same requests in flight.
    spec = spec_for(GOLDEN, CheckpointSemantics.REFERENCE)
    bare = FakeServiceClient(tmp_path / "bare_state")
    data = _data(spec)
    (tmp_path / "bare").mkdir()
    SupervisedTrainer(
        spec, spec.renderer_name, bare, data.train, data.test, _tokenizer(spec), tmp_path / "bare"
    ).run()
    assert run["events"] == bare.recorder.events
    # submit_ahead=1: step s+1's forward_backward is submitted before step s's result is read.
    fb = [i for i, c in enumerate(run["calls"]) if c["call"] == "forward_backward"]
    order = {event: n for n, event in enumerate(run["events"])}
    assert all(order[("call", b)] < order[("result", a)] for a, b in pairwise(fb))


def _expected_state() -> dict[str, float]:
    """Independent of our runs: every step of the golden's LR schedule applied exactly once."""
    rows = GOLDEN["layers"]["lr_schedule"]
    return {"applied_lr_sum": sum(row["learning_rate"] for row in rows), "optim_steps": len(rows)}


def _check_survived(run: dict[str, Any]) -> None:
    assert run["error"] is None, run["error"]
    found = r.compare_layer(GOLDEN, "run", run)
    assert found is None, found
    assert run["final"]["optim_steps"] == _expected_state()["optim_steps"]
    assert run["final"]["applied_lr_sum"] == pytest.approx(_expected_state()["applied_lr_sum"])


@pytest.mark.parametrize("kind", sorted(TRANSIENT))
def test_every_call_failing_once_at_submit_is_resent_and_nothing_is_lost(
    kind: str, tmp_path: Path
) -> None:
    # Logical call k fails first (recorder index 2k, never ran) and is accepted on retry (2k+1).
    run = run_wrapped(tmp_path, faults={2 * k: TRANSIENT[kind]() for k in range(N_CALLS)})
    _check_survived(run)
    # One backoff per fault: first-retry delays, 1 s with +-25 % seeded jitter.
    assert len(run["sleeps"]) == N_CALLS and all(0.75 <= d <= 1.25 for d in run["sleeps"])


@pytest.mark.parametrize("kind", sorted(TRANSIENT))
def test_every_result_failing_twice_is_waited_for_again_never_resent(
    kind: str, tmp_path: Path
) -> None:
    faults = {k: [TRANSIENT[kind](), TRANSIENT[kind]()] for k in range(N_CALLS)}
    run = run_wrapped(tmp_path, result_faults=faults)
    # Resending any of them would show up as an extra call (and an extra optim step).
    _check_survived(run)
    first, second = run["sleeps"][0::2], run["sleeps"][1::2]
    assert len(first) == len(second) == N_CALLS
    assert all(0.75 <= d <= 1.25 for d in first) and all(1.5 <= d <= 2.5 for d in second)


def test_slow_futures_are_polled_again_without_sleeping(tmp_path: Path) -> None:
    run = run_wrapped(tmp_path, result_faults={k: [TimeoutError()] * 3 for k in range(N_CALLS)})
    _check_survived(run)
    assert run["sleeps"] == []  # a timed-out wait already waited


def test_resume_through_the_wrapper_matches_the_reference(tmp_path: Path) -> None:
    crashed = run_wrapped(tmp_path, faults=r.resume_faults(GOLDEN))
    assert crashed["error"] is not None and "injected fault" in crashed["error"]
    assert crashed["sleeps"] == []  # not retryable: failed at once
    # The resumed run also meets a slow or failing result on every call, and survives.
    flaky = {k: [TRANSIENT["server_error"](), TimeoutError()] for k in range(N_CALLS)}
    resumed = run_wrapped(tmp_path, resume=True, result_faults=flaky)
    assert resumed["error"] is None
    found = r.compare_layer(GOLDEN, "resume", {"runs": [crashed, resumed]})
    assert found is None, found


# -- rule 2 on settled futures, errors, backoff ---------------------------------------------


class Settled:
    """Wraps a fake client: the first call of ``method`` runs, then hands back the SDK's own
    future type already failed with ``error`` - what the SDK returns once it gave up."""

    def __init__(self, inner: Any, method: str, error: BaseException) -> None:
        self._inner, self._method, self._error = inner, method, error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def call(**kwargs: Any) -> Any:
            future = attr(**kwargs)  # accepted, and applied
            if self._error is None:
                return future
            failed: Future = Future()
            failed.set_exception(self._error)
            self._error = None
            return AwaitableConcurrentFuture(failed)

        return call


DATUM = types.Datum(
    model_input=types.ModelInput.from_ints([5, 2, 3]),
    loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [0.0, 1.0, 1.0]},
)


def _serving(**clients: Any) -> SimpleNamespace:
    """An SDK-shaped service client whose factory methods hand out the given raw clients."""
    return SimpleNamespace(
        **{name: partial(lambda raw, **_kw: FakeFuture(raw), raw) for name, raw in clients.items()}
    )


@pytest.mark.parametrize(
    "error",
    [status_error(tinker.InternalServerError, 502), RetryableException("Promise expired")],
    ids=["server_error", "promise_expired"],
)
def test_a_settled_failure_of_an_accepted_optim_step_is_never_resent(
    error: BaseException, tmp_path: Path
) -> None:
    fake = FakeServiceClient(tmp_path)
    raw = fake.create_lora_training_client("m/m", rank=4).result()
    sdk = _serving(create_lora_training_client=Settled(raw, "optim_step", error))
    sleeps: list[float] = []
    client = TinkerServiceClient(sdk, policy=POLICY, sleep=sleeps.append)
    training = client.create_lora_training_client("m/m").result()
    with pytest.raises(BackendError) as info:
        training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    message = str(info.value)
    assert "\n" not in message and "optim_step was submitted" in message
    assert "not sent again" in message and "--resume" in message
    assert [c["call"] for c in fake.recorder.calls].count("optim_step") == 1
    assert raw.applied_lr_sum == 1e-3 and sleeps == []


def test_a_settled_failure_of_a_read_only_request_is_resent(tmp_path: Path) -> None:
    fake = FakeServiceClient(tmp_path)
    raw = fake.create_lora_training_client("m/m", rank=4).result()
    sampler = raw.save_weights_and_get_sampling_client().result()
    failing = status_error(tinker.InternalServerError, 500)
    sdk = _serving(create_sampling_client=Settled(sampler, "sample", failing))
    sleeps: list[float] = []
    client = TinkerServiceClient(sdk, policy=POLICY, sleep=sleeps.append)
    wrapped = client.create_sampling_client(model_path="fake://x").result()
    params = types.SamplingParams(max_tokens=3, seed=1)
    response = wrapped.sample(DATUM.model_input, 1, params).result()
    assert [c["call"] for c in fake.recorder.calls].count("sample") == 2  # sent again
    assert len(sleeps) == 1
    expected = sampler.sample(DATUM.model_input, 1, params).result()
    assert response.sequences[0].tokens == expected.sequences[0].tokens


@pytest.mark.parametrize("at", ["submit", "result"])
@pytest.mark.parametrize(
    "error",
    [
        status_error(tinker.AuthenticationError, 401, f"invalid api key {KEY}"),
        status_error(tinker.BadRequestError, 400, f"bad datum (key {KEY})"),
    ],
    ids=["auth", "bad_request"],
)
def test_a_non_retryable_error_fails_at_once_in_one_line_without_the_key(
    at: str, error: Exception, tmp_path: Path
) -> None:
    faults = {"faults": {1: error}} if at == "submit" else {"result_faults": {1: [error]}}
    fake = FakeServiceClient(tmp_path, **faults)
    sleeps: list[float] = []
    client = TinkerServiceClient(fake, policy=POLICY, sleep=sleeps.append, secrets=[KEY])
    training = client.create_lora_training_client("m/m", rank=4).result()
    with pytest.raises(BackendError) as info:
        training.forward_backward([DATUM], "cross_entropy").result()
    message = str(info.value)
    assert message.startswith("tinker: forward_backward failed: ") and "\n" not in message
    assert KEY not in message and "<redacted>" in message
    assert ("check TINKER_API_KEY" in message) == (error.status_code == 401)
    assert sleeps == [] and len(fake.recorder.calls) == 2  # one try, never sent again


def _rate_limited_optim_step(state_dir: Path) -> tuple[list[float], str, list[dict]]:
    fake = FakeServiceClient(state_dir, faults={i: TRANSIENT["rate_limit"]() for i in range(1, 9)})
    sleeps: list[float] = []
    client = TinkerServiceClient(fake, policy=POLICY, sleep=sleeps.append)
    training = client.create_lora_training_client("m/m", rank=4).result()
    with pytest.raises(BackendError) as info:
        training.optim_step(types.AdamParams(learning_rate=1e-3))
    return sleeps, str(info.value), fake.recorder.calls


def test_submit_retries_back_off_exponentially_then_give_up(tmp_path: Path) -> None:
    sleeps, message, calls = _rate_limited_optim_step(tmp_path / "a")
    assert "optim_step could not be submitted after 4 tries" in message
    assert "nothing was applied" in message
    assert all("fault" in c for c in calls if c["call"] == "optim_step")
    # 1, 2, 4 s, each within +-25 %; the jitter is seeded, so a rerun sleeps the same.
    assert len(sleeps) == 3
    assert all(0.75 * 2**i <= d <= 1.25 * 2**i for i, d in enumerate(sleeps))
    assert len(set(sleeps)) == 3 and _rate_limited_optim_step(tmp_path / "b")[0] == sleeps


def test_rate_limit_retry_after_and_the_elapsed_budget_are_honoured(tmp_path: Path) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RetryPolicy(max_attempts=100, jitter=0.0, max_elapsed_s=20.0)
    limited = status_error(tinker.RateLimitError, 429, **{"retry-after": "7"})
    fake = FakeServiceClient(tmp_path / "a", faults={1: limited})
    client = TinkerServiceClient(fake, policy=policy, sleep=sleep, clock=lambda: now[0])
    training = client.create_lora_training_client("m/m", rank=4).result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    assert now[0] == 7.0  # Retry-After beats the 1 s first delay
    # Waiting: 1 + 2 + 4 + 8 = 15 s slept; the next 16 s would pass the 20 s budget.
    now[0] = 0.0
    waits = {0: [TRANSIENT["server_error"]() for _ in range(50)]}
    slow = FakeServiceClient(tmp_path / "b", result_faults=waits)
    client = TinkerServiceClient(slow, policy=policy, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(BackendError, match="no result came after 5 tries"):
        client.create_lora_training_client("m/m", rank=4).result()
    assert now[0] == 15.0


def test_retry_warnings_in_the_log_never_show_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leaky = status_error(tinker.InternalServerError, 500, f"upstream saw X-API-Key: {KEY}")
    fake = FakeServiceClient(tmp_path, faults={0: leaky})
    client = TinkerServiceClient(fake, sleep=lambda _s: None, secrets=[KEY])
    with caplog.at_level("WARNING"):
        client.create_lora_training_client("m/m", rank=4).result()
    assert "retrying" in caplog.text and "<redacted>" in caplog.text and KEY not in caplog.text


# -- the CLI: key, reachability ------------------------------------------------------------


def _cli(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY, "utf-8")
    run = tmp_path / "run"
    return main([str(spec), "--set", "backend=tinker", "--log-dir", str(run), *extra]), run


def test_a_key_but_no_service_fails_within_the_bound_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        rc, run = _cli(
            tmp_path, "--set", f"base_url={url}", "--set", "tinker.connect_timeout_s=0.3"
        )
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot reach the Tinker service at {url} within 0.3s" in err
    assert "backend=local" in err and KEY not in err
    assert elapsed < 5, elapsed  # the SDK alone would retry for minutes
    assert not run.exists(), "nothing is written before the backend is known to work"


def test_the_key_never_reaches_the_run_directory_logs_or_cassette(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    leaky = partial(status_error, tinker.InternalServerError, 503, f"echo {KEY}")
    faults = {i: leaky() for i in (0, 4, 9)}

    def sdk(base_url: str | None, user_metadata: dict[str, str]) -> FakeServiceClient:
        return FakeServiceClient(tmp_path / "fake", faults=faults, result_faults={12: [leaky()]})

    monkeypatch.setattr(service, "open_sdk_client", sdk)
    monkeypatch.setattr(service, "probe_service", _healthy)
    sleeps: list[float] = []
    monkeypatch.setattr(
        service, "TinkerServiceClient", partial(TinkerServiceClient, sleep=sleeps.append)
    )
    cassette = tmp_path / "tape.jsonl"
    with caplog.at_level("INFO"):
        rc, run = _cli(tmp_path, "--set", "max_steps=5", "--set", f"tinker.record={cassette}")
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert len(sleeps) == 4 and "<redacted>" in caplog.text
    texts = [out.out, out.err, caplog.text, cassette.read_text("utf-8")]
    texts += [p.read_text("utf-8", errors="replace") for p in run.rglob("*") if p.is_file()]
    assert all(KEY not in text for text in texts)
    assert json.loads((run / "config.json").read_text())["spec"]["backend"] == "tinker"


def test_every_call_the_wrapper_makes_binds_to_the_real_sdk_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake accepts more than the SDK might: check the keywords against tinker 0.38."""
    made: list[tuple[str, str, dict[str, Any]]] = []
    request = clients._Session.request

    def spy(self, target, on, method, kwargs, **options):
        made.append((on, method, kwargs))
        return request(self, target, on, method, kwargs, **options)

    monkeypatch.setattr(clients._Session, "request", spy)
    client = TinkerServiceClient(FakeServiceClient(tmp_path))
    training = client.create_lora_training_client("m/m", rank=4, user_metadata={"a": "b"}).result()
    training.forward([DATUM], "cross_entropy").result()
    training.forward_backward([DATUM], "cross_entropy", loss_fn_config={"x": 1.0}).result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    training.optim_step(adam_params=types.AdamParams(learning_rate=1e-3)).result()
    state = training.save_state("s", ttl_seconds=3600).result().path
    sampler_path = training.save_weights_for_sampler("s").result().path
    sampler = training.save_weights_and_get_sampling_client().result()
    sampler.compute_logprobs(DATUM.model_input).result()
    sampler.sample(DATUM.model_input, 1, types.SamplingParams(max_tokens=2)).result()
    training.create_sampling_client(sampler_path).result()
    client.create_sampling_client(model_path=sampler_path).result()
    client.create_training_client_from_state(state, user_metadata={"a": "b"}).result()
    client.create_training_client_from_state_with_optimizer(state).result()
    client.create_rest_client().get_training_run_by_tinker_path(state).result()
    sdk = {
        "service": tinker.ServiceClient,
        "training": tinker.TrainingClient,
        "sampling": tinker.SamplingClient,
        "rest": tinker.RestClient,
    }
    for on, method, kwargs in made:
        inspect.signature(getattr(sdk[on], method)).bind(None, **kwargs)  # raises if not
    assert len({(on, method) for on, method, _ in made}) == 14
