"""The parity gate itself must be able to fail: stale, unused, corrupted and edited goldens."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cookbook.exceptions import GoldenError
from cookbook.parity import golden as g
from cookbook.parity.compare import compare_case
from cookbook.specs import RendererCasesSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "renderers" / "llama3.yaml"


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the llama3 spec and golden tree, free to break."""
    shutil.copytree(ROOT / "golden", tmp_path / "golden")
    spec = tmp_path / "llama3.yaml"
    shutil.copy(SPEC, spec)
    return spec, tmp_path / "golden"


def _load(path: Path) -> RendererCasesSpec:
    spec = load_spec(path)
    assert isinstance(spec, RendererCasesSpec)
    return spec


def _edit_spec(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text("utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")


def test_a_changed_token_id_fails_with_a_per_token_diff(workspace) -> None:
    spec_path, golden = workspace
    file = golden / "renderers" / "llama3" / "cjk_text.json"
    data = json.loads(file.read_text("utf-8"))
    data["outputs"]["supervised"]["all_messages"]["ids"][7] += 1
    file.write_text(json.dumps(data), "utf-8")
    spec = _load(spec_path)
    result = compare_case(golden, spec, next(c for c in spec.cases if c.id == "cjk_text"))
    problem = result.problem("all_messages")
    assert problem is not None
    assert "first token divergence at position 7" in problem
    assert "> " in problem and "message 0 output" in problem
    assert result.problem("last_assistant_message") is None
    assert g.manifest_mismatches(golden) == ["renderers/llama3/cjk_text.json"]


def test_a_changed_weight_is_reported_as_a_weight_divergence(workspace) -> None:
    spec_path, golden = workspace
    file = golden / "renderers" / "llama3" / "single_turn.json"
    data = json.loads(file.read_text("utf-8"))
    data["outputs"]["supervised"]["all_tokens"]["weights"][0] = [1.0, 1]
    file.write_text(json.dumps(data), "utf-8")
    spec = _load(spec_path)
    result = compare_case(golden, spec, next(c for c in spec.cases if c.id == "single_turn"))
    assert "first weight divergence at position 0" in (result.problem("all_tokens") or "")


def test_editing_a_case_without_regenerating_reports_it_stale(workspace) -> None:
    spec_path, golden = workspace
    _edit_spec(spec_path, lambda d: d["cases"][0]["messages"][0].update(content="Hi!"))
    spec = _load(spec_path)
    result = compare_case(golden, spec, spec.cases[0])
    assert result.status == "stale"
    assert "input changed" in result.golden_problem and g.REGENERATE in result.golden_problem
    assert all(result.problem(item) for item in result.items)


def test_a_changed_tokenizer_hash_reports_the_golden_stale(workspace) -> None:
    spec_path, golden = workspace
    file = golden / "renderers" / "llama3" / "single_turn.json"
    data = json.loads(file.read_text("utf-8"))
    data["tokenizer"]["files"]["tokenizer.json"] = "0" * 64
    file.write_text(json.dumps(data), "utf-8")
    spec = _load(spec_path)
    result = compare_case(golden, spec, spec.cases[0])
    assert "tokenizer files changed" in (result.golden_problem or "")


def test_removing_a_case_reports_its_golden_unused(workspace) -> None:
    spec_path, golden = workspace
    _edit_spec(spec_path, lambda d: d["cases"].pop(0))
    spec = _load(spec_path)
    wanted = {g.golden_path(golden, spec.renderer, c.id) for c in spec.cases}
    unused = [p for p in g.unused_goldens(golden, wanted) if p.parent.name == spec.renderer]
    assert [p.name for p in unused] == ["single_turn.json"]


def test_a_missing_golden_names_the_regeneration_command(workspace) -> None:
    spec_path, golden = workspace
    (golden / "renderers" / "llama3" / "single_turn.json").unlink()
    spec = _load(spec_path)
    result = compare_case(golden, spec, spec.cases[0])
    assert result.status == "no golden" and g.REGENERATE in result.golden_problem


def test_a_corrupted_golden_is_a_one_line_error_with_its_line(workspace) -> None:
    _, golden = workspace
    file = golden / "renderers" / "llama3" / "single_turn.json"
    lines = file.read_text("utf-8").splitlines()
    lines[3] = lines[3] + " oops"
    file.write_text("\n".join(lines), "utf-8")
    with pytest.raises(GoldenError, match=r"single_turn\.json:4: corrupted golden"):
        g.load_golden(file)


def test_a_golden_of_another_schema_version_is_rejected(workspace) -> None:
    _, golden = workspace
    file = golden / "renderers" / "llama3" / "single_turn.json"
    data = json.loads(file.read_text("utf-8"))
    data["schema_version"] = 99
    file.write_text(json.dumps(data), "utf-8")
    with pytest.raises(GoldenError, match="schema_version"):
        g.load_golden(file)


def test_a_golden_missing_a_field_names_it_and_the_command(workspace) -> None:
    _, golden = workspace
    file = golden / "renderers" / "llama3" / "single_turn.json"
    data = json.loads(file.read_text("utf-8"))
    del data["outputs"]
    file.write_text(json.dumps(data), "utf-8")
    message = f"{file}: outputs: missing field, not a complete golden; regenerate with "
    with pytest.raises(GoldenError, match=re.escape(f"{message}`{g.REGENERATE}`") + "$"):
        g.load_golden(file)


def test_a_case_decodes_each_distinct_token_list_once(llama3_tokenizer) -> None:
    """The modes of a case mostly render the same ids (they differ in weights): the record
    decodes each distinct list once, and every text is still that list's decoding."""
    from cookbook.parity.record import our_segments, render_outputs, with_tool_call_objects
    from cookbook.renderers import ToolCall, get_renderer

    class CountingDecodes:
        eos_token_id = llama3_tokenizer.eos_token_id

        def __init__(self) -> None:
            self.decoded: list[tuple[int, ...]] = []

        def decode(self, ids: list[int]) -> str:
            self.decoded.append(tuple(ids))
            return llama3_tokenizer.decode(ids)

    spec = _load(SPEC)
    case = max(spec.cases, key=lambda c: len(c.resolved_train_on_what()))
    modes = case.resolved_train_on_what()
    renderer = get_renderer(spec.renderer, llama3_tokenizer)
    counting = CountingDecodes()
    messages = with_tool_call_objects(case.message_dicts(), ToolCall)
    outputs = render_outputs(
        renderer, counting, messages, modes, our_segments(renderer), pieces=False
    )
    views = [outputs["generation_prompt"], *outputs["supervised"].values()]
    views = [view for view in views if "ids" in view]
    assert len(views) > len({tuple(view["ids"]) for view in views}) >= 1  # shared ids
    assert sorted(counting.decoded) == sorted({tuple(view["ids"]) for view in views})
    for view in views:
        assert view["text"] == llama3_tokenizer.decode(view["ids"])
