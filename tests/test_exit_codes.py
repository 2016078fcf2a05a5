"""Exit codes as a user expects them: 1 for a run that started and failed (a service error
mid-run: one line with the cause, the run directory kept and `--resume` named, and resuming
works), 130 for Ctrl-C (one line naming the last checkpoint; resuming works), and evals on
``backend: tinker`` going through the retrying client. Bad input (exit 2) is covered by
tests/test_recipe_cli.py and the fuzz tests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest
import tinker
from test_recipe_cli import ROOT, TINY, run_cli
from test_tinker_backend import TRANSIENT, status_error

from cookbook.backends.fake import FakeServiceClient
from cookbook.backends.tinker import TinkerServiceClient, service

KEY = "tml-EXITCODESkey0123456789"


def _healthy(url: str, timeout: float) -> httpx.Response:
    return httpx.Response(200, json={"status": "ok"})


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, "utf-8")
    return path


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_service_error_mid_run_exits_1_in_one_line_and_the_run_resumes(
    tiny_spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setattr(service, "probe_service", _healthy)
    sdk: dict[str, FakeServiceClient] = {}

    def open_sdk(faults: dict, _url: str | None, _meta: dict) -> FakeServiceClient:
        sdk["client"] = FakeServiceClient(tmp_path / "sdk", faults=faults)
        return sdk["client"]

    tinker_backend = ("--set", "backend=tinker")
    monkeypatch.setattr(service, "open_sdk_client", partial(open_sdk, {}))
    whole = tmp_path / "whole"
    assert run_cli(tiny_spec, *tinker_backend, "--log-dir", whole) == 0
    calls = [c["call"] for c in sdk["client"].recorder.calls]
    seventh = [i for i, c in enumerate(calls) if c == "forward_backward"][6]  # step 6's
    refused = status_error(tinker.BadRequestError, 400, f"bad datum (key {KEY})")
    monkeypatch.setattr(service, "open_sdk_client", partial(open_sdk, {seventh: refused}))
    run = tmp_path / "run"
    capsys.readouterr()
    assert run_cli(tiny_spec, *tinker_backend, "--log-dir", run) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and KEY not in err, err
    assert err.startswith("error: tinker: forward_backward failed: BadRequestError: "), err
    assert err.endswith(
        f"(last checkpoint 000004 in {run}: rerun with --log-dir {run} --resume to continue "
        "at step 5)\n"
    ), err
    monkeypatch.setattr(service, "open_sdk_client", partial(open_sdk, {}))
    assert run_cli(tiny_spec, *tinker_backend, "--log-dir", run, "--resume") == 0
    assert _metrics(run) == _metrics(whole)


WAITER = """
import sys
from cookbook.supervised.train import SupervisedTrainer
from cookbook.cli import main

finish = SupervisedTrainer._finish

def finish_then_wait(self, flight):
    finish(self, flight)
    if flight.step == {wait_after}:
        print("waiting after step {wait_after}", flush=True)
        sys.stdin.readline()  # blocks until the test's SIGINT interrupts it

SupervisedTrainer._finish = finish_then_wait
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_exits_130_naming_the_last_checkpoint_and_the_run_resumes(
    tiny_spec: Path, tmp_path: Path
) -> None:
    """The child blocks right after logging step 6 and says so; SIGINT arrives while it waits,
    so the interrupt lands at a known point with no sleeps."""
    whole = tmp_path / "whole"
    assert run_cli(tiny_spec, "--log-dir", whole) == 0
    run = tmp_path / "run"
    script = WAITER.format(wait_after=6)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tiny_spec), "--log-dir", str(run)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("waiting after step 6"):
                break
        else:
            pytest.fail(f"the child ended before step 6: {child.stderr.read()[-2000:]}")
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.strip() == (
        f"interrupted: last checkpoint 000004 in {run}: rerun with --log-dir {run} --resume "
        "to continue at step 5"
    )
    assert [r["step"] for r in _metrics(run)] == list(range(7))
    assert run_cli(tiny_spec, "--log-dir", run, "--resume") == 0
    assert _metrics(run) == _metrics(whole)


def test_tinker_evals_go_through_the_retrying_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate-limited first call is retried after a backoff (no real sleep), not fatal."""
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setattr(service, "probe_service", _healthy)
    fake = FakeServiceClient(tmp_path / "sdk", faults={0: TRANSIENT["rate_limit"]()})
    monkeypatch.setattr(service, "open_sdk_client", lambda _url, _meta: fake)
    sleeps: list[float] = []
    monkeypatch.setattr(
        service, "TinkerServiceClient", partial(TinkerServiceClient, sleep=sleeps.append)
    )
    spec = ROOT / "specs" / "evals" / "arithmetic.yaml"
    out = tmp_path / "eval"
    assert run_cli(spec, "--set", "backend=tinker", "--log-dir", out) == 0
    created = [c for c in fake.recorder.calls if c["call"] == "create_sampling_client"]
    assert len(created) == 2 and "fault" in created[0] and "fault" not in created[1]
    assert len(sleeps) == 1 and sleeps[0] > 0
    assert json.loads((out / "results.json").read_text())["num_examples"] == 40
