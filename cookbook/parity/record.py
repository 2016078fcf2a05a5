"""Render one case into the golden ``outputs`` record, with any renderer of the reference's API.

The same function renders with the reference (in the golden virtualenv) and with ours (in the
tests), so both sides are observed identically: ids, decoded text, weights, dtype, segments,
generation prompt, stop sequences and parse results. Exceptions are part of the behaviour: a
case the reference refuses is recorded as an error, and ours must refuse it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pydantic
import tinker

from cookbook.parity.images import IMAGE_PIECE, IMAGE_TOKEN, flat_ids

# A plain string works with both TrainOnWhat StrEnums (ours and the reference's).
LAST_ASSISTANT_MESSAGE = "last_assistant_message"

SegmentsFn = Callable[[list[dict[str, Any]], Any], list[dict[str, Any]] | None]
_Texts = dict[tuple[int, ...], str]


def rle(values: Sequence[float]) -> list[list[float | int]]:
    """Run-length encode weights as ``[[value, count], ...]`` (readable and compact)."""
    runs: list[list[float | int]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return runs


def unrle(runs: Sequence[Sequence[float | int]]) -> list[float]:
    return [float(value) for value, count in runs for _ in range(int(count))]


def error_record(exc: BaseException) -> dict[str, Any]:
    """Type, message and stdlib base classes of a refusal.

    ``builtin`` is the reference exception's first stdlib base: a port must raise an instance
    of it. ``bases`` lists every stdlib base, so the check works from names alone.
    """
    bases = [
        c.__name__
        for c in type(exc).__mro__
        if c.__module__ == "builtins" and c not in (BaseException, Exception, object)
    ] or ["Exception"]
    return {"type": type(exc).__name__, "builtin": bases[0], "bases": bases, "message": str(exc)}


def _guard(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return build()
    except Exception as exc:  # the failure itself is the recorded behaviour
        return {"error": error_record(exc)}


def with_tool_call_objects(
    messages: list[dict[str, Any]], tool_call_type: type[pydantic.BaseModel]
) -> list[dict[str, Any]]:
    """Spec messages hold tool calls as dicts; renderers expect their ``ToolCall`` models."""
    return [
        {**m, "tool_calls": [tool_call_type.model_validate(tc) for tc in m["tool_calls"]]}
        if "tool_calls" in m
        else m
        for m in messages
    ]


def _decode_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    if hasattr(tokenizer, "batch_decode"):
        return tokenizer.batch_decode([[i] for i in ids])
    return [tokenizer.decode([i]) for i in ids]  # tokenizers without one (tml-renderers')


def token_view(
    tokenizer: Any, ids: list[int], *, pieces: bool = True, texts: _Texts | None = None
) -> dict[str, Any]:
    """Ids, decoded text and (unless ``pieces`` is False) each token decoded on its own; an
    image's positions read :data:`IMAGE_PIECE` (once in the text, once per position in the
    pieces, which an image always has).

    The pieces are only read when showing tokens (diffs, the CLI's token view) but decoding them
    one by one is most of a view's cost, so a comparison can leave them out and add them with
    :func:`add_pieces` where ids differ. ``texts``: decoded texts by ids, kept by a caller
    that views the same ids more than once (the modes of a case mostly differ in weights
    only); decoding is a function of the ids."""
    if IMAGE_TOKEN not in ids:
        view = {"ids": ids, "text": _decode(tokenizer, ids, texts)}
        return add_pieces(tokenizer, view) if pieces else view
    text: list[str] = []
    piece_list: list[str] = []
    run: list[int] = []
    for position, token in enumerate([*ids, None]):
        if token is not None and token != IMAGE_TOKEN:
            run.append(token)
            continue
        if run:
            text.append(_decode(tokenizer, run, texts))
            piece_list += _decode_pieces(tokenizer, run)
            run = []
        if token == IMAGE_TOKEN:
            if position == 0 or ids[position - 1] != IMAGE_TOKEN:
                text.append(IMAGE_PIECE)
            piece_list.append(IMAGE_PIECE)
    return {"ids": ids, "text": "".join(text), "pieces": piece_list}


def _decode(tokenizer: Any, ids: list[int], texts: _Texts | None) -> str:
    if texts is None:
        return tokenizer.decode(ids)
    key = tuple(ids)
    if key not in texts:
        texts[key] = tokenizer.decode(ids)
    return texts[key]


def add_pieces(tokenizer: Any, view: dict[str, Any]) -> dict[str, Any]:
    """Fill a token view's ``pieces`` if it has ids and no pieces yet; returns the view."""
    if "ids" in view and "pieces" not in view:
        view["pieces"] = _decode_pieces(tokenizer, view["ids"])
    return view


def input_view(
    tokenizer: Any,
    model_input: tinker.ModelInput,
    *,
    pieces: bool = True,
    texts: _Texts | None = None,
) -> dict[str, Any]:
    """:func:`token_view` of a model input; with image chunks, also their ``images`` records."""
    ids, images = flat_ids(model_input)
    view = token_view(tokenizer, ids, pieces=pieces, texts=texts)
    if images:
        view["images"] = images
    return view


def jsonable(value: Any) -> Any:
    """Messages and their parts/tool calls as plain JSON values (pydantic models dumped)."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _dtype_name(weights: Any) -> str:
    return str(weights.dtype).removeprefix("torch.")


GPT_OSS_PINNED_DATE = "2025-08-05"  # gpt-oss release day; any fixed date would do
RENDERER_OPTIONS: dict[str, dict[str, Any]] = {
    f"gpt_oss_{effort}_reasoning": {"current_date": GPT_OSS_PINNED_DATE}
    for effort in ("low", "medium", "high")
}
"""Renderer name -> attributes set on both sides (reference and ours) before rendering, and
recorded in the golden as ``renderer.options``. Only for output that would otherwise depend on
the environment: gpt-oss's system prompt states today's date unless ``current_date`` is set."""


def apply_renderer_options(renderer: Any) -> dict[str, Any]:
    """Set the :data:`RENDERER_OPTIONS` of the renderer's registry name (stamped by both
    ``get_renderer``s) on it; returns them. Idempotent."""
    options = RENDERER_OPTIONS.get(getattr(renderer, "_renderer_name", ""), {})
    for name, value in options.items():
        setattr(renderer, name, value)
    return options


def render_outputs(
    renderer: Any,
    tokenizer: Any,
    messages: list[dict[str, Any]],
    train_on_what: Sequence[Any],
    segments_fn: SegmentsFn,
    *,
    pieces: bool = True,
) -> dict[str, Any]:
    """Everything a golden records about rendering ``messages`` (with the renderer's
    :data:`RENDERER_OPTIONS` applied first); without per-token ``pieces`` if told so."""
    apply_renderer_options(renderer)
    example = _once(lambda tow: renderer.build_supervised_example(messages, tow))
    segments = _once(lambda tow: segments_fn(messages, tow))
    texts: _Texts = {}

    def supervised(tow: Any) -> dict[str, Any]:
        model_input, weights = example(tow)
        return {
            **input_view(tokenizer, model_input, pieces=pieces, texts=texts),
            "weights": rle([float(w) for w in weights.tolist()]),
            "weights_dtype": _dtype_name(weights),
            "segments": segments(tow),
        }

    outputs: dict[str, Any] = {
        "stop_sequences": list(renderer.get_stop_sequences()),
        "generation_prompt": _guard(
            lambda: input_view(
                tokenizer, renderer.build_generation_prompt(messages), pieces=pieces, texts=texts
            )
        ),
        "supervised": {str(tow): _guard(lambda tow=tow: supervised(tow)) for tow in train_on_what},
        "parse_response": None,
    }
    if messages[-1]["role"] == "assistant":
        outputs["parse_response"] = _parse_records(renderer, tokenizer, messages, example, segments)
    return outputs


def _once(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``build`` memoised per TrainOnWhat (either side's enum, or its string), its exception
    raised again on each later call: within one case a renderer's output for a mode is
    computed once, and the parse records reuse the last-assistant-message example and
    segments that the supervised items made."""
    results: dict[str, tuple[bool, Any]] = {}

    def call(tow: Any) -> Any:
        key = str(tow)
        if key not in results:
            try:
                results[key] = (True, build(tow))
            except Exception as exc:  # recorded by the caller, as without the memo
                results[key] = (False, exc)
        ok, value = results[key]
        if not ok:
            raise value
        return value

    return call


