"""tml_renderers' results as cookbook values: training examples as ``(ModelInput, float32
weights)`` and parsed replies as cookbook messages.

Split from ``tml_v0.py``, which turns cookbook input into tml_renderers input (and keeps every
name the reference's tests reach through it); this is the way back. tml_renderers is imported
on use (its import pulls in torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, cast

import numpy as np
import tinker

from cookbook.renderers.types import Message, ToolCall, model_input, text_chunk


def example_to_model_input_and_weights(
    example: Any,
) -> tuple[tinker.ModelInput, np.ndarray]:
    """``tml_renderers.tinker.training_example_to_tinker_model_input_and_weights`` with float32
    weights, without validating every token again: text spans (ints from the compiled renderer)
    become chunks directly; other spans (images, audio) go through the library's converter.

    Why: that adapter validated each token through pydantic and built the weights as Python
    floats, which cost more than ``render_for_sft`` itself. ``tests/test_tml_vl.py`` pins the
    result to the adapter's."""
    text_span = import_module("tml_renderers.chat").EncodedTextTokenSpan
    chunks: list[tinker.ModelInputChunk] = []
    input_len = 0
    for span in example.input_token_spans:
        inner = span.span
        if isinstance(inner, text_span):
            tokens = inner.tokens  # a fresh list on every read: the chunk may keep it
            chunks.append(text_chunk(tokens))
            input_len += len(tokens)
        else:
            chunk = import_module("tml_renderers.tinker").token_span_to_tinker_chunk(span)
            chunks.append(chunk)
            input_len += chunk.length
    weights = np.array(example.per_token_loss_weight_unshifted, dtype=np.float32)
    if input_len != len(weights):
        raise ValueError(
            f"token count {input_len} != loss-weight count {len(weights)}; "
            "input_token_spans and per_token_loss_weight_unshifted must align 1:1"
        )
    return model_input(chunks), weights


def parsed_to_cookbook_message(parsed: list[Any]) -> Message | None:
    """The last message of a parsed reply as a cookbook message (tool calls as ToolCall)."""
    chat = import_module("tml_renderers.chat")
    openai_messages = chat.OpenAIMessage.from_messages(parsed)
    if not openai_messages:
        return None
    message = dict(chat.OpenAIMessage.to_oss_messages(openai_messages)[-1])
    if calls := message.get("tool_calls"):
        message["tool_calls"] = [
            ToolCall(
                id=call.get("id"),
                function=ToolCall.FunctionBody(
                    name=call["function"]["name"], arguments=call["function"]["arguments"]
                ),
            )
            for call in calls
        ]
    return cast(Message, message)


__all__ = ["example_to_model_input_and_weights", "parsed_to_cookbook_message"]
