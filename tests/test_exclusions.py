"""Second oracle: every disagreement between the reference and an oracle is declared, with a
reason, in specs/renderers/exclusions.yaml - and every declared one still occurs.

The goldens record the oracle comparisons (``nox -s golden`` runs the chat templates in the
reference's environment); these tests only read them, so they run offline and fast.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cookbook.parity import golden as g
from cookbook.parity.chat_template import CHAT_TEMPLATE_KWARGS, CHAT_TEMPLATE_ORACLE
from cookbook.parity.record import jsonable, with_tool_call_objects
from cookbook.renderers import ToolCall, builtin_renderer_names, get_renderer
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.specs.models import RendererExclusionsSpec
from cookbook.tokenizers import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
CATALOGUE = ROOT / "specs" / "renderers" / "exclusions.yaml"

pytestmark = pytest.mark.parity


@cache
def _catalogue() -> RendererExclusionsSpec:
    spec = load_spec(CATALOGUE)
    assert isinstance(spec, RendererExclusionsSpec)
    return spec


@cache
def _goldens() -> tuple[tuple[RendererCasesSpec, dict[str, Any]], ...]:
    out = []
    for path in sorted((ROOT / "specs" / "renderers").glob("*.yaml")):
        spec = load_spec(path)
        if isinstance(spec, RendererCasesSpec):
            out += [
                (spec, g.load_golden(g.golden_path(GOLDEN, spec.renderer, case.id)))
                for case in spec.cases
            ]
    return tuple(out)


def _observed() -> set[g.OracleKey]:
    return {key for _, golden in _goldens() for key in g.oracle_disagreements(golden)}


def test_every_disagreement_is_declared_and_every_declared_one_occurs() -> None:
    problems = g.exclusion_problems(g.declared_disagreements(_catalogue()), _observed())
    assert not problems, "\n".join(problems)


def test_the_goldens_do_compare_something() -> None:
    """A catalogue check over goldens without oracle records would pass vacuously."""
    compared = [
        record[item]
        for _, golden in _goldens()
        for record in golden.get("oracles", {}).values()
        for item in ("generation", "supervised")
        if record.get(item) is not None
    ]
    assert len(compared) >= 300
    assert sum(r["agrees"] for r in compared) >= len(compared) // 2


def test_every_renderer_has_an_oracle_or_a_reason_for_none() -> None:
    without = {entry.renderer for entry in _catalogue().no_oracle}
    assert without <= set(builtin_renderer_names()), "no_oracle names unknown renderers"
    with_oracle = {spec.renderer for spec, golden in _goldens() if golden.get("oracles")}
    assert not with_oracle & without, (
        f"declared without an oracle but has one: {with_oracle & without}"
    )
    missing = set(builtin_renderer_names()) - with_oracle - without
    assert not missing, (
        f"renderers with neither an oracle nor a no_oracle reason: {sorted(missing)}"
    )


def test_oracle_records_follow_the_oracle_table() -> None:
    """Each golden of a renderer with a chat-template oracle records it, with that table's
    keyword arguments; otherwise the goldens predate the table (regenerate them)."""
    for spec, golden in _goldens():
        record = golden.get("oracles", {}).get(CHAT_TEMPLATE_ORACLE)
        where = f"{spec.renderer}/{golden['case_id']}"
        if spec.renderer in CHAT_TEMPLATE_KWARGS:
            assert record is not None, f"{where}: no {CHAT_TEMPLATE_ORACLE} record; {g.REGENERATE}"
            assert record["kwargs"] == CHAT_TEMPLATE_KWARGS[spec.renderer], where
        else:
            assert record is None, f"{where}: has a {CHAT_TEMPLATE_ORACLE} record it should not"


def test_to_openai_message_matches_the_reference() -> None:
    """The oracle's input is the reference's ``to_openai_message`` output; ours must equal it."""
    checked = 0
    for spec, golden in _goldens():
        record = golden.get("oracles", {}).get(CHAT_TEMPLATE_ORACLE)
        if record is None:
            continue
        renderer = get_renderer(spec.renderer, get_tokenizer(spec.model_name, "offline"))
        messages = with_tool_call_objects(copy.deepcopy(golden["input"]["messages"]), ToolCall)
        ours = jsonable([renderer.to_openai_message(m) for m in messages])
        assert ours == record["messages"]["openai"], f"{spec.renderer}/{golden['case_id']}"
        checked += 1
    assert checked >= 200


# -- negative controls for the catalogue check ------------------------------------------------

KEY = ("chat_template", "qwen3", "some_case", "generation")


def test_an_undeclared_disagreement_is_reported() -> None:
    (problem,) = g.exclusion_problems(set(), {KEY})
    assert problem.startswith("chat_template/qwen3/some_case/generation: the reference disagrees")


def test_a_declared_disagreement_that_vanished_is_reported() -> None:
    (problem,) = g.exclusion_problems({KEY}, set())
    assert "declared in specs/renderers/exclusions.yaml, but the goldens show no" in problem


def test_a_golden_that_agrees_yields_no_disagreement() -> None:
    golden = {
        "renderer": {"name": "qwen3"},
        "case_id": "c",
        "oracles": {
            "chat_template": {
                "generation": {"agrees": True},
                "supervised": {"agrees": False},
            }
        },
    }
    assert g.oracle_disagreements(golden) == {("chat_template", "qwen3", "c", "supervised")}
