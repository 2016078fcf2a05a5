"""Message and rendering types, shaped exactly like ``tinker_cookbook.renderers.base``.

Messages stay plain ``TypedDict``s (dicts at run time) so conversations loaded from JSON or YAML
can be passed straight in, as with the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import pydantic
import tinker

from cookbook.exceptions import RendererError

# A supervised example as build_supervised_example returns it: the input and its token weights.
Example = tuple[tinker.ModelInput, np.ndarray]

Role = str


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ThinkingPart(TypedDict):
    type: Literal["thinking"]
    thinking: str


class ImagePart(TypedDict):
    type: Literal["image"]
    image: str


class AudioPart(TypedDict):
    """Input audio: encoded bytes, a base64 ``data:`` URI or a local path (only the tml_v0
    renderer reads it). MP3 and FLAC need ``num_frames`` and ``sample_rate``; WAV has them in
    its header."""

    type: Literal["audio"]
    audio: str | bytes
    format: NotRequired[Literal["wav", "mp3", "flac"]]
    num_frames: NotRequired[int]
    sample_rate: NotRequired[int]


ContentPart = TextPart | ThinkingPart | ImagePart | AudioPart
Content = str | list[ContentPart]


class _StrictBase(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ToolCall(_StrictBase):
    """A structured tool invocation (OpenAI format); ``arguments`` is a JSON *string*."""

    class FunctionBody(pydantic.BaseModel):
        name: str
        arguments: str

    type: Literal["function"] = "function"
    id: str | None = None
    function: FunctionBody


class UnparsedToolCall(_StrictBase):
    """Model output that looked like a tool call but did not parse; kept for debugging."""

    raw_text: str
    error: str


class ToolSpec(TypedDict):
    """A tool the model may call, in the OpenAI function format (``parameters``: JSON Schema)."""

    name: str
    description: str
    parameters: dict


class Message(TypedDict):
    role: Role
    content: Content
    tool_calls: NotRequired[list[ToolCall]]
    unparsed_tool_calls: NotRequired[list[UnparsedToolCall]]
    trainable: NotRequired[bool]
    tool_call_id: NotRequired[str]
    name: NotRequired[str]


class ParseTermination(StrEnum):
    """How a sampled response ended, as ``parse_response`` observed it."""

    STOP_SEQUENCE = "stop_sequence"
    EOS = "eos"
    MALFORMED = "malformed"

    @property
    def is_clean(self) -> bool:
        return self != ParseTermination.MALFORMED

    @property
    def is_stop_sequence(self) -> bool:
        return self == ParseTermination.STOP_SEQUENCE


class TrainOnWhat(StrEnum):
    """Which tokens carry loss; values are the reference's, string for string."""

    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


@dataclass
class RenderContext:
    """Where a message sits in its conversation; same fields and defaults as the reference."""

    idx: int
    is_last: bool
    prev_message: Message | None = None
    next_message: Message | None = None
    last_user_index: int = -1
    in_last_assistant_turn: bool = False


@dataclass(frozen=True)
class RenderedMessage:
    """A message split for loss masking: header (context), output (trained), stop_overlap."""

    output: list[tinker.ModelInputChunk]
    header: tinker.EncodedTextChunk | None = None
    stop_overlap: tinker.EncodedTextChunk | None = None

    def __init__(
        self,
        output: list[tinker.ModelInputChunk],
        header: tinker.EncodedTextChunk | None = None,
        stop_overlap: tinker.EncodedTextChunk | None = None,
    ):
        """The generated frozen ``__init__`` with its three ``object.__setattr__`` calls was
        the costliest object of a rendered message (one per message); the instance dict is
        written directly instead (``dataclass`` keeps an ``__init__`` the class defines)."""
        fields = self.__dict__
        fields["output"] = output
        fields["header"] = header
        fields["stop_overlap"] = stop_overlap


def _unvalidated_constructor(cls: type[pydantic.BaseModel], field: str, probe: Any) -> Callable:
    """The fastest way to make a ``cls`` (a tinker model of one required field) equal to a
    validated one: ``construct(value)`` == ``cls(**{field: value})``.

    Why: validating ``EncodedTextChunk.tokens`` (a ``Sequence[int]``, checked item by item in
    Python) was the largest cost of rendering after the encode itself, and ``model_construct``
    a large part of what was left. The renderers' values come straight from the tokenizer or
    are chunks already, so there is nothing to validate. Filling the instance's slots directly
    is 3x cheaper than ``model_construct``; it is used only if the result is indistinguishable
    from ``model_construct``'s (same dict, fields set and private state) with the installed
    pydantic.
    """
    reference = cls.model_construct(**{field: probe})
    state = {
        name: getattr(reference, name)
        for name in ("__pydantic_extra__", "__pydantic_private__")
        if hasattr(reference, name)
    }
    fields_set = reference.model_fields_set
    template = dict(reference.__dict__)
    extra = state.get("__pydantic_extra__")
    private = state.get("__pydantic_private__")
    new = object.__new__
    # The instance layout's own setters, looked up once: ``object.__setattr__`` finds the same
    # descriptor by name on every call (a quarter of the cost of a chunk).
    slots = {name: _slot_setter(cls, name) for name in _INSTANCE_SLOTS}
    if None in slots.values():
        return lambda value: cls.model_construct(**{field: value})
    set_dict, set_fields, set_extra, set_private = slots.values()

    def construct(value: Any) -> Any:
        instance = new(cls)
        values = template.copy()
        values[field] = value
        set_dict(instance, values)
        set_fields(instance, set(fields_set))
        set_extra(instance, extra)
        set_private(instance, private)
        return instance

    built = construct(probe)
    same = (
        set(state) == {"__pydantic_extra__", "__pydantic_private__"}
        and built.__dict__ == reference.__dict__
        and list(built.__dict__) == list(reference.__dict__)
        and built.model_fields_set == fields_set
        and all(getattr(built, name) == value for name, value in state.items())
        and built == cls(**{field: probe})
    )
    return construct if same else lambda value: cls.model_construct(**{field: value})


# What a pydantic instance holds outside its fields; construct sets each, as model_construct does.
_INSTANCE_SLOTS = (
    "__dict__",
    "__pydantic_fields_set__",
    "__pydantic_extra__",
    "__pydantic_private__",
)


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None] | None:
    """The ``__set__`` of the data descriptor that ``object.__setattr__(instance, name, ...)``
    would use for a ``cls`` instance, or None if there is none (then the caller falls back)."""
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            setter = getattr(type(descriptor), "__set__", None)
            return None if setter is None else descriptor.__set__
    return None


text_chunk: Callable[[list[int]], tinker.EncodedTextChunk] = _unvalidated_constructor(
    tinker.EncodedTextChunk, "tokens", [0]
)
"""``tinker.EncodedTextChunk(tokens=tokens)`` without validation, for token lists a tokenizer
produced (ints, fresh lists: the chunk keeps the list itself, it does not copy it)."""

model_input: Callable[[list[tinker.ModelInputChunk]], tinker.ModelInput] = _unvalidated_constructor(
    tinker.ModelInput, "chunks", []
)
"""``tinker.ModelInput(chunks=chunks)`` without validation, for a list of chunks (kept, not
copied)."""


def ensure_text(content: Content) -> str:
    """Text of text-only content; multimodal content is a :class:`RendererError`."""
    if isinstance(content, str):
        return content
    if len(content) == 1 and content[0]["type"] == "text":
        return content[0]["text"]
    raise RendererError(f"Expected text content, got multimodal content with {len(content)} parts")
