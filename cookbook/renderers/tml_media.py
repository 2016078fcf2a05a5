"""Cookbook messages in the OpenAI shape ``tml_renderers`` reads (for the ``tml_v0`` renderer).

Images become inline ``image_url`` data URIs (tml_renderers counts their tokens itself), audio
becomes inline base64 ``input_audio``, and tool calls plain dicts; message count and order are
kept. Remote URLs are refused for both: the renderer never fetches anything.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cookbook.image_processing_utils import image_to_data_uri
from cookbook.renderers.types import AudioPart, Message

_AUDIO_FORMAT_BY_MIME = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
}
_SUPPORTED_AUDIO_FORMATS = ("wav", "mp3", "flac")


def jsonable_message(message: Message | Mapping[str, Any]) -> Mapping[str, Any]:
    """The message with its (unparsed) tool calls as plain dicts."""
    if not isinstance(message, dict):
        return message
    result: dict[str, Any] = dict(message)
    for key in ("tool_calls", "unparsed_tool_calls"):
        if key in result:
            result[key] = [
                item.model_dump(mode="json") if hasattr(item, "model_dump") else item
                for item in result[key]
            ]
    return result


def _decode_audio_data_uri(source: str, explicit_format: str | None) -> tuple[bytes, str]:
    header, separator, payload = source.partition(",")
    if not separator:
        raise ValueError("audio data URI must contain a comma-separated payload")
    if ";base64" not in header.lower():
        raise ValueError("audio data URI must use base64 encoding")
    mime = header[5:].split(";", 1)[0].lower()
    inferred = _AUDIO_FORMAT_BY_MIME.get(mime)
    if explicit_format and inferred and explicit_format != inferred:
        raise ValueError(
            f"AudioPart.format {explicit_format!r} disagrees with data URI MIME type {mime!r}"
        )
    audio_format = explicit_format or inferred
    if audio_format is None:
        raise ValueError(
            f"cannot infer audio format from data URI MIME type {mime!r}; "
            "set AudioPart.format explicitly"
        )
    try:
        return base64.b64decode(payload, validate=True), audio_format
    except ValueError as exc:
        raise ValueError("audio data URI payload is not valid base64") from exc


def _read_local_audio(source: str, explicit_format: str | None) -> tuple[bytes, str]:
    parsed = urlparse(source)
    if parsed.scheme == "":
        path = Path(source).expanduser()
    elif parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        path = Path(unquote(parsed.path)).expanduser()
    else:
        raise ValueError(
            f"tml_v0 does not fetch remote audio URLs (scheme {parsed.scheme!r}); "
            "provide encoded bytes, a local path, or a base64 data: URI"
        )
    suffix = path.suffix.lower().removeprefix(".")
    audio_format = explicit_format or {"wave": "wav", "mpeg": "mp3"}.get(suffix, suffix)
    if not audio_format:
        raise ValueError(f"cannot infer audio format from path {str(path)!r}; set AudioPart.format")
    return path.read_bytes(), audio_format


def audio_part_to_openai(part: AudioPart) -> dict[str, Any]:
    """An ``AudioPart`` as OpenAI's inline ``input_audio`` part (bytes are taken as WAV)."""
    source, explicit_format = part["audio"], part.get("format")
    if isinstance(source, bytes):
        raw, audio_format = source, explicit_format or "wav"
    elif isinstance(source, str) and source.startswith("data:"):
        raw, audio_format = _decode_audio_data_uri(source, explicit_format)
    elif isinstance(source, str):
        raw, audio_format = _read_local_audio(source, explicit_format)
    else:
        raise TypeError(f"audio must be bytes or str; got {type(source)!r}")
    if audio_format not in _SUPPORTED_AUDIO_FORMATS:
        raise ValueError(
            f"unsupported audio format {audio_format!r}; expected 'wav', 'mp3', or 'flac'"
        )
    audio: dict[str, Any] = {"data": base64.b64encode(raw).decode("ascii"), "format": audio_format}
    has_frames, has_rate = "num_frames" in part, "sample_rate" in part
    if has_frames != has_rate:
        raise ValueError("AudioPart must provide num_frames and sample_rate together")
    if audio_format != "wav" and not has_frames:
        raise ValueError(f"{audio_format} AudioPart must provide num_frames and sample_rate")
    if has_frames:
        if part["num_frames"] <= 0 or part["sample_rate"] <= 0:
            raise ValueError("AudioPart num_frames and sample_rate must be positive")
        audio.update(num_frames=part["num_frames"], sample_rate=part["sample_rate"])
    return {"type": "input_audio", "input_audio": audio}


def normalize_cookbook_media(messages: Sequence[Message]) -> Sequence[Mapping[str, Any]]:
    """Messages with image and audio parts rewritten to OpenAI content parts."""
    if not isinstance(messages, list):
        return messages
    normalized: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            normalized.append(jsonable_message(message))
            continue
        parts: list[Any] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                parts.append(
                    {"type": "image_url", "image_url": {"url": image_to_data_uri(part["image"])}}
                )
            elif kind == "audio":
                parts.append(audio_part_to_openai(part))
            else:
                parts.append(part)
        changed = any(p is not q for p, q in zip(parts, content, strict=True))
        normalized.append(jsonable_message({**message, "content": parts} if changed else message))
    return normalized
