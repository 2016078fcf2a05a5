"""Eval tasks from YAML: spec errors, metrics, and exact scores on the deterministic fake backend.

Expected scores are derived here from the fake model's documented behaviour
(cookbook/backends/fake.py), not read back from our output:

- ``compute_logprobs(tokens)[j] = -(1 + ((t_j * 31 + (j - 1) * 7) % 97) / 97) / (1 + 1000 * L)``
  for ``j >= 1``, where ``L`` is the sum of the learning rates trained into the weights (0 for
  the base model);
- ``sample`` cycles the prompt's tokens from an offset, stopping after a stop token id. The
  offset is, per fake.py, the first 8 hex digits of
  ``sha256(json.dumps([prompt_tokens, seed, sample_index]))`` modulo the prompt length.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_recipe_cli import TINY

from cookbook.cli import main
from cookbook.evals.metrics import bootstrap, extract, normalize, score_reply, wilson
from cookbook.evals.tasks import arithmetic_rows
from cookbook.exceptions import SpecError
from cookbook.specs import load_spec
from cookbook.specs.evals import ArithmeticSource, MetricKind, MetricSpec

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "specs" / "evals").glob("*.yaml"))
EVAL_HEAD = """\
kind: eval
version: 1
name: probe
model_name: meta-llama/Llama-3.1-8B
renderer_name: llama3
backend: fake
"""


def fake_logprob(token: int, position: int, lr_sum: float = 0.0) -> float:
    """The fake model's logprob of ``token`` predicted at input ``position``."""
    return -(1 + ((token * 31 + position * 7) % 97) / 97) / (1 + 1000 * lr_sum)


def fake_sample(prompt: list[int], seed: int, max_tokens: int, stop_ids: set[int]) -> list[int]:
    digest = hashlib.sha256(json.dumps([prompt, seed, 0]).encode("utf-8")).hexdigest()
    offset = int(digest[:8], 16) % len(prompt)
    out: list[int] = []
    for k in range(max_tokens):
        out.append(prompt[(offset + k) % len(prompt)])
        if out[-1] in stop_ids:
            break
    return out


def run_eval(spec: Path, log_dir: Path, *extra: str) -> dict:
    assert main([str(spec), "--log-dir", str(log_dir), "--set", "backend=fake", *extra]) == 0
    return json.loads((log_dir / "results.json").read_text())


def samples(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / "samples.jsonl").read_text().splitlines()]


# -- specs -----------------------------------------------------------------------------------