def _parse_records(
    renderer: Any,
    tokenizer: Any,
    messages: list[dict[str, Any]],
    example: Callable[[Any], Any],
    segments: Callable[[Any], list[dict[str, Any]] | None],
) -> dict[str, Any]:
    """Parse what the model would have produced for the last message, in several endings.

    Always: ``complete`` (the trained reply) and ``truncated`` (its last token cut off). Where
    the tokenizer's EOS is not itself a stop token, a sampler can also end on EOS, which
    parse_response may treat as a termination of its own (role_colon's EOS): then
    ``stop_then_eos`` (EOS after the stop sequence) and, when the reply ends in a stop_overlap
    segment, ``eos_instead_of_stop`` (EOS where the stop sequence would begin). Where EOS is the
    stop token, ending on EOS is ending on the stop token, which ``complete`` already records.
    """

    def response_ids() -> list[int]:
        model_input, _ = example(LAST_ASSISTANT_MESSAGE)
        prompt = renderer.build_generation_prompt(messages[:-1])
        return flat_ids(model_input)[0][prompt.length :]

    def parse(ids: list[int]) -> dict[str, Any]:
        message, termination = renderer.parse_response(ids)
        return {"ids": ids, "message": jsonable(message), "termination": str(termination)}

    try:
        ids = response_ids()
    except Exception as exc:
        return {"error": error_record(exc)}
    records = {
        "complete": _guard(lambda: parse(ids)),
        "truncated": _guard(lambda: parse(ids[:-1])),
    }
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None or eos in renderer.get_stop_sequences():
        return records
    records["stop_then_eos"] = _guard(lambda: parse([*ids, eos]))
    overlap = _stop_overlap_length(segments(LAST_ASSISTANT_MESSAGE))
    if overlap:
        records["eos_instead_of_stop"] = _guard(lambda: parse([*ids[:-overlap], eos]))
    return records


