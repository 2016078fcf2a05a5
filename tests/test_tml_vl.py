"""Qwen3-VL, Inkling (tml_v0) and images beyond the golden cases.

Token parity with the reference is proved by the goldens (specs/renderers/qwen3_vl*.yaml and
tml_v0.yaml, tests/test_parity_renderers.py, including the `images` cases); these tests cover
what a conversation case cannot: which tokenizer and image processor each model gets offline
and how they say what they are, the refusals, that the image checks can fail (negative
controls), and the conformance protocol carrying images.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tinker
from PIL import Image

from cookbook import image_processing_utils
from cookbook.exceptions import RendererError
from cookbook.image_processing_utils import QWEN3_VL_STANDIN_CONFIG, offline_image_processor
from cookbook.parity import conformance
from cookbook.parity.adapter import Adapter
from cookbook.parity.compare import compare_case, compare_tokens
from cookbook.parity.conformance import run_conformance
from cookbook.parity.golden import load_golden
from cookbook.parity.images import IMAGE_PIECE, IMAGE_TOKEN, flat_ids, synthetic_image
from cookbook.parity.record import input_view, our_segments
from cookbook.renderers import (
    Message,
    Qwen3VLInstructRenderer,
    Qwen3VLRenderer,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.base import image_to_chunk
from cookbook.specs import load_spec
from cookbook.tokenizer_utils import get_tokenizer as reference_style_get_tokenizer
from cookbook.tokenizers import get_tokenizer, provenance
from cookbook.tokenizers.o200k import O200K_SHA256

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
QWEN3_VL = "Qwen/Qwen3-VL-30B-A3B-Instruct"
INKLING = "thinkingmachines/Inkling"
VISION_TOKENS = {
    # The ids the packaged Qwen2-VL / Qwen2.5-VL / Qwen3 configs give these tokens.
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
}


@pytest.fixture(scope="module")
def vl_tokenizer():
    return get_tokenizer(QWEN3_VL, "offline")


@pytest.fixture(scope="module")
def inkling():
    return get_tokenizer(INKLING, "offline")


def _image_golden(renderer: str, case: str) -> dict:
    return load_golden(GOLDEN / "renderers" / renderer / f"{case}.json")


# -- Qwen3-VL ------------------------------------------------------------------------------


def test_qwen3_vl_tokenizer_has_qwen3_ids_and_no_template(vl_tokenizer) -> None:
    qwen3 = get_tokenizer("Qwen/Qwen3-8B", "offline")
    prov = provenance(vl_tokenizer)
    assert prov.files["tokenizer.json"] == provenance(qwen3).files["tokenizer.json"]
    assert "no chat template" in prov.note and vl_tokenizer.chat_template is None
    for text, token in VISION_TOKENS.items():
        assert vl_tokenizer.encode(text, add_special_tokens=False) == [token]


def test_registry_builds_the_reference_classes(vl_tokenizer) -> None:
    processor = offline_image_processor(QWEN3_VL)
    classes = {"qwen3_vl": Qwen3VLRenderer, "qwen3_vl_instruct": Qwen3VLInstructRenderer}
    for name, cls in classes.items():
        renderer = get_renderer(name, vl_tokenizer, processor, model_name=QWEN3_VL)
        assert type(renderer) is cls and renderer.image_processor is processor
        assert renderer.strip_thinking_from_history and not renderer.has_extension_property
        restored = pickle.loads(pickle.dumps(renderer))
        assert type(restored) is cls and restored.image_processor is not None


def test_image_content_without_a_processor_is_refused(vl_tokenizer) -> None:
    renderer = get_renderer("qwen3_vl", vl_tokenizer)
    image = synthetic_image({"width": 32, "height": 32})
    messages = [Message(role="user", content=[{"type": "image", "image": image}])]
    with pytest.raises(RendererError, match="image_processor is required"):
        renderer.build_generation_prompt(messages)


def test_images_are_wrapped_in_vision_tokens(vl_tokenizer) -> None:
    renderer = get_renderer("qwen3_vl", vl_tokenizer, offline_image_processor(QWEN3_VL))
    image = synthetic_image({"width": 224, "height": 224})
    prompt = renderer.build_generation_prompt(
        [Message(role="user", content=[{"type": "image", "image": image}])]
    )
    ids, images = flat_ids(prompt)
    (record,) = images
    start, end = record["start"], record["start"] + record["length"]
    assert ids[start - 1] == VISION_TOKENS["<|vision_start|>"]
    assert ids[end] == VISION_TOKENS["<|vision_end|>"]
    assert set(ids[start:end]) == {IMAGE_TOKEN}


# -- the stand-in image processor ---------------------------------------------------------------


def test_offline_image_processor_is_a_declared_standin() -> None:
    processor = offline_image_processor(QWEN3_VL)
    assert processor.cookbook_provenance["note"].startswith("STAND-IN")
    assert processor.patch_size == QWEN3_VL_STANDIN_CONFIG["patch_size"]
    assert processor.merge_size == QWEN3_VL_STANDIN_CONFIG["merge_size"]
    assert dict(processor.size) == QWEN3_VL_STANDIN_CONFIG["size"]
    assert offline_image_processor(INKLING) is None  # tml_renderers counts its own
    with pytest.raises(OSError, match="no offline image processor"):
        offline_image_processor("meta-llama/Llama-3.2-11B-Vision")


def test_get_image_processor_falls_back_loudly(caplog, monkeypatch) -> None:
    monkeypatch.setattr(image_processing_utils, "hub_reachable", lambda: False)
    image_processing_utils.get_image_processor.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=image_processing_utils.__name__):
            processor = image_processing_utils.get_image_processor("Qwen/Qwen3-VL-8B-Instruct")
    finally:
        image_processing_utils.get_image_processor.cache_clear()
    assert "STAND-IN" in caplog.text
    assert processor.cookbook_provenance["note"].startswith("STAND-IN")


def test_a_changed_image_processor_makes_image_goldens_stale(monkeypatch) -> None:
    spec = load_spec(ROOT / "specs" / "renderers" / "qwen3_vl.yaml")
    case = next(c for c in spec.cases if c.id == "two_images")
    assert compare_case(GOLDEN, spec, case).golden_problem is None
    smaller = {"shortest_edge": 4096, "longest_edge": 1 << 24}  # Qwen2-VL's slow-processor bug
    monkeypatch.setitem(QWEN3_VL_STANDIN_CONFIG, "size", smaller)
    problem = compare_case(GOLDEN, spec, case).golden_problem
    assert problem and "image processor changed" in problem


def test_golden_image_counts_are_the_processors() -> None:
    """Every image record of the qwen3_vl goldens declares what the stand-in processor says for
    that case's image (the reference computed them with the same processor)."""
    processor = offline_image_processor(QWEN3_VL)
    checked = 0
    for path in sorted((GOLDEN / "renderers" / "qwen3_vl").glob("*.json")):
        golden = load_golden(path)
        specs = [
            part["image"]
            for message in golden["input"]["messages"]
            if isinstance(message["content"], list)
            for part in message["content"]
            if part["type"] == "image"
        ]
        if not specs:
            continue
        records = next(iter(golden["outputs"]["supervised"].values())).get("images")
        if records is None:
            continue
        counts = [image_to_chunk(synthetic_image(s), processor).expected_tokens for s in specs]
        assert [r["expected_tokens"] for r in records] == counts, path.name
        checked += 1
    assert checked >= 5


