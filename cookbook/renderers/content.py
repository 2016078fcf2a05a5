"""Message-content helpers of ``tinker_cookbook.renderers.base``, for code that works with
parsed replies: the text of a reply without its reasoning, content as one readable string,
JSON-ready messages, and the typed view of a parse failure."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from cookbook.exceptions import RendererError
from cookbook.renderers.parsing import PARSE_FAILURE_DETAIL_MAX_CHARS
from cookbook.renderers.types import Content, ContentPart, Message, ParseTermination, TextPart


def ensure_list(content: Content) -> list[ContentPart]:
    """Content as a list of parts; a string becomes one TextPart."""
    if isinstance(content, str):
        return [TextPart(type="text", text=content)]
    return content


def get_text_content(message: Message) -> str:
    """The reply's visible text: TextParts joined, reasoning left out."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def thinking_and_text(parts: list[ContentPart], renderer: str) -> tuple[list[str], list[str]]:
    """The thinking and the text of an assistant message's parts, each in order, for renderers
    that write the two apart; any other part (an image) is an error naming ``renderer``, which
    has no way to write it."""
    thinking, text = [], []
    for part in parts:
        if part["type"] == "thinking":
            thinking.append(part["thinking"])
        elif part["type"] == "text":
            text.append(part["text"])
        else:
            message = f"{renderer} renderer does not support {part['type']!r} content parts"
            raise RendererError(message)
    return thinking, text


def _image_label(image: Any) -> str:
    if isinstance(image, str):
        return image
    width, height = image.size
    return f"Image({width}x{height}, {image.mode})"


def format_content_as_string(content: Content, separator: str = "\n") -> str:
    """Every part as readable text (``<think>..</think>``, ``<image>..</image>``), for logs
    and string-only APIs; an unknown part type is a RendererError."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if part["type"] == "thinking":
            pieces.append(f"<think>{part['thinking']}</think>")
        elif part["type"] == "text":
            pieces.append(part["text"])
        elif part["type"] == "image":
            pieces.append(f"<image>{_image_label(part['image'])}</image>")
        else:
            raise RendererError(f"Unknown content part type: {part['type']}")
    return separator.join(pieces)


def content_to_jsonable(content: Content) -> str | list[dict[str, Any]]:
    """Content ``json.dumps`` accepts; an in-memory image keeps only its type."""
    if isinstance(content, str):
        return content
    result: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "text":
            result.append({"type": "text", "text": part["text"]})
        elif part["type"] == "thinking":
            result.append({"type": "thinking", "thinking": part["thinking"]})
        elif part["type"] == "image":
            image = part["image"]
            result.append({"type": "image", **({"image": image} if isinstance(image, str) else {})})
        else:
            raise RendererError(f"Unknown content part type: {part['type']}")
    return result


_OPTIONAL_FIELDS = ("trainable", "tool_call_id", "name")


def message_to_jsonable(message: Message) -> dict[str, Any]:
    """A message ``json.dumps`` accepts, every optional field kept."""
    result: dict[str, Any] = {
        "role": message["role"],
        "content": content_to_jsonable(message["content"]),
    }
    for key in ("tool_calls", "unparsed_tool_calls"):
        if key in message:
            result[key] = [call.model_dump(mode="json") for call in message[key]]
    for key in _OPTIONAL_FIELDS:
        if key in message:
            result[key] = message[key]
    return result


class ParseFailureKind(StrEnum):
    """Broken framing (not recoverable in the episode) vs unparsable content in a clean turn
    (the model can be asked again)."""

    STRUCTURAL = "structural"
    CONTENT = "content"


def classify_parse_failure(
    message: Message, termination: ParseTermination
) -> tuple[ParseFailureKind, str] | None:
    """One view over ``parse_response``'s two failure signals; None when the reply is clean.

    A structural failure wins over content failures in the same reply.
    """
    if not termination.is_clean:
        return (
            ParseFailureKind.STRUCTURAL,
            "response did not terminate cleanly "
            f"(termination={termination.value}): expected the renderer's stop signal "
            "or EOS, so the message framing is broken",
        )
    unparsed = message.get("unparsed_tool_calls") or []
    if unparsed:
        detail = "\n".join(call.error for call in unparsed)
        return ParseFailureKind.CONTENT, detail[:PARSE_FAILURE_DETAIL_MAX_CHARS]
    return None
