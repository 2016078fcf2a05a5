"""`cookbook-run compare RUN_A RUN_B`: the first layer (and item) where two runs differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tinker
from test_recipe_cli import TINY as TINY_RECIPE

import cookbook.data.builders as builders
from cookbook.cli import main
from cookbook.data.sources import example_conversations_path

# The recipe tests' small run, cut to 5 steps and without the final sample.
TINY = TINY_RECIPE + "max_steps: 5\nfinal_sample: null\n"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, "utf-8")
    return path


def compare(a: Path, b: Path, html: Path, *extra: str) -> int:
    return main(["compare", str(a), str(b), "--html", str(html), *extra])


def test_two_runs_of_one_spec_match(spec: Path, tmp_path: Path, capsys) -> None:
    for name in ("a", "b"):
        assert main([str(spec), "--log-dir", str(tmp_path / name)]) == 0
    for name in ("dataset_order.json", "rendered_samples.json", "first_batch.json"):
        assert (tmp_path / "a" / name).is_file()
    capsys.readouterr()
    assert compare(tmp_path / "a", tmp_path / "b", tmp_path / "c.html") == 0
    out = capsys.readouterr().out
    layers = [line.split() for line in out.splitlines() if line.startswith("  (")]
    assert "the runs match" in out and [words[-1] for words in layers] == ["match"] * 5


def test_a_planted_datum_weight_is_found_in_the_datum_layer(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Run B renders every conversation the same but gives one datum of the first batch a
    different weight: config, dataset order and rendered samples still match, and the
    first difference is that datum's weight (its loss then changes the metrics too)."""
    assert main([str(spec), "--log-dir", str(tmp_path / "a")]) == 0
    order = json.loads((tmp_path / "a" / "dataset_order.json").read_text())
    row_id = order["epochs"][0][0][2]  # the third row of the first batch
    lines = example_conversations_path().read_text("utf-8").splitlines()
    target = json.loads(lines[row_id])["messages"]
    original = builders.conversation_to_datum

    def planted(messages, *args, **kwargs):
        datum = original(messages, *args, **kwargs)
        if messages != target:
            return datum
        weights = list(datum.loss_fn_inputs["weights"].data)
        weights[-1] += 0.5
        inputs = {
            **datum.loss_fn_inputs,
            "weights": tinker.TensorData(data=weights, dtype="float32", shape=[len(weights)]),
        }
        return tinker.Datum(model_input=datum.model_input, loss_fn_inputs=inputs)

    monkeypatch.setattr(builders, "conversation_to_datum", planted)
    # A training batch renders through the batch path: plant there too, datum by datum.
    monkeypatch.setattr(
        builders,
        "conversations_to_datums",
        lambda conversations, *args, **kwargs: [planted(c, *args, **kwargs) for c in conversations],
    )
    assert main([str(spec), "--log-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert compare(tmp_path / "a", tmp_path / "b", html) == 1
    out = capsys.readouterr().out
    n = len(json.loads((tmp_path / "a" / "first_batch.json").read_text())["datums"][2]["weights"])
    first = out.split("first difference: ", 1)[1]
    where = f"datum 2 (row {row_id}): weights[{n - 1}]"
    assert first.startswith(f"layer (4) first batch datums: {where}: expected ")
    status = {
        line[:36].strip(): line[36:].strip() for line in out.splitlines() if line[:3] == "  ("
    }
    assert status == {
        "(1) resolved config": "match",
        "(2) dataset order": "match",
        "(3) rendered samples": "match",
        "(4) first batch datums": "differs",
        "(5) per-step metrics": "differs",
    }
    page = html.read_text()
    assert "First difference: layer <b>(4) first batch datums</b>" in page
    assert where in page


def test_metrics_are_compared_within_the_tolerance(spec: Path, tmp_path: Path, capsys) -> None:
    assert main([str(spec), "--log-dir", str(tmp_path / "a")]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    metrics = tmp_path / "b" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[3]["train_mean_nll"] *= 1 + 1e-3
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    capsys.readouterr()
    assert compare(tmp_path / "a", tmp_path / "b", tmp_path / "x.html") == 1
    assert "layer (5) per-step metrics: step 3: train_mean_nll: expected" in capsys.readouterr().out
    assert compare(tmp_path / "a", tmp_path / "b", tmp_path / "x.html", "--rtol", "1e-2") == 0


def test_comparing_something_that_is_not_a_run_is_one_line(tmp_path: Path, capsys) -> None:
    assert compare(tmp_path, tmp_path, tmp_path / "x.html") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err


def test_help_teaches_the_new_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for text in ("compare RUN_A RUN_B", "--conformance CMD", "eval ", "--checkpoint", "evals:"):
        assert text in out, text
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "first differ" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2 and "compare RUN_A RUN_B" in capsys.readouterr().err