# -- golden records of images: the checks can fail --------------------------------------------


def test_synthetic_images_follow_the_documented_formula() -> None:
    image = synthetic_image({"width": 9, "height": 5, "seed": 3})
    for x, y in ((0, 0), (8, 4), (3, 2)):
        expected = tuple((7 * x + 13 * y + 101 * c + 37 * 3) % 256 for c in range(3))
        assert image.getpixel((x, y)) == expected
    assert synthetic_image({"width": 4, "height": 4, "mode": "RGBA"}).mode == "RGBA"


def test_input_view_marks_image_positions(vl_tokenizer) -> None:
    chunk = tinker.types.ImageChunk(data=b"x", format="jpeg", expected_tokens=3)
    hello = vl_tokenizer.encode("Hello", add_special_tokens=False)
    model_input = tinker.ModelInput(
        chunks=[tinker.EncodedTextChunk(tokens=hello), chunk, tinker.EncodedTextChunk(tokens=hello)]
    )
    view = input_view(vl_tokenizer, model_input)
    assert view["ids"] == [*hello, IMAGE_TOKEN, IMAGE_TOKEN, IMAGE_TOKEN, *hello]
    assert view["text"] == f"Hello{IMAGE_PIECE}Hello"
    assert view["pieces"].count(IMAGE_PIECE) == 3
    (record,) = view["images"]
    assert (record["start"], record["length"], record["expected_tokens"]) == (len(hello), 3, 3)


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda v: v["images"][0].update(expected_tokens=1), id="declared-count"),
        pytest.param(lambda v: v["images"][0].update(format="png"), id="format"),
        pytest.param(lambda v: v["ids"].insert(v["images"][0]["start"], 0), id="moved"),
    ],
)
def test_image_differences_fail_the_comparison(break_it) -> None:
    expected = _image_golden("qwen3_vl", "two_images")["outputs"]["supervised"][
        "last_assistant_message"
    ]
    assert compare_tokens(expected, copy.deepcopy(expected), "x", weighted=True) is None
    actual = copy.deepcopy(expected)
    break_it(actual)
    assert compare_tokens(expected, actual, "x", weighted=True)


