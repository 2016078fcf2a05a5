"""Compare our renderers with the goldens, case by case; shared by the tests and the CLI.

A case yields one verdict per item (each TrainOnWhat, plus the generation prompt / stop
sequences / parse item), or one verdict for the whole case when its golden is missing, corrupted
or stale. Problems are one readable message each, with the per-token diff where there is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbook.exceptions import GoldenError
from cookbook.image_processing_utils import image_processor_record, offline_image_processor
from cookbook.parity import golden as g
from cookbook.parity.diff import first_divergence
from cookbook.parity.images import has_images, with_images
from cookbook.parity.record import (
    add_pieces,
    our_segments,
    render_outputs,
    unrle,
    with_tool_call_objects,
)
from cookbook.renderers import ToolCall, get_renderer
from cookbook.specs.models import RendererCase, RendererCasesSpec
from cookbook.tokenizers import TokenizerSource, get_tokenizer, provenance

GENERATION_ITEM = "generation"


@dataclass
class CaseResult:
    case: RendererCase
    outputs: dict[str, Any]
    """Our rendering of the case, in the golden ``outputs`` shape."""
    golden_problem: str | None = None
    """Missing, corrupted or stale golden: every item of the case fails with this."""
    problems: dict[str, str] = field(default_factory=dict)
    """item (TrainOnWhat value or ``generation``) -> what differs."""

    def problem(self, item: str) -> str | None:
        return self.golden_problem or self.problems.get(item)

    @property
    def items(self) -> list[str]:
        return [str(t) for t in self.case.resolved_train_on_what()] + [GENERATION_ITEM]

    @property
    def status(self) -> str:
        if self.golden_problem:
            return "stale" if "stale" in self.golden_problem else "no golden"
        return "fail" if self.problems else "ok"


def our_outputs(
    spec: RendererCasesSpec, case: RendererCase, *, pieces: bool = True
) -> dict[str, Any]:
    tokenizer = get_tokenizer(spec.model_name, TokenizerSource.OFFLINE)
    dicts = case.message_dicts()
    # Only cases with images get the (stand-in) image processor, as in tools/generate_goldens.
    processor = offline_image_processor(spec.model_name) if has_images(dicts) else None
    renderer = get_renderer(spec.renderer, tokenizer, processor, model_name=spec.model_name)
    messages = with_images(with_tool_call_objects(dicts, ToolCall))
    return render_outputs(
        renderer,
        tokenizer,
        messages,
        case.resolved_train_on_what(),
        our_segments(renderer),
        pieces=pieces,
    )


def compare_case(
    golden_root: Path, spec: RendererCasesSpec, case: RendererCase, *, pieces: bool = True
) -> CaseResult:
    """Our rendering of ``case`` against its golden. ``pieces=False`` (the parity tests) leaves
    the per-token pieces out of ``outputs`` except where ids differ, for the diff: the same
    verdicts, without decoding every token on its own."""
    result = CaseResult(case, our_outputs(spec, case, pieces=pieces))
    path = g.golden_path(golden_root, spec.renderer, case.id)
    try:
        golden = g.load_golden(path)
    except GoldenError as exc:
        result.golden_problem = str(exc)
        return result
    tokenizer = get_tokenizer(spec.model_name, TokenizerSource.OFFLINE)
    reason = g.staleness(golden, spec, case, provenance(tokenizer).files)
    if reason is None and "image_processor" in golden:
        ours = image_processor_record(offline_image_processor(spec.model_name))
        if json.loads(json.dumps(ours)) != golden["image_processor"]:
            reason = f"the image processor changed since the golden was made; run `{g.REGENERATE}`"
    if reason:
        result.golden_problem = f"{path} is stale: {reason}"
        return result
    expected, actual = golden["outputs"], result.outputs
    for tow in case.resolved_train_on_what():
        item = str(tow)
        if item not in expected["supervised"]:
            problem = f"golden has no {item} result; run `{g.REGENERATE}`"
        else:
            exp = expected["supervised"][item]
            act = _pieces_if_differing(tokenizer, exp, actual["supervised"][item])
            problem = compare_tokens(exp, act, item, weighted=True)
        if problem:
            result.problems[item] = problem
    prompt = expected["generation_prompt"]
    problem = (
        compare_tokens(
            prompt,
            _pieces_if_differing(tokenizer, prompt, actual["generation_prompt"]),
            "prompt",
            weighted=False,
        )
        or _compare_stop(expected["stop_sequences"], actual["stop_sequences"])
        or compare_parse(expected["parse_response"], actual["parse_response"])
    )
    if problem:
        result.problems[GENERATION_ITEM] = problem
    return result


def _pieces_if_differing(
    tokenizer: Any, expected: dict[str, Any], actual: dict[str, Any]
) -> dict[str, Any]:
    """``actual`` with its pieces decoded where its ids differ from ``expected``'s (the diff
    shows them)."""
    return add_pieces(tokenizer, actual) if actual.get("ids") != expected.get("ids") else actual


def compare_refusal(expected: dict[str, Any], actual: dict[str, Any], what: str) -> str | None:
    """The reference raised: ours must raise an instance of the same stdlib error."""
    if "error" not in actual:
        return (
            f"{what}: the reference raised {expected['type']}: {expected['message']!r}; "
            "ours did not raise"
        )
    if expected["builtin"] not in actual["error"]["bases"]:
        return (
            f"{what}: the reference raised {expected['builtin']} ({expected['type']}); ours "
            f"raised {actual['error']['type']} ({', '.join(actual['error']['bases'])})"
        )
    return None


def compare_tokens(
    expected: dict[str, Any], actual: dict[str, Any], what: str, *, weighted: bool
) -> str | None:
    if "error" in expected:
        return compare_refusal(expected["error"], actual, what)
    if "error" in actual:
        err = actual["error"]
        return f"{what}: ours raised {err['type']}: {err['message']}; the reference did not"
    diff = None
    # Equal ids and equal run-length encodings (both made by record.rle, which merges every
    # run) are equal tokens and weights: the per-token walk only runs to find a difference.
    if expected["ids"] != actual["ids"] or (weighted and expected["weights"] != actual["weights"]):
        exp_w = unrle(expected["weights"]) if weighted else [0.0] * len(expected["ids"])
        act_w = unrle(actual["weights"]) if weighted else [0.0] * len(actual["ids"])
        diff = first_divergence(expected, actual, exp_w, act_w)
    if diff:
        return f"{what}: {diff}"
    images = _image_layout(expected), _image_layout(actual)
    if images[0] != images[1]:
        return f"{what}: image chunks differ: reference {images[0]}, ours {images[1]}"
    if actual["text"] != expected["text"]:
        return f"{what}: decoded text differs: {expected['text']!r} != {actual['text']!r}"
    if weighted and actual["weights_dtype"] != expected["weights_dtype"]:
        expected_dtype, actual_dtype = expected["weights_dtype"], actual["weights_dtype"]
        return f"{what}: weights dtype {actual_dtype}, reference {expected_dtype}"
    if weighted and expected["segments"] is not None and actual["segments"] != expected["segments"]:
        return f"{what}: segment boundaries differ: {expected['segments']} != {actual['segments']}"
    return None


def _image_layout(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Where image chunks go and what they declare. Not the sha256 of their bytes, which is
    recorded for provenance: another JPEG encoder (another port, another Pillow) writes other
    bytes for the same image."""
    return [
        {key: value for key, value in image.items() if key != "sha256"}
        for image in view.get("images", [])
    ]


def _compare_stop(expected: list, actual: list) -> str | None:
    return None if expected == actual else f"stop sequences {actual}, reference {expected}"


def compare_parse(expected: dict | None, actual: dict | None) -> str | None:
    if expected is None or actual is None:
        return None if expected == actual else "parse_response: only one side parsed a reply"
    if "error" in expected:
        return compare_refusal(expected["error"], actual, "parse_response")
    if "error" in actual:
        err = actual["error"]
        return f"parse_response: ours raised {err['type']}: {err['message']}; the reference did not"
    # Every ending the golden recorded; one ours did not record is a failure, while one only
    # ours has (a layout the reference's segments could not show) has nothing to check against.
    for variant, exp in expected.items():
        act = actual.get(variant)
        if act is None:
            return f"parse_response ({variant} reply): recorded by the reference, not by ours"
        if "error" in exp:
            problem = compare_refusal(exp["error"], act, f"parse_response ({variant} reply)")
            if problem:
                return problem
        elif exp != act:
            return f"parse_response ({variant} reply): reference {exp}, ours {act}"
    return None
