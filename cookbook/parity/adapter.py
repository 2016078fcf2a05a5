"""Our own cookbook behind the conformance protocol (docs/conformance.md).

``python -m cookbook.parity.adapter`` reads one JSON request per line on stdin and writes one
JSON response per line on stdout, exactly like an adapter for another port would; the
conformance runner then checks it against every renderer golden. Running our package through
the protocol (rather than calling it directly) is what proves the protocol and the runner.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from cookbook.image_processing_utils import offline_image_processor
from cookbook.parity.adapter_process import PROTOCOL_VERSION
from cookbook.parity.images import has_images, with_images
from cookbook.parity.record import (
    error_record,
    input_view,
    jsonable,
    our_segments,
    with_tool_call_objects,
)
from cookbook.renderers import ToolCall, builtin_renderer_names, get_renderer
from cookbook.tokenizers import TokenizerSource, get_tokenizer
from cookbook.versions import package_version


class Adapter:
    """Answers protocol requests; renderers are built once per (renderer, tokenizer, options)."""

    def __init__(self) -> None:
        self._renderers: dict[tuple[str, str, str], Any] = {}

    def _renderer(self, request: dict[str, Any]) -> Any:
        options = request.get("renderer_options", {})
        # Conversations with images get the (stand-in) image processor, as the goldens did.
        images = has_images(request.get("messages", []))
        key = (request["renderer"], request["tokenizer"], json.dumps(options, sort_keys=True))
        key += ("images",) if images else ()
        if key not in self._renderers:
            tokenizer = get_tokenizer(request["tokenizer"], TokenizerSource.OFFLINE)
            processor = offline_image_processor(key[1]) if images else None
            renderer = get_renderer(key[0], tokenizer, processor, model_name=key[1])
            for name, value in options.items():
                setattr(renderer, name, value)
            self._renderers[key] = renderer
        return self._renderers[key]

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            return {
                "protocol": PROTOCOL_VERSION,
                "implementation": "cookbook (python)",
                "version": package_version("cookbook"),
                "renderers": builtin_renderer_names(),
            }
        renderer = self._renderer(request)
        if op == "get_stop_sequences":
            return {"stop_sequences": list(renderer.get_stop_sequences())}
        if op == "parse_response":
            message, termination = renderer.parse_response(list(request["tokens"]))
            return {"message": jsonable(message), "termination": str(termination)}
        messages = with_images(with_tool_call_objects(request["messages"], ToolCall))
        if op == "build_generation_prompt":
            return _tokens(renderer, renderer.build_generation_prompt(messages))
        if op == "build_supervised_example":
            train_on_what = request["train_on_what"]
            model_input, weights = renderer.build_supervised_example(messages, train_on_what)
            return {
                **_tokens(renderer, model_input),
                "weights": [float(w) for w in weights.tolist()],
                "weights_dtype": str(weights.dtype),
                "segments": our_segments(renderer)(messages, train_on_what),
            }
        raise NotImplementedError(f"unknown op {op!r}")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._answer(request)
        except Exception as exc:  # a refusal is an answer: the runner compares it
            answer = {"error": error_record(exc)}
        return {"id": request.get("id"), **answer}


def _tokens(renderer: Any, model_input: Any) -> dict[str, Any]:
    """``tokens`` (image positions as IMAGE_TOKEN), ``text`` and, with images, ``images``."""
    view = input_view(renderer.tokenizer, model_input)
    answer = {"tokens": view["ids"], "text": view["text"]}
    if "images" in view:
        answer["images"] = view["images"]
    return answer


def serve(stdin: TextIO, stdout: TextIO, adapter: Adapter | None = None) -> None:
    adapter = adapter or Adapter()
    for line in stdin:
        if line.strip():
            stdout.write(json.dumps(adapter.handle(json.loads(line)), ensure_ascii=False) + "\n")
            stdout.flush()


if __name__ == "__main__":
    # stdout carries protocol lines only: anything a library prints goes to stderr instead.
    protocol_out, sys.stdout = sys.stdout, sys.stderr
    serve(sys.stdin, protocol_out)
