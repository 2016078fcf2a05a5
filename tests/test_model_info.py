"""cookbook.model_info against golden/model_info.json, which the pinned reference produced.

The golden lists every model of the reference's table (found from its ``get_*_info`` tables by
tools/generate_goldens.py, not from ours), probe names for each error path, and whether
``warn_if_renderer_not_recommended`` logged for a set of (model, renderer) pairs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from cookbook import model_info
from cookbook.exceptions import ConfigurationError
from cookbook.parity import golden as g

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_FILE = ROOT / "golden" / "model_info.json"
GOLDEN = json.loads(GOLDEN_FILE.read_text("utf-8"))


def _ours(model_name: str) -> dict[str, Any]:
    attrs = model_info.get_model_attributes(model_name)
    return {
        **dataclasses.asdict(attrs),
        "recommended_renderers": list(attrs.recommended_renderers),
        "recommended_renderer_names": model_info.get_recommended_renderer_names(model_name),
        "recommended_renderer_name": model_info.get_recommended_renderer_name(model_name),
    }


def test_golden_is_the_one_the_manifest_recorded() -> None:
    manifest = g.load_manifest(ROOT / "golden")
    assert manifest["model_info"] == {GOLDEN_FILE.name: g.file_sha256(GOLDEN_FILE)}, (
        f"golden/model_info.json changed outside `{g.REGENERATE}`"
    )
    assert GOLDEN["reference"]["tinker-cookbook"] == g.REFERENCE_VERSION


def test_we_know_exactly_the_reference_models() -> None:
    assert len(GOLDEN["models"]) >= 40, "the golden lost most of the reference table"
    assert sorted(model_info.known_model_names()) == sorted(GOLDEN["models"])


@pytest.mark.parametrize("model_name", sorted(GOLDEN["models"]))
def test_model_matches_reference(model_name: str) -> None:
    assert _ours(model_name) == GOLDEN["models"][model_name]


@pytest.mark.parametrize("model_name", sorted(GOLDEN["probes"]))
def test_probe_matches_reference(model_name: str) -> None:
    """Checkpoint suffixes, the Inkling fallback and every refusal, as the reference behaves.

    Refusals must be the reference's exception type; messages must match too, except for
    KeyError, where ours names the known models instead of repeating the bare key.
    """
    expected = GOLDEN["probes"][model_name]
    if "error" not in expected:
        assert _ours(model_name) == expected
        return
    error = expected["error"]
    try:
        model_info.get_model_attributes(model_name)
    except Exception as exc:  # the type is checked against the golden below
        caught = exc
    else:
        pytest.fail(f"the reference raised {error['type']}: {error['message']}; ours did not")
    bases = {c.__name__ for c in type(caught).__mro__}
    assert error["type"] in bases and error["builtin"] in bases
    if error["type"] == "ConfigurationError":
        assert isinstance(caught, ConfigurationError)
    if error["type"] != "KeyError":
        assert str(caught) == error["message"]


@pytest.mark.parametrize(
    "probe", GOLDEN["warnings"], ids=[f"{w['model']}-{w['renderer']}" for w in GOLDEN["warnings"]]
)
def test_warning_matches_reference(probe: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=model_info.__name__):
        model_info.warn_if_renderer_not_recommended(probe["model"], probe["renderer"])
    warned = any(r.name == model_info.__name__ for r in caplog.records)
    assert warned == probe["warns"]


def test_the_sl_basic_default_model_gets_role_colon() -> None:
    """The reference's parity gotcha #1, by name: the default model is a base model."""
    assert model_info.get_recommended_renderer_name("Qwen/Qwen3.5-9B-Base") == "role_colon"
    assert GOLDEN["models"]["Qwen/Qwen3.5-9B-Base"]["recommended_renderer_name"] == "role_colon"
