"""Renderer invariants: properties every chat renderer must keep, whatever its chat format.

Golden parity proves that a renderer matches the reference on the recorded cases; these checks
cover the space between the cases. Each one states a property that training and sampling rely
on (the loss mask lines up with the tokens, the supervised prompt is exactly what the sampler is
given, a sampled turn parses back to what was trained, ...), so a violation is a real bug even
where no golden would notice it.

Every check takes ``(renderer, messages)``, is written against the public renderer API only (so
it works for any renderer, ours or the reference's), and raises :class:`AssertionError` whose
message starts with ``[invariant-name]`` when the property is violated. A conversation the
property does not speak about (for instance one that does not end with an assistant message)
is a misuse and raises :class:`ValueError` instead, so a test can never pass vacuously by
feeding the wrong input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cookbook.parity.invariant_support import (
    calls_of,
    content_texts,
    count_occurrences,
    first_difference,
    normalized_content,
    primitive_root,
    require_last_assistant,
    shown,
    supervised,
    weighted_runs,
)
from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Message, ParseTermination, TrainOnWhat

# Every mode whose weights are determined by the conversation alone; CUSTOMIZED needs a
# ``trainable`` flag on every message (and refuses one otherwise), so it is left out.
NON_CUSTOM_TRAIN_ON_WHAT: tuple[TrainOnWhat, ...] = tuple(
    tow for tow in TrainOnWhat if tow != TrainOnWhat.CUSTOMIZED
)

Check = Callable[[Renderer, list[Message]], None]
Opening = Callable[[Renderer, list[int], int, list[int]], bool]
"""``opens(renderer, tokens, first, prompt)``: whether ``tokens[:first]``, the untrained start
of an example, opens the turn that the generation prompt ``prompt`` samples."""
Starts = Callable[[Renderer, list[int], list[int]], bool]
"""``starts(renderer, tokens, prompt)``: whether ``tokens`` go on as ``prompt`` opens a turn."""


def exact_opening(_renderer: Renderer, tokens: list[int], first: int, prompt: list[int]) -> bool:
    return tokens[:first] == prompt


def starts_with_prompt(_renderer: Renderer, tokens: list[int], prompt: list[int]) -> bool:
    return tokens[: len(prompt)] == prompt


def _modes(renderer: Renderer) -> tuple[TrainOnWhat, ...]:
    """The non-CUSTOMIZED modes the renderer renders at all (tml_v0 refuses the others)."""
    supported = getattr(renderer, "supported_train_on_what", NON_CUSTOM_TRAIN_ON_WHAT)
    return tuple(tow for tow in NON_CUSTOM_TRAIN_ON_WHAT if tow in supported)


# -- invariants ---------------------------------------------------------------------------------


def check_weights_length(renderer: Renderer, messages: list[Message]) -> None:
    """One weight per token, in every mode: the loss is applied position by position, so a
    mask that is even one longer or shorter silently trains on the wrong tokens."""
    for tow in _modes(renderer):
        tokens, weights = supervised(renderer, messages, tow)
        assert len(weights) == len(tokens), (
            f"[weights-length] {tow}: {len(weights)} weights for {len(tokens)} tokens"
        )


def check_weights_binary(renderer: Renderer, messages: list[Message]) -> None:
    """Weights are 0 or 1 in every mode: they are a mask, not a scale; anything else would
    change the loss magnitude behind the user's back."""
    for tow in _modes(renderer):
        _, weights = supervised(renderer, messages, tow)
        stray = sorted({w for w in weights if w not in (0.0, 1.0)})
        assert not stray, f"[binary-weights] {tow}: weights outside {{0, 1}}: {stray}"


def check_prompt_prefix(
    renderer: Renderer, messages: list[Message], opens: Opening = exact_opening
) -> None:
    """Under LAST_ASSISTANT_MESSAGE everything before the first trained token is exactly the
    generation prompt for ``messages[:-1]``, unweighted: training conditions the model on the
    very tokens the sampler will later give it, and never trains on that prompt."""
    invariant = "prompt-prefix"
    require_last_assistant(messages, invariant)
    tokens, weights = supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    first = next((i for i, w in enumerate(weights) if w == 1), None)
    assert first is not None, f"[{invariant}] LAST_ASSISTANT_MESSAGE weights no token at all"
    prompt = renderer.build_generation_prompt(messages[:-1]).to_ints()
    prefix = tokens[:first]
    if not opens(renderer, tokens, first, prompt):
        at = first_difference(prompt, prefix)
        raise AssertionError(
            f"[{invariant}] the {len(prefix)} tokens before the first trained token differ from "
            f"the {len(prompt)}-token generation prompt of messages[:-1] at index {at}: "
            f"supervised {shown(renderer, prefix, at)} vs prompt {shown(renderer, prompt, at)}"
        )
    nonzero = [i for i in range(first) if weights[i] != 0]
    assert not nonzero, f"[{invariant}] prompt positions carry weight: {nonzero[:10]}"