def test_only_the_image_bytes_digest_may_differ() -> None:
    """Another JPEG encoder writes other bytes: the sha256 is provenance, not compared."""
    expected = _image_golden("tml_v0", "image_then_text")["outputs"]["supervised"][
        "last_assistant_message"
    ]
    actual = copy.deepcopy(expected)
    actual["images"][0]["sha256"] = "0" * 64
    assert compare_tokens(expected, actual, "x", weighted=True) is None


def test_conformance_carries_images(tmp_path: Path) -> None:
    """Our adapter through the protocol on an image golden; then an adapter answer that counts
    one token too many per image fails the item with the image diff."""
    golden_dir = tmp_path / "golden"
    target = golden_dir / "renderers" / "qwen3_vl"
    target.mkdir(parents=True)
    shutil.copy(GOLDEN / "renderers" / "qwen3_vl" / "two_images.json", target)
    ours = run_conformance(f"{sys.executable} -m cookbook.parity.adapter", golden_dir)
    assert ours.ok, [item.problem for item in ours.failed]

    golden = _image_golden("qwen3_vl", "two_images")
    expected = golden["outputs"]["supervised"]["last_assistant_message"]
    answer = Adapter().handle(
        {
            "id": 1,
            "op": "build_supervised_example",
            "renderer": "qwen3_vl",
            "tokenizer": golden["model_name"],
            "messages": golden["input"]["messages"],
            "train_on_what": "last_assistant_message",
        }
    )
    tokenizer = get_tokenizer(golden["model_name"], "offline")
    as_record = conformance._tokens(answer, expected, tokenizer)
    assert compare_tokens(expected, as_record, "x", weighted=True) is None
    for image in answer["images"]:
        image["expected_tokens"] += 1
    problem = compare_tokens(
        expected, conformance._tokens(answer, expected, tokenizer), "x", weighted=True
    )
    assert problem and "image chunks differ" in problem


# -- Inkling (tml_v0) ------------------------------------------------------------------------


def test_inkling_tokenizer_is_tml_renderers_own(inkling) -> None:
    prov = provenance(inkling)
    assert prov.source.startswith("package:tml-renderers==")
    assert prov.files == {"o200k_base.tiktoken": O200K_SHA256}  # the official file
    assert "STAND-IN" not in prov.note
    assert type(reference_style_get_tokenizer(INKLING)) is type(inkling)
    assert hasattr(inkling, "tml_tokenizer") and inkling.name_or_path == INKLING
    # Marker strings typed as text stay text.
    assert len(inkling.encode("<|end_message|>")) > 1
    with pytest.raises(ValueError, match="add_special_tokens"):
        inkling.encode("x", add_special_tokens=True)


