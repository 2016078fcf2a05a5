"""Fuzzing the conformance runner with adapters that answer garbage: lines that are not JSON,
objects of the wrong shape, bytes that are not UTF-8, huge lines, crashes, silence. Whatever a
port's adapter does, `cookbook-run --conformance` ends cleanly: exit 1 with the failures as
per-item results (or exit 2 in one line when the adapter never says hello or keeps dying),
reports written, never a traceback. `nox -s fuzz` runs it with many more examples.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cookbook.cli import main

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = ["llama3/single_turn.json", "llama3/thinking_part_rejected.json"]
TIMEOUT_S = 1.0
"""A silent adapter costs this much per request it ignores: kept small, and silence is rare."""

# Plays a plan: one behaviour per request, in order, for each process started (restarts too).
ADAPTER = r"""
import json, sys, threading
plan = json.load(open(sys.argv[1]))
out = sys.stdout.buffer
for number, line in enumerate(sys.stdin.buffer):
    request = json.loads(line)
    answers = plan["answers"]
    act = plan["hello"] if request["op"] == "hello" else answers[number % len(answers)]
    kind = act["kind"]
    if kind == "json":
        value = act["value"]
        if act["keep_id"] and isinstance(value, dict):
            value = {**value, "id": request["id"]}
        out.write(json.dumps(value).encode() + b"\n")
    elif kind == "raw":
        out.write(bytes.fromhex(act["hex"]) + b"\n")
    elif kind == "huge":
        out.write(b"x" * act["size"] + (b"\n" if act["newline"] else b""))
    elif kind == "exit":
        sys.stderr.write("adapter: giving up\n")
        sys.exit(act["code"])
    elif kind == "hang":
        out.flush()
        threading.Event().wait()
    out.flush()
"""

HELLO = {"kind": "json", "value": {"protocol": 1, "renderers": ["llama3"]}, "keep_id": True}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
token_lists = st.lists(
    st.integers(0, 128255) | st.integers(-(2**70), 2**70) | json_values, max_size=12
)
answer_fields = st.fixed_dictionaries(
    {},
    optional={
        "tokens": token_lists,
        "weights": st.lists(st.floats() | json_values, max_size=12) | json_values,
        "text": json_values,
        "segments": json_values,
        "weights_dtype": json_values,
        "error": json_values,
        "message": json_values,
        "termination": json_values,
        "stop_sequences": json_values,
    },
)
answers = st.one_of(
    st.builds(
        lambda value, keep: {"kind": "json", "value": value, "keep_id": keep},
        answer_fields | json_values,
        st.booleans(),
    ),
    st.builds(lambda data: {"kind": "raw", "hex": data.hex()}, st.binary(max_size=40)),
    st.builds(
        lambda size, newline: {"kind": "huge", "size": size, "newline": newline},
        st.sampled_from([70_000, 2_000_000]),
        st.booleans(),
    ),
    st.builds(lambda code: {"kind": "exit", "code": code}, st.integers(0, 3)),
    st.just({"kind": "hang"}),
)
plans = st.fixed_dictionaries(
    {
        "hello": st.just(HELLO) | answers,
        "answers": st.lists(answers, min_size=1, max_size=6),
    }
)


@pytest.fixture(scope="module")
def goldens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("goldens")
    for name in GOLDENS:
        (root / "renderers" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "golden" / "renderers" / name, root / "renderers" / name)
    return root


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("adapter") / "garbage_adapter.py"
    path.write_text(ADAPTER, "utf-8")
    return path


def _answer(value: object) -> dict:
    return {"kind": "json", "value": value, "keep_id": True}


@given(plan=plans)
@example(plan={"hello": HELLO, "answers": [_answer({"tokens": [2**70, -1]})]})
@example(plan={"hello": HELLO, "answers": [_answer({"tokens": [1, 2], "weights": ["x", None]})]})
@example(plan={"hello": HELLO, "answers": [_answer({"error": {"type": 1, "bases": 5}})]})
@example(plan={"hello": HELLO, "answers": [{"kind": "raw", "hex": "ff fe 7b 0a".replace(" ", "")}]})
@example(plan={"hello": HELLO, "answers": [_answer({"tokens": [1], "weights": [1], "text": 5})]})
@example(plan={"hello": HELLO, "answers": [_answer({"message": [], "termination": {}})]})
@settings(
    max_examples=max(4, settings.default.max_examples // 10),  # each starts adapter processes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_a_garbage_adapter_fails_cleanly_per_item(
    plan: dict, goldens: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("run")
    (work / "plan.json").write_text(json.dumps(plan), "utf-8")
    command = f"{sys.executable} {adapter} {work / 'plan.json'}"
    args = ["--conformance", command, "--golden-dir", str(goldens)]
    args += ["--report-dir", str(work / "reports"), "--timeout", str(TIMEOUT_S)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    if rc == 2:  # no usable hello, or the adapter kept dying: one line, no report
        assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
        assert not (work / "reports").exists()
    else:
        assert rc == 1, out.getvalue()[-3000:]  # garbage never conforms
        assert "does not conform" in out.getvalue()
        assert (work / "reports" / "conformance.md").is_file()
