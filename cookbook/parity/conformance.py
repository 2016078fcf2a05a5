"""The conformance runner: any port, in any language, checked against every renderer golden.

The port is a subprocess (an *adapter*) speaking JSON lines on stdin/stdout, one request and
one response a line (docs/conformance.md has the protocol and a minimal adapter). For each
golden the runner asks the adapter to render the case's messages under each TrainOnWhat, to
build the generation prompt, to name its stop sequences and to parse the reference's replies,
and compares the answers with exactly the checks - and per-token diffs - that our own parity
tests use (:mod:`cookbook.parity.compare`). An adapter that crashes, hangs or answers garbage
fails the item it was asked about and is restarted for the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbook.exceptions import ConfigurationError
from cookbook.json_diff import is_number
from cookbook.parity import golden as g
from cookbook.parity.adapter_process import PROTOCOL_VERSION, AdapterFailure, AdapterProcess
from cookbook.parity.compare import GENERATION_ITEM, compare_parse, compare_tokens
from cookbook.parity.images import IMAGE_TOKEN
from cookbook.parity.record import LAST_ASSISTANT_MESSAGE, rle, token_view
from cookbook.tokenizers import TokenizerSource, get_tokenizer

MAX_TOKEN_ID = 2**31
"""Token ids at or past this are not ids of any vocabulary (and overflow the tokenizers)."""
MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)
"""What checking an answer of the wrong shape raises: that item fails, the run goes on."""


@dataclass
class ItemResult:
    renderer: str
    model_name: str
    case_id: str
    category: str
    item: str
    """A TrainOnWhat value, or ``generation`` (prompt, stop sequences and parse_response)."""
    problem: str | None

    stand_in: bool = False
    """Whether the golden's tokenizer is a declared stand-in (its provenance note says so)."""

    @property
    def row(self) -> str:
        return matrix_row(self.renderer, self.model_name, self.stand_in)


def matrix_row(renderer: str, model_name: str, stand_in: bool) -> str:
    """A matrix row: the renderer and its tokenizer, marked where that is a declared stand-in
    (exclusions.yaml's no_oracle says why), so nobody reads stand-in ids as the model's."""
    return f"{renderer} ({model_name}{', STAND-IN tokenizer' if stand_in else ''})"


def is_stand_in(golden: dict[str, Any]) -> bool:
    return golden["tokenizer"].get("note", "").startswith("STAND-IN")


@dataclass
class ConformanceRun:
    command: str
    golden_dir: Path
    adapter: dict[str, Any]
    items: list[ItemResult] = field(default_factory=list)
    unsupported: dict[str, set[str]] = field(default_factory=dict)
    """row -> categories of goldens skipped because the adapter lacks the renderer."""

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.problem]

    @property
    def ok(self) -> bool:
        return bool(self.items) and not self.failed


def _error(raw: Any) -> dict[str, Any]:
    error = raw if isinstance(raw, dict) else {"message": str(raw)}
    kind = str(error.get("type", "Error"))
    bases = error.get("bases")
    return {
        "type": kind,
        "message": str(error.get("message", "")),
        "bases": [str(b) for b in bases] if isinstance(bases, list) and bases else [kind],
    }