def _stop_overlap_length(segments: list[dict[str, Any]] | None) -> int:
    """Tokens of the stop_overlap that ends the reply (given the last-assistant-message
    segments); 0 if none or the layout is unknown."""
    if not segments or segments[-1]["kind"] != "stop_overlap":
        return 0
    return segments[-1]["end"] - segments[-1]["start"]


def our_segments(renderer: Any) -> SegmentsFn:
    """Segment boundaries from our renderer's own assembly."""

    def segments(messages: list[dict[str, Any]], tow: Any) -> list[dict[str, Any]] | None:
        try:
            laid_out = renderer.supervised_segments(messages, tow)
        except NotImplementedError:  # renders whole conversations (tml_v0): no per-message parts
            return None
        out, start = [], 0
        for segment in laid_out:
            end = start + segment.chunk.length
            out.append(
                {
                    "message": segment.message_index,
                    "kind": str(segment.kind),
                    "start": start,
                    "end": end,
                }
            )
            start = end
        return out

    return segments


def _agreement(
    tokenizer: Any, rendered: dict[str, Any], templated: dict[str, Any], key: str
) -> dict[str, Any]:
    """One second-oracle item (:mod:`.chat_template`, :mod:`.harmony`, :mod:`.dsv4`): both
    sides, ids decoded for reading, and whether they agree (both refusing counts as agreeing)."""
    if key == "ids":
        for side in (rendered, templated):
            if "ids" in side:
                side["text"] = tokenizer.decode(side["ids"])
    if "error" in rendered or "error" in templated:
        agrees = "error" in rendered and "error" in templated
    else:
        agrees = rendered[key] == templated[key]
    return {"renderer": rendered, "template": templated, "agrees": agrees}


Conversation = list[dict[str, Any]]


def oracle_record(
    renderer: Any,
    tokenizer: Any,
    messages: Conversation,
    train_on_what: Any,
    *,
    setting: tuple[str, Any],
    messages_as: tuple[str, Callable[[Conversation], Any]],
    prompt_ids: Callable[[Conversation], list[int]],
    conversation: tuple[str, Callable[[Conversation], Any]],
) -> dict[str, Any]:
    """A second oracle's record of a case (:mod:`.chat_template`, :mod:`.harmony`,
    :mod:`.dsv4`): one shape, so the tests read all three alike.

    ``setting``: the oracle's options, first in the record under their name. ``messages``: the
    case as the oracle takes it (``messages_as``: its name and the conversion). ``generation``:
    ids of ``build_generation_prompt(prompt)`` against ``prompt_ids(prompt)``, ``prompt`` being
    the case less a final assistant message; None when nothing precedes it. ``supervised``
    (cases ending with an assistant message): ``build_supervised_example(messages,
    train_on_what)`` against ``conversation``'s value for the whole case, compared as
    ``conversation``'s key says: ``ids``, or ``text`` (the example decoded). A side that raises
    is recorded as an error; both refusing counts as agreement.
    """
    ends_with_reply = messages[-1]["role"] == "assistant"
    prompt = messages[:-1] if ends_with_reply else messages
    key, whole = conversation

    def generation() -> dict[str, Any]:
        rendered = _guard(lambda: {"ids": renderer.build_generation_prompt(prompt).to_ints()})
        return _agreement(tokenizer, rendered, _guard(lambda: {"ids": prompt_ids(prompt)}), "ids")

    def supervised() -> dict[str, Any]:
        def example() -> list[int] | str:
            ids = renderer.build_supervised_example(messages, train_on_what)[0].to_ints()
            return ids if key == "ids" else tokenizer.decode(ids)

        rendered = _guard(lambda: {key: example()})
        return _agreement(tokenizer, rendered, _guard(lambda: {key: whole(messages)}), key)

    name, convert = messages_as
    return {
        setting[0]: setting[1],
        "messages": _guard(lambda: {name: jsonable(convert(messages))}),
        "generation": generation() if prompt else None,
        "supervised": supervised() if ends_with_reply else None,
    }
