"""Record/replay of the tinker backend: a recorded run replays exactly with no service and no
key, a cassette of another spec is refused before the run, an older cassette (no spec digest)
fails on its first divergent call, cassettes are exact and key-free.

Recording runs the real CLI path (``--set backend=tinker``) with the SDK played by the fake
backend; replay then runs the same CLI with the SDK and the network made unusable.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_recipe_cli import TINY
from test_recipe_parity import ROOT, _data, _tokenizer, spec_for
from tinker import types

from cookbook.backends.fake import FakeServiceClient
from cookbook.backends.tinker import Cassette, CassetteWriter, TinkerServiceClient, service
from cookbook.backends.tinker.codec import decode_result, encode_result
from cookbook.cli import main
from cookbook.exceptions import BackendError, ConfigurationError
from cookbook.parity import recipe as r
from cookbook.specs.recipe import CheckpointSemantics
from cookbook.supervised.train import SupervisedTrainer

KEY = "tml-CASSETTEkey0123456789abcdef"
RUN_FILES = ("metrics.jsonl", "checkpoints.jsonl", "samples.jsonl")


def _healthy(url: str, timeout: float) -> httpx.Response:
    """A Tinker service that answers its health check (and is not cookbook-serve)."""
    return httpx.Response(200, json={"status": "ok"})


def _no_service(*_args, **_kwargs):
    raise AssertionError("replay must not touch the service")


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, "utf-8")
    return path


@pytest.fixture
def recorded(spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cassette of a 6-step tinker run (evals, two checkpoints, final sample)."""
    return _record(spec_file, tmp_path, monkeypatch)