def test_tml_v0_refuses_what_the_reference_refuses(inkling) -> None:
    renderer = get_renderer("tml_v0", inkling, model_name=INKLING)
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Hello")]
    with pytest.raises(NotImplementedError, match="tml_v0 currently supports"):
        renderer.build_supervised_example(messages, TrainOnWhat.ALL_MESSAGES)
    with pytest.raises(NotImplementedError, match="partial assistant messages"):
        renderer.build_generation_prompt(messages, prefill="Sure")
    with pytest.raises(NotImplementedError, match="only supports assistant generation"):
        renderer.build_generation_prompt(messages, role="user")
    with pytest.raises(ValueError, match="thinking effort"):
        renderer.build_generation_prompt(messages, effort=1.0)
    with pytest.raises(TypeError, match="TML tokenizer adapter"):
        get_renderer("tml_v0", get_tokenizer(QWEN3_VL, "offline"))
    # Whole-conversation rendering: no per-message segments, recorded as null.
    assert our_segments(renderer)(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE) is None


def test_tml_v0_effort_conditions_prompt_and_example_alike(inkling) -> None:
    renderer = get_renderer("tml_v0", inkling, model_name=INKLING)
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Hello")]
    default = renderer.build_generation_prompt(messages[:1]).to_ints()
    low = renderer.build_generation_prompt(messages[:1], effort=0.25).to_ints()
    assert low != default
    example, weights = renderer.build_supervised_example(messages, effort=0.25)
    assert example.to_ints()[: len(low)] == low
    assert weights.dtype == np.float32 and not weights[: len(low)].any() and weights.any()
    restored = pickle.loads(pickle.dumps(renderer))
    assert restored.build_generation_prompt(messages[:1]).to_ints() == default


def test_tml_v0_images_need_no_processor(inkling) -> None:
    renderer = get_renderer("tml_v0", inkling, model_name=INKLING)
    image = Image.new("RGB", (64, 48), (30, 200, 120))
    prompt = renderer.build_generation_prompt(
        [Message(role="user", content=[{"type": "image", "image": image}])]
    )
    (record,) = flat_ids(prompt)[1]
    assert record["format"] == "jpeg" and record["expected_tokens"] > 0
    assert json.dumps(record)  # a golden-ready record


def test_tml_v0_examples_are_tml_renderers_own_conversion(inkling) -> None:
    """The direct conversion of ``render_for_sft``'s output (text spans straight to chunks,
    float32 weights) equals ``tml_renderers.tinker``'s adapter, text and image spans alike."""
    from tml_renderers.tinker import training_example_to_tinker_model_input_and_weights

    from cookbook.renderers import tml_v0

    renderer = get_renderer("tml_v0", inkling, model_name=INKLING)
    image = Image.new("RGB", (64, 48), (30, 200, 120))
    messages = [
        Message(role="system", content="Be brief."),
        Message(
            role="user",
            content=[{"type": "image", "image": image}, {"type": "text", "text": "What is it?"}],
        ),
        Message(role="assistant", content="A green rectangle."),
    ]
    render_input = tml_v0._cookbook_messages_to_sft_input(
        messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    (example,) = renderer._tml_renderer.render_for_sft(
        tml_v0._prepare_sft_input(render_input, tml_v0.DEFAULT_EFFORT)
    )
    expected_input, expected_weights = training_example_to_tinker_model_input_and_weights(example)
    model_input, weights = renderer.build_supervised_example(messages)
    assert any(isinstance(c, tinker.types.ImageChunk) for c in model_input.chunks)
    assert model_input == expected_input
    assert [c.length for c in model_input.chunks] == [c.length for c in expected_input.chunks]
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.asarray(expected_weights, dtype=np.float32))