def check_all_assistant_superset(renderer: Renderer, messages: list[Message]) -> None:
    """ALL_ASSISTANT_MESSAGES trains on at least what LAST_ASSISTANT_MESSAGE does: widening
    the selection of messages must never drop a token that the narrower one trains."""
    invariant = "all-assistant-superset"
    require_last_assistant(messages, invariant)
    last_tokens, last_weights = supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    all_tokens, all_weights = supervised(renderer, messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    if last_tokens != all_tokens:
        at = first_difference(last_tokens, all_tokens)
        raise AssertionError(
            f"[{invariant}] the two modes render different tokens (from index {at}), so their "
            f"weights cannot be compared: {shown(renderer, last_tokens, at)} vs "
            f"{shown(renderer, all_tokens, at)}"
        )
    last_set = {i for i, w in enumerate(last_weights) if w == 1}
    all_set = {i for i, w in enumerate(all_weights) if w == 1}
    missing = sorted(last_set - all_set)
    if missing:
        raise AssertionError(
            f"[{invariant}] {len(missing)} positions trained under LAST_ASSISTANT_MESSAGE are "
            f"not trained under ALL_ASSISTANT_MESSAGES, first at "
            f"{shown(renderer, all_tokens, missing[0])}"
        )


def _parseable_contents(renderer: Renderer, content: Any) -> list[Any]:
    """The contents a clean parse may give back for ``content``, most faithful first.

    Two losses are not the renderer's to prevent, and the reference has both:

    * the tokenizer's own normalization - text is compared as the tokenizer gives it back
      (Qwen3.5's tokenizer.json applies NFC, so NFD content comes back composed; Llama 3's has no
      normalizer and returns every string unchanged);
    * with a *string* stop sequence, its leading whitespace (the ``"\n\n"`` of
      ``"\n\nUser:"``) is also the separator rendered after every message. The reference's
      role_colon parse splits on the stop string and then strips that separator once more, so
      content that itself ends with it comes back with one copy fewer. Exactly one copy: a parse
      that strips more, or strips other whitespace, still fails.
    """
    content = normalized_content(content)
    if not isinstance(content, str):
        return [content]
    tokenizer = renderer.tokenizer
    carried = str(tokenizer.decode(tokenizer.encode(content, add_special_tokens=False)))
    accepted = [carried]
    for stop in renderer.get_stop_sequences():
        if isinstance(stop, str):
            separator = stop[: len(stop) - len(stop.lstrip())]
            if separator and carried.endswith(separator):
                accepted.append(carried.removesuffix(separator))
    return accepted


def _renders_alike(
    renderer: Renderer, messages: list[Message], expected: Any, parsed: Message, got: Any
) -> bool:
    """Whether the last message renders the same tokens with content ``expected`` (and its own
    tool calls) as with the parsed ``got`` (and the parsed tool calls)."""

    def render(content: Any, source: Message) -> list[int]:
        replacement = Message(role=messages[-1]["role"], content=content)
        if "tool_calls" in source:
            replacement["tool_calls"] = source["tool_calls"]
        conversation = [*messages[:-1], replacement]
        return supervised(renderer, conversation, TrainOnWhat.LAST_ASSISTANT_MESSAGE)[0]

    return render(got, parsed) == render(expected, messages[-1])


def _without_call_separators(content: Any) -> Any:
    """Content of a message with tool calls, less the whitespace at the edges of its text and
    its whitespace-only text parts. The reference's parsers do not keep it: Qwen's keeps the
    text between blocks as content, so the newline written before and between calls comes
    back as trailing newlines or a part of its own (indistinguishable from newlines the text
    ended with, while the produced turn's framing drops leading ones), and DeepSeek's strips
    the text around its tool-call section."""
    if isinstance(content, str):
        return content.strip()
    kept = [p for p in content if p.get("type") != "text" or p["text"].strip()]
    texts = [i for i, p in enumerate(kept) if p.get("type") == "text"]
    for i in texts[:1] + texts[-1:]:
        kept[i] = {**kept[i], "text": kept[i]["text"].strip()}
    return normalized_content(kept) if kept else ""


def check_assistant_round_trip(
    renderer: Renderer, messages: list[Message], expected: Any = None
) -> None:
    """The trained tail of LAST_ASSISTANT_MESSAGE is what the model learns to sample; parsing
    it must give back the assistant content and tool calls, cleanly ended by a stop sequence.
    Otherwise a perfectly trained model would still produce something other than its target.

    "The content" allows for the two losses :func:`_parseable_contents` describes, for the
    whitespace around tool calls (:func:`_without_call_separators`), and for what a chat format
    never writes: Qwen's templates strip the newlines at the start of a produced turn (Qwen3.5
    trims all its whitespace), DeepSeek's non-thinking mode drops reasoning. There the parsed
    content must still render exactly the tokens the original did - what a sampler storing the
    parsed reply in history relies on - so nothing the rendering shows can be lost.
    ``expected`` replaces the last message's content as what must come back (a restatement's
    content where its format loses more, see cookbook.parity.restated)."""
    invariant = "assistant-round-trip"
    require_last_assistant(messages, invariant)
    tokens, weights = supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    first = next((i for i, w in enumerate(weights) if w == 1), None)
    assert first is not None, f"[{invariant}] LAST_ASSISTANT_MESSAGE weights no token at all"
    tail_weights = weights[first:]
    assert all(w == 1 for w in tail_weights), (
        f"[{invariant}] the trained tokens are not one contiguous tail: weights from index "
        f"{first} are {tail_weights}"
    )
    tail = tokens[first:]
    parsed, termination = renderer.parse_response(tail)
    if expected is None:
        expected = messages[-1]["content"]
    assert termination == ParseTermination.STOP_SEQUENCE, (
        f"[{invariant}] parse_response ended with {termination!r}, not a stop sequence, on "
        f"{shown(renderer, tail, len(tail))}"
    )
    got = normalized_content(parsed["content"])
    if messages[-1].get("tool_calls"):
        got, expected = _without_call_separators(got), _without_call_separators(expected)
    accepted = _parseable_contents(renderer, expected)
    assert got in accepted or _renders_alike(renderer, messages, expected, parsed, got), (
        f"[{invariant}] parsed content {got!r} != rendered content {expected!r} (accepted: "
        f"{accepted!r}, or any content rendering the same tokens; escaped, to show normal forms "
        f"and invisible characters: {got!a} not in {accepted!a})"
    )
    assert calls_of(parsed) == calls_of(messages[-1]), (
        f"[{invariant}] parsed tool calls {calls_of(parsed)} != rendered {calls_of(messages[-1])}"
    )


def _stop_string_closes_run(text_from_run: str, run_length: int, stops: list[str]) -> bool:
    """The first stop string in ``text_from_run`` starts inside the run and reaches its end."""
    found = [(i, len(s)) for s in stops if (i := text_from_run.find(s)) >= 0]
    if not found:
        return False
    at, length = min(found)
    return at < run_length <= at + length


def check_stop_token_ends_turns(renderer: Renderer, messages: list[Message]) -> None:
    """Every trained assistant turn under ALL_ASSISTANT_MESSAGES ends with a stop sequence:
    a model that never trains on the stop sequence never learns to stop.

    Stop *tokens*: the last token of every trained run is one of them.

    Stop *strings* (role_colon's ``"\n\nUser:"``): a string stop sequence is text that the
    rest of the conversation completes, so it need not lie inside the run. For an earlier
    assistant message the run ends with ``"\n\n"`` and the untrained ``"User:"`` header of the
    next message completes the string (only the last message carries a trained stop_overlap).
    The property is therefore about the text from the run's start on: the first stop string in
    it must begin inside the run (the model learns to start stopping, and does not stop early on
    a stop string inside its own content) and must reach the run's end (nothing trained follows
    it). For the last message nothing follows the run, so the whole string must be trained.
    """
    invariant = "stop-token-ends-turn"
    require_last_assistant(messages, invariant)
    tokens, weights = supervised(renderer, messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    stops = list(renderer.get_stop_sequences())
    runs = weighted_runs(weights)
    assert runs, f"[{invariant}] ALL_ASSISTANT_MESSAGES weights no token at all"
    for start, end in runs:
        if all(isinstance(s, int) for s in stops):
            ok = tokens[end - 1] in stops
        else:
            decode = renderer.tokenizer.decode
            run_length = len(decode(tokens[start:end]))
            ok = _stop_string_closes_run(
                decode(tokens[start:]), run_length, [str(s) for s in stops]
            )
        assert ok, (
            f"[{invariant}] trained run [{start}, {end}) is not closed by a stop sequence "
            f"{stops}: {shown(renderer, tokens, end - 1)}"
        )


def check_single_bos(renderer: Renderer, messages: list[Message]) -> None:
    """The BOS sequence opens every rendering exactly once: a doubled BOS (renderer plus
    tokenizer both adding one, or one per message) is a distribution shift the model never saw
    in pretraining. BOS tokens later in the sequence are allowed only where the message text
    itself contains the BOS literal, since the tokenizer turns such literals into the special
    token (reference behaviour, see tests/test_invariants.py)."""
    invariant = "single-bos"
    declared = list(renderer._bos_tokens)
    if not declared:  # a format without BOS cannot double it
        return
    # The declared sequence itself may be the bug (``_bos_tokens`` returning BOS twice), so
    # count in its shortest repeating unit: [BOS, BOS] is BOS twice, not one long BOS.
    bos = primitive_root(declared)
    literal = renderer.tokenizer.decode(bos)
    in_text = sum(text.count(literal) for m in messages for text in content_texts(m["content"]))
    renderings = {
        "supervised": supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)[0],
        "generation prompt": renderer.build_generation_prompt(messages).to_ints(),
    }
    n = len(bos)
    for name, tokens in renderings.items():
        assert tokens[:n] == bos, (
            f"[{invariant}] {name} does not start with BOS {bos}: {shown(renderer, tokens, 0)}"
        )
        assert tokens[n : 2 * n] != bos, (
            f"[{invariant}] {name} starts with BOS twice in a row: {shown(renderer, tokens, n)}"
        )
        count = count_occurrences(tokens, bos)
        assert count <= 1 + in_text, (
            f"[{invariant}] {name} holds BOS {count} times, but only 1 plus {in_text} literal "
            f"{literal!r} in the message text can account for"
        )


def check_extension_property(
    renderer: Renderer, messages: list[Message], starts: Starts = starts_with_prompt
) -> None:
    """If the renderer claims the extension property, the generation prompt before each
    assistant message is a token prefix of the full rendering. That is what lets a whole
    multi-turn conversation train as one example (and share a KV cache when sampling); a
    renderer that claims it wrongly trains every earlier turn on a prompt it never sees."""
    invariant = "extension-property"
    if not renderer.has_extension_property:  # nothing is claimed, nothing to check
        return
    full = supervised(renderer, messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)[0]
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = renderer.build_generation_prompt(messages[:k]).to_ints()
        if not starts(renderer, full, prompt):
            at = first_difference(prompt, full)
            raise AssertionError(
                f"[{invariant}] the generation prompt before message {k} is not a prefix of "
                f"the full rendering (differs at index {at}): prompt "
                f"{shown(renderer, prompt, at)} vs full {shown(renderer, full, at)}"
            )


def check_split_examples(
    renderer: Renderer, messages: list[Message], opens: Opening = exact_opening
) -> None:
    """Without the extension property, the property that holds instead: each example of
    ``build_supervised_examples(ALL_ASSISTANT_MESSAGES)`` trains one assistant message, after
    exactly the generation prompt that message is sampled from. A renderer that writes history
    differently from the produced turn (Qwen3 strips earlier reasoning) cannot train every turn
    in one sequence; splitting is what keeps each turn's context true."""
    invariant = "split-examples"
    require_last_assistant(messages, invariant)
    if renderer.has_extension_property:  # one example, held to the extension property instead
        return
    examples = renderer.build_supervised_examples(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    targets = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    assert len(examples) == len(targets), (
        f"[{invariant}] {len(examples)} examples for {len(targets)} assistant messages"
    )
    for index, (model_input, weights) in zip(targets, examples, strict=True):
        tokens = model_input.to_ints()
        flat = [float(w) for w in np.asarray(weights).reshape(-1).tolist()]
        first = next((i for i, w in enumerate(flat) if w == 1), len(flat))
        prompt = renderer.build_generation_prompt(messages[:index]).to_ints()
        if not opens(renderer, tokens, first, prompt) or any(w != 1 for w in flat[first:]):
            at = first_difference(prompt, tokens)
            raise AssertionError(
                f"[{invariant}] the example for message {index} does not train exactly what "
                f"follows its generation prompt (differs at index {at}): example "
                f"{shown(renderer, tokens, at)} vs prompt {shown(renderer, prompt, at)}"
            )


ALL_CHECKS: dict[str, Check] = {
    "weights-length": check_weights_length,
    "binary-weights": check_weights_binary,
    "prompt-prefix": check_prompt_prefix,
    "all-assistant-superset": check_all_assistant_superset,
    "assistant-round-trip": check_assistant_round_trip,
    "stop-token-ends-turn": check_stop_token_ends_turns,
    "single-bos": check_single_bos,
    "extension-property": check_extension_property,
    "split-examples": check_split_examples,
}
"""Invariant name -> check; the name is also the ``[tag]`` its AssertionError starts with."""


def check_all(renderer: Renderer, messages: list[Message]) -> None:
    """Run every check; the first violation raises."""
    for check in ALL_CHECKS.values():
        check(renderer, messages)