def _record(spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setattr(service, "probe_service", _healthy)
    monkeypatch.setattr(
        service, "open_sdk_client", lambda url, meta: FakeServiceClient(tmp_path / "sdk_state")
    )
    cassette = tmp_path / "tape.jsonl"
    args = ["--set", "backend=tinker", "--set", "max_steps=6", "--set", f"tinker.record={cassette}"]
    assert main([str(spec_file), *args, "--log-dir", str(tmp_path / "recorded")]) == 0
    monkeypatch.delenv("TINKER_API_KEY")
    monkeypatch.setattr(service, "probe_service", _no_service)
    monkeypatch.setattr(service, "open_sdk_client", _no_service)
    return cassette


def _replay(spec_file: Path, cassette: Path, log_dir: Path, *extra: str) -> int:
    args = ["--set", "backend=tinker", "--set", "max_steps=6", "--set", f"tinker.replay={cassette}"]
    return main([str(spec_file), *args, "--log-dir", str(log_dir), *extra])


def test_a_replayed_run_reproduces_the_recording_with_no_service_and_no_key(
    spec_file: Path, recorded: Path, tmp_path: Path
) -> None:
    assert _replay(spec_file, recorded, tmp_path / "replayed") == 0
    for name in RUN_FILES:
        original = (tmp_path / "recorded" / name).read_bytes()
        assert original and (tmp_path / "replayed" / name).read_bytes() == original, name
    # ...and the recording is the run the plain fake backend gives: the wrapper is transparent.
    args = ["--set", "max_steps=6", "--log-dir", str(tmp_path / "plain")]
    assert main([str(spec_file), *args]) == 0
    for name in RUN_FILES:
        assert (tmp_path / "recorded" / name).read_bytes() == (
            tmp_path / "plain" / name
        ).read_bytes()


def _older(cassette: Path) -> Path:
    """The same recording as a cassette written before headers kept the spec and its digest."""
    header, *events = cassette.read_text("utf-8").splitlines()
    fields = json.loads(header)
    assert fields.pop("spec") and fields.pop("spec_digest")
    older = cassette.with_name("older.jsonl")
    older.write_text("\n".join([json.dumps(fields), *events]) + "\n", "utf-8")
    return older


def test_a_cassette_from_another_spec_fails_before_the_run_naming_both(
    spec_file: Path, recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    header = Cassette(recorded).header
    assert header["spec"]["learning_rate"] == 2e-4 and len(header["spec_digest"]) == 64
    assert "tinker" not in header["spec"] and "log_path" not in header["spec"]
    capsys.readouterr()
    rc = _replay(spec_file, recorded, tmp_path / "changed", "--set", "learning_rate=3e-4")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    # tinker.replay comes from --set: the line is the nearest one of the file (the loader's rule)
    head = rf"error: {re.escape(str(spec_file))}:\d+: tinker.replay: {re.escape(str(recorded))} "
    assert re.match(head + "was recorded from another spec", err), err
    assert "another spec (learning_rate: expected 0.0002, got 0.0003; spec digest " in err
    assert not (tmp_path / "changed").exists()


def test_an_older_cassette_replays_with_a_warning_and_fails_on_its_first_divergent_call(
    spec_file: Path,
    recorded: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    older = _older(recorded)
    assert _replay(spec_file, older, tmp_path / "same") == 0
    assert "recorded without a spec digest" in caplog.text
    calls = [call for _on, call in Cassette(older).calls]
    first_step = next(i for i, c in enumerate(calls) if c["call"] == "optim_step")
    capsys.readouterr()
    rc = _replay(spec_file, older, tmp_path / "changed", "--set", "learning_rate=3e-4")
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"call {first_step} (optim_step) differs from the recording" in err
    assert "adam.learning_rate: expected 0.0002, got 0.0003" in err


def test_a_run_that_goes_past_the_recording_says_so(
    spec_file: Path, recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    header, *events = recorded.read_text().splitlines()
    half = len(Cassette(recorded).calls) // 2
    kept = [line for line in events if json.loads(line)["i"] < half]
    short = tmp_path / "short.jsonl"
    # ...as a recording killed mid-write leaves it: a torn last line.
    short.write_text("\n".join([header, *kept]) + '\n{"i": 9, "res', "utf-8")
    capsys.readouterr()
    assert _replay(spec_file, short, tmp_path / "short") == 1  # the replay failed mid-run
    err = capsys.readouterr().err
    assert f"call {half} (" in err and f"the recording ends after {half} calls" in err, err


def test_a_cassette_is_key_free_and_lists_the_calls_in_submission_order(recorded: Path) -> None:
    text = recorded.read_text()
    assert KEY not in text and "tml-" not in text
    cassette = Cassette(recorded)
    assert [on for on, _ in cassette.calls][:2] == ["service", "training"]
    assert set(cassette.results) == set(range(len(cassette.calls)))


def test_the_cassette_of_a_reference_recipe_lists_the_reference_calls(tmp_path: Path) -> None:
    golden = r.load_recipe_golden(ROOT / "golden" / "recipes" / "no_robots_len48.json")
    spec = spec_for(golden, CheckpointSemantics.REFERENCE)
    tape = CassetteWriter(tmp_path / "tape.jsonl")
    client = TinkerServiceClient(FakeServiceClient(tmp_path / "state"), tape=tape)
    data = _data(spec)
    (tmp_path / "log").mkdir()
    trainer = SupervisedTrainer(
        spec, spec.renderer_name, client, data.train, data.test, _tokenizer(spec), tmp_path / "log"
    )
    trainer.run()
    tape.close()
    calls = [call for _on, call in Cassette(tmp_path / "tape.jsonl").calls]
    assert calls == golden["layers"]["run"]["calls"]


def test_a_recorded_run_ends_its_recording(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tapes: list[CassetteWriter] = []

    class Kept(CassetteWriter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tapes.append(self)

    monkeypatch.setattr(service, "CassetteWriter", Kept)
    recorded = _record(spec_file, tmp_path, monkeypatch)
    (tape,) = tapes
    with pytest.raises(BackendError, match=r"call \d+ \(\w+\) made after the recording ended"):
        tape.call("service", "create_sampling_client", {"base_model": "m"})
    assert Cassette(recorded).calls  # ...and what it recorded is all there


def test_after_the_recording_ends_calls_are_refused_and_late_results_never_truncate_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tape.jsonl"
    tape = CassetteWriter(path)
    sdk = FakeServiceClient(tmp_path / "state")
    client = TinkerServiceClient(sdk, tape=tape)
    with client.closing():
        first = client.create_sampling_client(base_model="m")
        first.result()
        late = client.create_sampling_client(base_model="m")  # pipelined, waited on too late
    sent = len(sdk.recorder)
    with pytest.raises(BackendError, match=r"call 2 \(create_sampling_client\) made after the"):
        client.create_sampling_client(base_model="m")
    assert len(sdk.recorder) == sent == 2  # refused before it reached the service
    written = path.read_text("utf-8")
    late.result()
    tape.close()  # closing twice is harmless
    assert path.read_text("utf-8") == written
    assert tape.late_results == [1] and "call 1 (create_sampling_client) arrived after" in (
        caplog.text
    )
    cassette = Cassette(path)
    assert len(cassette.calls) == 2 and set(cassette.results) == {0}


def test_results_round_trip_exactly() -> None:
    logprobs = np.array([-1e-7, -3.3333333, -np.inf], dtype=np.float32)
    fb = types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[{"logprobs": types.TensorData.from_numpy(logprobs)}],
        metrics={"loss:sum": 1 / 3},
    )
    sample = types.SampleResponse(
        sequences=[
            types.SampledSequence(
                stop_reason="stop", sequence_id="s0", _tokens_list=[7, 8], _logprobs_list=[-0.5, -2]
            )
        ],
        _prompt_logprobs_list=[None, -1.25],
    )
    values = {
        "forward_backward": fb,
        "sample": sample,
        "optim_step": types.OptimStepResponse(metrics={"grad_norm:mean": 0.1}),
        "save_state": types.SaveWeightsResponse(path="tinker://run/weights/000002"),
        "compute_logprobs": [None, -0.1, -2.5],
    }
    for method, value in values.items():
        decoded = decode_result(json.loads(json.dumps(encode_result(method, value))))
        if method == "forward_backward":
            td = decoded.loss_fn_outputs[0]["logprobs"]
            assert td.dtype == "float32" and td.to_numpy().tobytes() == logprobs.tobytes()
            assert decoded.metrics == fb.metrics and math.isinf(td.data[-1])
        elif method == "sample":
            seq = decoded.sequences[0]
            assert (seq.tokens, seq.logprobs, seq.stop_reason) == ([7, 8], [-0.5, -2.0], "stop")
            assert decoded.prompt_logprobs == [None, -1.25]
        else:
            assert decoded == value


def test_a_corrupted_cassette_is_a_one_line_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "cookbook-tinker-cassette", "format": 1}\nnot json\n{"i": 0}\n')
    with pytest.raises(ConfigurationError, match=rf"^{path}:2: corrupted cassette line$"):
        Cassette(path)
    path.write_text('{"kind": "something else"}\n')
    with pytest.raises(ConfigurationError, match="1: not a format-1 tinker cassette"):
        Cassette(path)


def test_record_and_replay_together_are_rejected_by_the_spec(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    both = ["--set", "tinker.record=a.jsonl", "--set", "tinker.replay=b.jsonl"]
    assert main([str(spec_file), "--set", "backend=tinker", *both]) == 2
    err = capsys.readouterr().err
    assert "tinker" in err and "at most one of 'record' and 'replay'" in err


def test_a_run_that_stops_short_of_the_recording_says_so(
    spec_file: Path, recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A replay that leaves recorded calls unmade (here: the final sample) did less than the
    recorded run, so it is not a reproduction of it."""
    older = _older(recorded)  # another spec: a cassette with a digest stops it before the run
    calls = [call for _on, call in Cassette(older).calls]
    assert calls[-1]["call"] == "sample"
    capsys.readouterr()
    rc = _replay(spec_file, older, tmp_path / "fewer", "--set", "final_sample=null")
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"of the {len(calls)} recorded calls" in err and "was never made" in err, err


def test_the_tinker_backend_does_not_depend_on_parity() -> None:
    """Backends sit below parity (which compares their runs); the cassette's first-difference
    messages come from cookbook.json_diff, which both share."""
    code = (
        "import sys, cookbook.backends.tinker\n"
        "print(any(m.startswith('cookbook.parity') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