ARITHMETIC = "source:\n  kind: arithmetic\n"
BAD_SPECS = {
    # name: (body after EVAL_HEAD, line, field, part of the message)
    "count": (
        ARITHMETIC + "  count: 0\nmetric:\n  kind: exact\n",
        9,
        "source.count",
        "greater than 0",
    ),
    "unknown_source": ("source:\n  kind: csv\nmetric:\n  kind: exact\n", 7, "source", "one of"),
    "nll_needs_conversations": (ARITHMETIC + "metric:\n  kind: nll\n", 1, "", "conversations"),
    "regex_pattern": (ARITHMETIC + "metric:\n  kind: regex\n", 9, "metric", "'pattern'"),
    "bad_regex": (
        ARITHMETIC + "metric:\n  kind: regex\n  pattern: '(a'\n",
        9,
        "metric",
        "not a regular expression",
    ),
    "template": (
        ARITHMETIC + "metric:\n  kind: exact\ntemplate:\n  user: '{question'\n",
        12,
        "template.user",
        "str.format",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_eval_specs_are_one_line_with_their_location(tmp_path: Path, name: str) -> None:
    body, line, field, message = BAD_SPECS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(EVAL_HEAD + body, "utf-8")
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    error = raised.value
    assert (error.line, error.field) == (line, field) and message in error.message, str(error)


def test_a_missing_example_field_names_the_spec_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "probe.yaml"
    examples = "  examples:\n  - {question: a, answer: b}\n  - {question: c}\n"
    path.write_text(EVAL_HEAD + "source:\n  kind: inline\n" + examples + "metric:\n  kind: exact\n")
    assert main([str(path), "--log-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:11: source.examples.1.answer: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_jsonl_source_line_that_is_not_json_is_one_line(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"question": "a", "answer": "b"}\n\n{"question": "c",\n', "utf-8")
    path = tmp_path / "probe.yaml"
    source = f"source:\n  kind: jsonl\n  path: {data}\nmetric:\n  kind: exact\n"
    path.write_text(EVAL_HEAD + source, "utf-8")
    assert main([str(path), "--log-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {data}:3: json: column ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# -- metrics ---------------------------------------------------------------------------------


def test_normalisation_and_matching() -> None:
    assert normalize("  The  Answer:\tParis!! ") == "the answer: paris"
    assert normalize("\uff30\uff21\uff32\uff29\uff33.") == "paris"  # NFKC: full-width PARIS
    kinds = (MetricKind.EXACT, MetricKind.NORMALIZED, MetricKind.CONTAINS)
    metric = {kind: MetricSpec(kind=kind) for kind in kinds}
    assert score_reply(metric[MetricKind.EXACT], " 42\n", "42") == (1.0, None)
    assert score_reply(metric[MetricKind.EXACT], "42.", "42") == (0.0, None)
    assert score_reply(metric[MetricKind.NORMALIZED], "Paris.", "paris") == (1.0, None)
    assert score_reply(metric[MetricKind.CONTAINS], "It is PARIS, France", "Paris") == (1.0, None)
    regex = MetricSpec(kind=MetricKind.REGEX, pattern=r"answer is (-?\d+)")
    # The last match counts: a model states its final answer last.
    assert score_reply(regex, "answer is 3, no, the answer is 12", "12") == (1.0, "12")
    assert score_reply(regex, "no number here", "12") == (0.0, None)
    assert extract(r"\d+", "1 and 22") == "22"


def test_confidence_intervals() -> None:
    # Wilson at 0/10 (z = 1.959964): upper bound z^2 / (n + z^2) = 3.841459 / 13.841459.
    low, high = wilson(0, 10, 0.95)
    assert low == 0.0 and high == pytest.approx(3.841459 / 13.841459, rel=1e-6)
    low, high = wilson(5, 10, 0.95)
    assert low == pytest.approx(1 - high) and 0.18 < low < 0.25  # symmetric around 1/2
    values = np.array([0.0, 1.0] * 50)
    first = bootstrap(values, np.ones(100), 0.95, 500, seed=3)
    assert first == bootstrap(values, np.ones(100), 0.95, 500, seed=3), "seeded"
    assert first[0] < 0.5 < first[1] and first[1] - first[0] < 0.3


def test_requests_stay_concurrency_deep_in_flight_and_come_back_in_order() -> None:
    """What makes the tinker backend fast: futures are submitted ahead, collected in order."""
    from cookbook.evals.generate import in_flight

    outstanding, peak, done = [0], [0], []

    class Future:
        def __init__(self, value: int):
            self.value = value
            outstanding[0] += 1
            peak[0] = max(peak[0], outstanding[0])

        def result(self) -> int:
            outstanding[0] -= 1
            return self.value

    requests = [lambda i=i: Future(i * i) for i in range(10)]
    assert in_flight(requests, 4, done.append) == [i * i for i in range(10)]
    assert peak[0] == 4 and done == [1] * 10


def test_arithmetic_is_seeded_and_correct() -> None:
    source = ArithmeticSource(kind="arithmetic", count=30, min_operand=-5, max_operand=9)
    rows = arithmetic_rows(source, seed=7)
    assert rows == arithmetic_rows(source, seed=7) and rows != arithmetic_rows(source, seed=8)
    for row in rows:
        a, op, b = re.fullmatch(r"What is (-?\d+) ([-+*]) (-?\d+)\?", row["question"]).groups()
        assert -5 <= int(a) <= 9 and -5 <= int(b) <= 9
        x, y = int(a), int(b)
        assert int(row["answer"]) == {"+": x + y, "-": x - y, "*": x * y}[op]
    assert {row["op"] for row in rows} == {"+", "-", "*"}


# -- every shipped eval on the fake backend ---------------------------------------------------


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_eval_runs_on_the_fake_backend(spec: Path, tmp_path: Path) -> None:
    results = run_eval(spec, tmp_path / "out")
    records = samples(tmp_path / "out")
    assert results["task"] == spec.stem and results["num_examples"] == len(records) > 0
    assert all({"prompt", "reply", "score"} <= set(r) for r in records)
    low, high = results["ci"]["low"], results["ci"]["high"]
    assert low <= results["score"] <= high
    assert results["score"] == pytest.approx(
        sum(r["score"] * r.get("weight", 1) for r in records)
        / sum(r.get("weight", 1) for r in records)
    )


def test_multiple_choice_scores_on_the_fake_are_exact(tmp_path: Path, llama3_tokenizer) -> None:
    """Each choice's mean logprob over the reply tokens the renderer trains (content and
    <|eot_id|>), from the formula; the argmax must be the right choice."""
    from cookbook.renderers import get_renderer

    renderer = get_renderer("llama3", llama3_tokenizer)
    results = run_eval(ROOT / "specs/evals/multiple_choice.yaml", tmp_path / "mc")
    rows = [json.loads(x) for x in (ROOT / "specs/evals/data/general_knowledge_mc.jsonl").open()]
    correct = 0
    for row, record in zip(rows, samples(tmp_path / "mc"), strict=True):
        prompt = renderer.build_generation_prompt([{"role": "user", "content": row["question"]}])
        expected_scores = []
        for choice in row["choices"]:
            reply = [*llama3_tokenizer.encode(choice, add_special_tokens=False), 128009]
            tokens = prompt.to_ints() + reply
            first = len(prompt.to_ints())
            values = [fake_logprob(tokens[j], j - 1) for j in range(first, len(tokens))]
            expected_scores.append(sum(values) / len(values))
        assert record["choice_logprobs"] == pytest.approx(expected_scores, rel=1e-6)
        answer = row["answer"]
        answer = answer if isinstance(answer, int) else row["choices"].index(answer)
        picked = int(np.argmax(expected_scores))
        assert record["score"] == float(picked == answer)
        correct += picked == answer
    assert results["score"] == correct / len(rows) and 0 < correct < len(rows)


def test_held_out_nll_on_the_fake_is_exact(tmp_path: Path) -> None:
    """SamplerNLLEvaluator semantics: sum over datums of weighted per-token NLL over the total
    weight, each datum's weights summing to 1 (mean reduction)."""
    from cookbook.data.builders import ChatDatasetCommonConfig, ConversationFileBuilder
    from cookbook.data.sources import example_conversations_path

    results = run_eval(ROOT / "specs/evals/nll_held_out.yaml", tmp_path / "nll")
    common = ChatDatasetCommonConfig(
        model_name_for_tokenizer="meta-llama/Llama-3.1-8B",
        renderer_name="llama3",
        max_length=32768,
        batch_size=1,
    )
    _, held_out = ConversationFileBuilder(common, example_conversations_path(), 16, 0)()
    datums = held_out.get_batch(0)
    assert len(datums) == 16 == results["num_examples"]
    total = weight = 0.0
    for datum in datums:
        targets = datum.loss_fn_inputs["target_tokens"].data
        weights = datum.loss_fn_inputs["weights"].data
        pairs = enumerate(zip(targets, weights, strict=True))
        total += sum(-fake_logprob(t, k) * w for k, (t, w) in pairs)
        weight += sum(weights)
    assert results["score"] == pytest.approx(total / weight, rel=1e-6)
    assert results["metrics"]["bpb"] > 0


def test_generation_on_the_fake_is_exact(tmp_path: Path, llama3_tokenizer) -> None:
    """Replies are the fake's cyclic slices of the prompt up to <|eot_id|>, parsed by the
    renderer; the contains metric is then checked by hand."""
    from cookbook.renderers import get_renderer

    words = ["Paris", "Oslo", "Lima", "Rome", "Cairo", "Quito", "Bern", "Doha"]
    examples = "".join(f"  - {{question: 'Repeat after me: {w}', answer: {w}}}\n" for w in words)
    spec = tmp_path / "echo.yaml"
    source = "seed: 5\nsource:\n  kind: inline\n  examples:\n" + examples
    spec.write_text(EVAL_HEAD + source + "sampling: {max_tokens: 64}\nmetric:\n  kind: contains\n")
    results = run_eval(spec, tmp_path / "echo")
    renderer = get_renderer("llama3", llama3_tokenizer)
    hits = 0
    for word, record in zip(words, samples(tmp_path / "echo"), strict=True):
        prompt = renderer.build_generation_prompt(
            [{"role": "user", "content": f"Repeat after me: {word}"}]
        ).to_ints()
        tokens = fake_sample(prompt, seed=5, max_tokens=64, stop_ids={128009})
        assert record["tokens"] == tokens
        text = llama3_tokenizer.decode(tokens[: tokens.index(128009)])
        assert record["reply"] == text
        hits += word.lower() in text.lower()
        assert record["score"] == float(word.lower() in text.lower())
    assert results["score"] == hits / len(words) and 0 < hits < len(words)


def test_a_checkpoint_run_dir_is_evaluated_with_its_trained_weights(tmp_path: Path) -> None:
    """On the fake, training scales every logprob by 1 / (1 + 1000 L): the held-out NLL of the
    final weights is the base model's divided by (1 + 1000 * the sum of all learning rates)."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE, "utf-8")
    run = tmp_path / "run"
    assert main([str(recipe), "--log-dir", str(run)]) == 0
    lr_sum = sum(json.loads(x)["learning_rate"] for x in (run / "metrics.jsonl").open())
    spec = ROOT / "specs/evals/nll_held_out.yaml"
    base = run_eval(spec, tmp_path / "base")["score"]
    trained = run_eval(spec, tmp_path / "ignored", "--checkpoint", str(run))
    assert trained["checkpoint"]["sampler_path"].endswith("/sampler_weights/final")
    assert trained["score"] == pytest.approx(base / (1 + 1000 * lr_sum), rel=1e-5)


def test_checkpoint_and_results_dir_mistakes_are_one_line(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("max_steps: 4", "max_steps: 1"), "utf-8")
    assert main([str(recipe), "--log-dir", str(tmp_path / "run")]) == 0
    spec = str(ROOT / "specs/evals/arithmetic.yaml")
    capsys.readouterr()
    assert main([spec, "--checkpoint", str(tmp_path / "run"), "--set", "backend=local"]) == 2
    assert "trained on backend 'fake'" in capsys.readouterr().err
    assert main([spec, "--checkpoint", "s3://nope", "--set", "backend=fake"]) == 2
    assert "neither a run directory nor a checkpoint path" in capsys.readouterr().err
    out = tmp_path / "out"
    run_eval(Path(spec), out, "--set", "limit=2")
    assert main([spec, "--log-dir", str(out), "--set", "backend=fake"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_local_backend_eval_writes_results(tmp_path: Path) -> None:
    """The embedded torch backend end to end (a small stand-in, three questions)."""
    model = (
        "{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
        "num_key_value_heads: 2, intermediate_size: 64, threads: 1}"
    )
    small = "--set", f"local.model={model}"
    out = tmp_path / "local"
    argv = [str(ROOT / "specs/evals/multiple_choice.yaml"), "--log-dir", str(out), *small]
    assert main([*argv, "--set", "limit=3", "--set", "backend=local"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "local" and results["num_examples"] == 3
    assert any("stand-in random_llama" in note for note in results["stand_ins"])
    for record in samples(out):
        assert len(record["choice_logprobs"]) == 4 and all(v < 0 for v in record["choice_logprobs"])


# The recipe tests' small run, cut to 4 steps and without the final sample.
TINY_RECIPE = TINY + "max_steps: 4\nfinal_sample: null\n"


def test_an_unreachable_hf_dataset_uses_its_declared_fallback_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The test suite runs with HF_HUB_OFFLINE=1: the hub is never asked."""
    fallback = tmp_path / "fallback.jsonl"
    fallback.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    hf = "source:\n  kind: hf\n  path: openai/gsm8k\n  name: main\n  split: test\n"
    spec = tmp_path / "hf.yaml"
    spec.write_text(EVAL_HEAD + hf + f"  offline_fallback: {fallback}\nmetric:\n  kind: exact\n")
    results = run_eval(spec, tmp_path / "out")
    assert results["num_examples"] == 1 and results["source"]["path"] == str(fallback)
    assert any("openai/gsm8k cannot be loaded" in note for note in results["stand_ins"])
    spec.write_text(EVAL_HEAD + hf + "metric:\n  kind: exact\n")
    capsys.readouterr()
    assert main([str(spec), "--log-dir", str(tmp_path / "none")]) == 2
    assert f"{spec}:9: source.path: openai/gsm8k cannot be loaded" in capsys.readouterr().err


def test_tinker_evals_fail_fast_in_one_line_without_key_or_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The SDK alone would retry a missing service for five minutes; the eval checks first."""
    import socket

    spec = str(ROOT / "specs/evals/arithmetic.yaml")
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    assert main([spec, "--set", "backend=tinker", "--log-dir", str(tmp_path / "a")]) == 2
    assert "needs TINKER_API_KEY" in capsys.readouterr().err
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TINKER_API_KEY", "tml-EVALkey0123456789")
    monkeypatch.setenv("TINKER_BASE_URL", f"http://127.0.0.1:{port}")
    assert main([spec, "--set", "backend=tinker", "--log-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot reach the Tinker service" in err
    assert "tml-EVALkey" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