def _is_token(value: Any) -> bool:
    """A token id, or the IMAGE_TOKEN that stands at each position of an image chunk."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (0 <= value < MAX_TOKEN_ID or value == IMAGE_TOKEN)
    )


def _tokens(response: dict[str, Any], expected: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """An adapter answer in the golden's token-record shape. Optional fields the adapter left
    out (text, weights_dtype, segments) are taken as agreeing, so only what it states is checked.
    """
    if "error" in response:
        return {"error": _error(response["error"])}
    tokens = response.get("tokens")
    if not isinstance(tokens, list) or not all(_is_token(t) for t in tokens):
        raise AdapterFailure(f"'tokens' is not a list of token ids: {str(tokens)[:120]}")
    record = {**token_view(tokenizer, tokens), "text": response.get("text", expected.get("text"))}
    if "images" in response or "images" in expected:
        images = response.get("images", expected.get("images"))
        if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
            raise AdapterFailure(f"'images' is not a list of objects: {str(images)[:120]}")
        record["images"] = images
    if "weights" in expected:
        weights = response.get("weights")
        if not isinstance(weights, list) or not all(is_number(w) for w in weights):
            raise AdapterFailure("'weights' is missing or not a list of numbers")
        record["weights"] = rle([float(w) for w in weights])
        record["weights_dtype"] = response.get("weights_dtype", expected.get("weights_dtype"))
        record["segments"] = response.get("segments", expected.get("segments"))
    return record


class _Case:
    """One golden, checked item by item through the adapter."""

    def __init__(self, adapter: AdapterProcess, golden: dict[str, Any], stops: dict):
        self.adapter, self.golden, self.stops = adapter, golden, stops
        self.model_name = golden["model_name"]
        self.base = {
            "renderer": golden["renderer"]["name"],
            "tokenizer": self.model_name,
            "tokenizer_files": golden["tokenizer"].get("files", {}),
        }
        # Pinned renderer attributes (gpt-oss's current_date); sent only when there are any.
        if golden["renderer"].get("options"):
            self.base["renderer_options"] = golden["renderer"]["options"]
        self.messages = golden["input"]["messages"]
        self.tokenizer = get_tokenizer(self.model_name, TokenizerSource.OFFLINE)

    def supervised(self, train_on_what: str, expected: dict[str, Any]) -> str | None:
        response = self.adapter.request(
            "build_supervised_example",
            **self.base,
            messages=self.messages,
            train_on_what=train_on_what,
        )
        actual = _tokens(response, expected, self.tokenizer)
        return compare_tokens(expected, actual, train_on_what, weighted=True)

    def generation(self) -> str | None:
        outputs = self.golden["outputs"]
        expected = outputs["generation_prompt"]
        response = self.adapter.request(
            "build_generation_prompt", **self.base, messages=self.messages
        )
        problem = compare_tokens(
            expected, _tokens(response, expected, self.tokenizer), "prompt", weighted=False
        )
        return problem or self._stop(outputs["stop_sequences"]) or self._parse(outputs)

    def _stop(self, expected: list[Any]) -> str | None:
        key = (self.base["renderer"], self.model_name)
        if key not in self.stops:
            response = self.adapter.request("get_stop_sequences", **self.base)
            self.stops[key] = response.get("stop_sequences", response.get("error"))
        actual = self.stops[key]
        return None if actual == expected else f"stop sequences {actual}, reference {expected}"

    def _parse(self, outputs: dict[str, Any]) -> str | None:
        expected = outputs["parse_response"]
        if expected is None:
            return None
        if "error" in expected:
            # The reference could not even render the reply to parse: the port must refuse too.
            response = self.adapter.request(
                "build_supervised_example",
                **self.base,
                messages=self.messages,
                train_on_what=LAST_ASSISTANT_MESSAGE,
            )
            return compare_parse(
                expected, {"error": _error(response["error"])} if "error" in response else {}
            )
        actual: dict[str, Any] = {}
        for variant, record in expected.items():
            ids = record["ids"] if "ids" in record else self._unrecorded_ids(variant)
            if ids is None:
                actual[variant] = record  # nothing to send: the golden lacks the input
                continue
            response = self.adapter.request("parse_response", **self.base, tokens=ids)
            actual[variant] = (
                {"error": _error(response["error"])}
                if "error" in response
                else {
                    "ids": ids,
                    "message": response.get("message"),
                    "termination": response.get("termination"),
                }
            )
        return compare_parse(expected, actual)

    def _unrecorded_ids(self, variant: str) -> list[int] | None:
        """A reply whose parse the reference refused is recorded without its ids; rebuild the
        complete (and truncated) reply from the port's own rendering: its supervised example
        minus its generation prompt. Other endings cannot be rebuilt and are not checked."""
        if variant not in ("complete", "truncated"):
            return None
        example = self.adapter.request(
            "build_supervised_example",
            **self.base,
            messages=self.messages,
            train_on_what=LAST_ASSISTANT_MESSAGE,
        )
        prompt = self.adapter.request(
            "build_generation_prompt", **self.base, messages=self.messages[:-1]
        )
        if "error" in example or "error" in prompt:
            return None
        reply = list(example["tokens"])[len(prompt["tokens"]) :]
        return reply if variant == "complete" else reply[:-1]


def _hello(adapter: AdapterProcess) -> dict[str, Any]:
    try:
        hello = adapter.request("hello", protocol=PROTOCOL_VERSION)
    except AdapterFailure as exc:
        raise ConfigurationError(
            f"--conformance: the adapter did not answer hello: {exc}"
        ) from None
    if hello.get("protocol") != PROTOCOL_VERSION or not isinstance(hello.get("renderers"), list):
        raise ConfigurationError(
            f"--conformance: hello must answer protocol {PROTOCOL_VERSION} and a list of "
            f"renderers, got {json.dumps(hello)[:200]}"
        )
    return hello


def run_conformance(
    command: str,
    golden_dir: Path,
    renderers: set[str] | None = None,
    timeout: float = 60.0,
    on_case: Callable[[str], None] | None = None,
) -> ConformanceRun:
    """Check the adapter ``command`` against every golden under ``golden_dir/renderers``."""
    paths = g.golden_files(golden_dir)
    if not paths:
        raise ConfigurationError(f"--golden-dir {golden_dir}: no goldens under renderers/")
    with AdapterProcess(command, timeout) as adapter:
        hello = _hello(adapter)
        run = ConformanceRun(command, golden_dir, hello)
        stops: dict[tuple[str, str], Any] = {}
        for path in paths:
            golden = g.load_golden(path)
            name, category = golden["renderer"]["name"], golden.get("category", "other")
            if renderers is not None and name not in renderers:
                continue
            if name not in hello["renderers"]:
                row = matrix_row(name, golden["model_name"], is_stand_in(golden))
                run.unsupported.setdefault(row, set()).add(category)
                continue
            case = _Case(adapter, golden, stops)
            checks: dict[str, Callable[[], str | None]] = {
                tow: lambda t=tow, e=exp, c=case: c.supervised(t, e)
                for tow, exp in golden["outputs"]["supervised"].items()
            }
            checks[GENERATION_ITEM] = case.generation
            for item, check in checks.items():
                try:
                    problem = check()
                except AdapterFailure as exc:
                    problem = f"{item}: adapter failure: {exc}"
                except MALFORMED as exc:
                    reason = " ".join(f"{type(exc).__name__}: {exc}".splitlines())[:200]
                    problem = f"{item}: adapter failure: an answer of the wrong shape ({reason})"
                run.items.append(
                    ItemResult(
                        name,
                        case.model_name,
                        golden["case_id"],
                        category,
                        item,
                        problem,
                        is_stand_in(golden),
                    )
                )
            if on_case is not None:
                on_case(golden["case_id"])
    return run
