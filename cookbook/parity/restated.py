"""Invariants restated for chat formats where the reference genuinely differs.

A check of :mod:`cookbook.parity.invariants` states a property in the terms most formats share;
a format whose reference behaviour contradicts those terms - on purpose, or as part of the
format - gets the property restated here, under the same ``[tag]``: what training and sampling
still rely on, checked as strictly as the format allows. Renderers pick their restatements by
registry name (:func:`checks_for`), so the reference's renderers get them too.

Harmony (gpt-oss):

* ``stop-token-ends-turn``: a message in history ends with ``<|end|>``; only the final message
  ends with ``<|return|>`` (the sampler's stop token). The last trained run must end with a stop
  token and every other with a stop token or ``<|end|>``.
* ``assistant-round-trip``: the sampler stops at every ``<|call|>``, so a message with several
  tool calls is several replies - the trained tail is parsed piece by piece, cut after each stop
  token; and the reference's parser skips whitespace-only channel bodies, so blank reasoning or
  text comes back as no part (a reply left with none comes back as its decoded text).

Kimi K2 (and K2.5/K2.6, which inherit its supervised examples):

* ``split-examples``: ``build_supervised_examples`` splits by user turn, not by assistant
  message. Kimi's template keeps the reasoning of the whole turn (an answer, or a tool call,
  its results and the answer), so one example trains every message of the turn: each must still
  see exactly the prompt it was sampled from.

Nemotron 3 with thinking on:

* ``prompt-prefix``, ``split-examples``, ``extension-property``: the template closes an empty
  ``<think></think>`` on every turn that did not reason, and writes inline reasoning as it
  stands, while its generation prompt ends with the open ``<think>\n`` prefill - so such a
  turn's example holds ``<think></think>`` (or the turn's own ``<think>``) where the prompt holds
  the prefill. Restated: the prompt without its prefill, then exactly one of those openings, is
  what precedes the trained tokens (and, with history preserved, what the full rendering holds
  before each assistant message); turns that reasoned in parts still start on the prompt itself.
* ``assistant-round-trip``: text parts are not trimmed, so a text that starts with newlines
  right after reasoning runs them into the separator the template writes after ``</think>``;
  the reference's parser drops both. Such a text may come back without its leading newlines.

Qwen3-VL with reasoning:

* ``assistant-round-trip``: as Nemotron's - reasoning is written ``<think>...</think>`` with the
  text straight after it, and the reference's parser drops the newlines a text starts with
  there (``<think>0</think>\n`` parses as reasoning "0" and text ""), so they may be missing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from cookbook.parity.invariant_support import (
    calls_of,
    first_difference,
    require_last_assistant,
    shown,
    supervised,
    weighted_runs,
)
from cookbook.parity.invariants import (
    ALL_CHECKS,
    Check,
    check_assistant_round_trip,
    check_extension_property,
    check_prompt_prefix,
    check_split_examples,
)
from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Message, ParseTermination, TrainOnWhat


def check_harmony_stop_token_ends_turns(renderer: Renderer, messages: list[Message]) -> None:
    """Under ALL_ASSISTANT_MESSAGES the final trained run ends the rendering with a stop token;
    every earlier one ends with a stop token (a tool call's ``<|call|>``) or with ``<|end|>``,
    harmony's end of a message in history (the answer's ``<|return|>`` is stored that way)."""
    invariant = "stop-token-ends-turn"
    require_last_assistant(messages, invariant)
    tokens, weights = supervised(renderer, messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    stops = list(renderer.get_stop_sequences())
    (end_of_message,) = renderer.tokenizer.encode("<|end|>", add_special_tokens=False)
    runs = weighted_runs(weights)
    assert runs, f"[{invariant}] ALL_ASSISTANT_MESSAGES weights no token at all"
    *history, (_, last_end) = runs
    assert last_end == len(tokens) and tokens[-1] in stops, (
        f"[{invariant}] the final message's run does not end the rendering with a stop token "
        f"{stops}: {shown(renderer, tokens, last_end - 1)}"
    )
    for start, end in history:
        assert tokens[end - 1] in [*stops, end_of_message], (
            f"[{invariant}] trained run [{start}, {end}) in history ends with neither a stop "
            f"token {stops} nor <|end|>: {shown(renderer, tokens, end - 1)}"
        )


def _joined(content: Any, kind: str) -> str:
    key = "text" if kind == "text" else "thinking"
    if isinstance(content, str):
        return content if kind == "text" else ""
    return "".join(part[key] for part in content if part["type"] == kind)


def check_harmony_round_trip(renderer: Renderer, messages: list[Message]) -> None:
    """The trained tail of LAST_ASSISTANT_MESSAGE, cut after each stop token, parses piece by
    piece - each ending cleanly on its stop token - back to the message: the same tool calls,
    the same reasoning and the same text, where blank reasoning or text comes back as none."""
    invariant = "assistant-round-trip"
    require_last_assistant(messages, invariant)
    tokens, weights = supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    first = next((i for i, w in enumerate(weights) if w == 1), None)
    assert first is not None, f"[{invariant}] LAST_ASSISTANT_MESSAGE weights no token at all"
    assert all(w == 1 for w in weights[first:]), (
        f"[{invariant}] the trained tokens are not one contiguous tail from index {first}"
    )
    tail = tokens[first:]
    stops = set(renderer.get_stop_sequences())
    cuts = [i + 1 for i, token in enumerate(tail) if token in stops]
    assert cuts and cuts[-1] == len(tail), (
        f"[{invariant}] the trained tail does not end with a stop token: "
        f"{shown(renderer, tail, len(tail))}"
    )
    got: dict[str, Any] = {"thinking": "", "text": "", "calls": []}
    for start, end in zip([0, *cuts[:-1]], cuts, strict=True):
        piece = tail[start:end]
        parsed, termination = renderer.parse_response(piece)
        assert termination == ParseTermination.STOP_SEQUENCE, (
            f"[{invariant}] a reply piece ended with {termination!r}: {shown(renderer, piece, 0)}"
        )
        content = parsed["content"]
        if isinstance(content, str):
            # No non-blank message: the reference returns the decoded reply itself.
            decoded = str(renderer.tokenizer.decode(piece[:-1]))
            assert content == decoded, (
                f"[{invariant}] a reply piece without parts parsed to {content!r}, not to its "
                f"decoded text {decoded!r}"
            )
        else:
            got["thinking"] += _joined(content, "thinking")
            got["text"] += _joined(content, "text")
        got["calls"] += calls_of(parsed)
    original = messages[-1]["content"]
    thinking, text = _joined(original, "thinking"), _joined(original, "text")
    expected = {
        "thinking": thinking if thinking.strip() else "",
        "text": text if text.strip() else "",
        "calls": calls_of(messages[-1]),
    }
    for key, value in expected.items():
        assert got[key] == value, (
            f"[{invariant}] parsed {key} {got[key]!r} != rendered {value!r} (escaped: "
            f"{got[key]!a} != {value!a})"
        )


def check_split_by_user_turn(renderer: Renderer, messages: list[Message]) -> None:
    """``build_supervised_examples(ALL_ASSISTANT_MESSAGES)`` gives one example per user turn,
    ending where the next user message starts. In each, the generation prompt of every
    assistant message of the turn is a token prefix of the example (so each trained message
    follows the history it was sampled after), training starts right after one of those
    prompts, and the last trained token is a stop token."""
    invariant = "split-examples"
    require_last_assistant(messages, invariant)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    ends = [*users[1:], len(messages)]
    examples = renderer.build_supervised_examples(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    assert len(examples) == len(ends), (
        f"[{invariant}] {len(examples)} examples for {len(ends)} user turns"
    )
    stops = list(renderer.get_stop_sequences())
    start = 0
    for end, (model_input, weights) in zip(ends, examples, strict=True):
        tokens = model_input.to_ints()
        flat = [float(w) for w in np.asarray(weights).reshape(-1).tolist()]
        turn = [k for k in range(start, end) if messages[k]["role"] == "assistant"]
        start = end
        prompts = [renderer.build_generation_prompt(messages[:k]).to_ints() for k in turn]
        for k, prompt in zip(turn, prompts, strict=True):
            if tokens[: len(prompt)] != prompt:
                at = first_difference(prompt, tokens)
                raise AssertionError(
                    f"[{invariant}] the generation prompt of message {k} is not a prefix of its "
                    f"turn's example (differs at {at}): example {shown(renderer, tokens, at)} "
                    f"vs prompt {shown(renderer, prompt, at)}"
                )
        runs = weighted_runs(flat)
        if not turn:
            assert not runs, f"[{invariant}] a turn without assistant messages trains tokens"
            continue
        assert runs and runs[0][0] in {len(p) for p in prompts}, (
            f"[{invariant}] the example ending before message {end} starts training at "
            f"{runs[0][0] if runs else None}, not right after a generation prompt of its turn "
            f"(lengths {[len(p) for p in prompts]})"
        )
        assert tokens[runs[-1][1] - 1] in stops, (
            f"[{invariant}] the example ending before message {end} does not end its training "
            f"on a stop token: {shown(renderer, tokens, runs[-1][1] - 1)}"
        )


def _without_prefill(renderer: Renderer, prompt: list[int]) -> list[int] | None:
    """The prompt without its ``<think>\\n`` prefill; None when it has none."""
    prefill = renderer.tokenizer.encode("<think>\n", add_special_tokens=False)
    return prompt[: -len(prefill)] if prompt[-len(prefill) :] == prefill else None


def _think(renderer: Renderer) -> int:
    (think,) = renderer.tokenizer.encode("<think>", add_special_tokens=False)
    return think


def nemotron_opening(renderer: Renderer, tokens: list[int], first: int, prompt: list[int]) -> bool:
    """The untrained start is the prompt, or the prompt without its prefill followed by the
    closed ``<think></think>``, or by nothing when the trained tokens open with ``<think>``."""
    prefix = tokens[:first]
    base = _without_prefill(renderer, prompt)
    if prefix == prompt or base is None:
        return prefix == prompt
    closed = renderer.tokenizer.encode("<think></think>", add_special_tokens=False)
    return prefix == base + closed or (
        prefix == base and tokens[first : first + 1] == [_think(renderer)]
    )


def nemotron_starts(renderer: Renderer, tokens: list[int], prompt: list[int]) -> bool:
    """``tokens`` go on with the prompt, or with it up to its prefill and then the turn's own
    ``<think>`` (which opens ``<think></think>`` as well as inline reasoning)."""
    if tokens[: len(prompt)] == prompt:
        return True
    base = _without_prefill(renderer, prompt)
    return base is not None and tokens[: len(base) + 1] == [*base, _think(renderer)]


def check_round_trip_after_reasoning(renderer: Renderer, messages: list[Message]) -> None:
    """:func:`~cookbook.parity.invariants.check_assistant_round_trip`, where each text part
    right after a reasoning part may come back without its leading newlines."""
    try:
        check_assistant_round_trip(renderer, messages)
    except AssertionError:
        content = messages[-1]["content"] if messages else ""
        if isinstance(content, str):
            raise
        after_reasoning = [
            {**part, "text": part["text"].lstrip("\n")}
            if part["type"] == "text" and i and content[i - 1]["type"] == "thinking"
            else part
            for i, part in enumerate(content)
        ]
        if after_reasoning == content:
            raise
        check_assistant_round_trip(renderer, messages, expected=after_reasoning)


NEMOTRON_CHECKS: dict[str, Check] = {
    "assistant-round-trip": check_round_trip_after_reasoning,
    "prompt-prefix": partial(check_prompt_prefix, opens=nemotron_opening),
    "split-examples": partial(check_split_examples, opens=nemotron_opening),
    "extension-property": partial(check_extension_property, starts=nemotron_starts),
}
NEMOTRON_THINKING_RENDERERS = (
    "nemotron3",
    "nemotron3_low_thinking",
    "nemotron3_preserve_thinking",
    "nemotron3_ultra",
    "nemotron3_ultra_medium_thinking",
    "nemotron3_ultra_preserve_thinking",
)

HARMONY_CHECKS: dict[str, Check] = {
    "stop-token-ends-turn": check_harmony_stop_token_ends_turns,
    "assistant-round-trip": check_harmony_round_trip,
}

GPT_OSS_RENDERERS = (
    "gpt_oss_no_sysprompt",
    "gpt_oss_low_reasoning",
    "gpt_oss_medium_reasoning",
    "gpt_oss_high_reasoning",
)
KIMI_RENDERERS = (
    "kimi_k2",
    "kimi_k25",
    "kimi_k25_disable_thinking",
    "kimi_k26",
    "kimi_k26_disable_thinking",
    "kimi_k26_preserve_thinking",
)
RESTATED: dict[str, dict[str, Check]] = {
    **dict.fromkeys(GPT_OSS_RENDERERS, HARMONY_CHECKS),
    **{name: {"split-examples": check_split_by_user_turn} for name in KIMI_RENDERERS},
    **dict.fromkeys(NEMOTRON_THINKING_RENDERERS, NEMOTRON_CHECKS),
    "qwen3_vl": {"assistant-round-trip": check_round_trip_after_reasoning},
}
"""Registry name -> the invariants it keeps in a restated form."""


def checks_for(renderer: Renderer) -> dict[str, Check]:
    """Every invariant for this renderer: :data:`ALL_CHECKS`, with its restatements in place."""
    return {**ALL_CHECKS, **RESTATED.get(getattr(renderer, "_renderer_name", ""), {})}
