"""Eval examples: loaded from the spec's source and turned into prompt conversations.

Every example is checked when the task is prepared - before anything is sampled or written - so
a missing field is one error naming the spec line (inline examples) or the file line (JSONL),
not a crash halfway through an eval (or through a training run that evaluates every N steps).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbook.data.sources import file_digest, json_lines, packaged_file
from cookbook.exceptions import ConfigurationError, CookbookError, DataFormatError
from cookbook.renderers.types import Message
from cookbook.specs.evals import (
    ArithmeticSource,
    ConversationsSource,
    EvalSpec,
    HFSource,
    InlineSource,
    JsonlSource,
    MetricKind,
)
from cookbook.specs.loader import field_error

Blame = Callable[[str, str], CookbookError]
"""(field, message) -> the error pointing at where an example came from."""

_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


@dataclass
class Example:
    """One eval item: the prompt conversation (for nll: the whole conversation) and its key."""

    id: str
    messages: list[Message]
    answer: str | None = None
    choices: list[str] | None = None
    answer_index: int | None = None
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rows:
    rows: list[dict[str, Any]]
    blames: list[Blame]
    info: dict[str, Any]
    stand_ins: list[str] = field(default_factory=list)


def arithmetic_rows(source: ArithmeticSource, seed: int) -> list[dict[str, Any]]:
    """``count`` questions from ``random.Random(seed)`` (its integer draws are stable across
    Python versions): ``{"question": "What is 12 + 7?", "answer": "19", ...}``."""
    rng = random.Random(seed)
    rows = []
    for index in range(source.count):
        a = rng.randint(source.min_operand, source.max_operand)
        b = rng.randint(source.min_operand, source.max_operand)
        op = rng.choice(source.operations)
        rows.append(
            {
                "id": f"arithmetic-{index}",
                "question": f"What is {a} {op} {b}?",
                "answer": str(_OPERATIONS[op](a, b)),
                "a": a,
                "b": b,
                "op": op,
            }
        )
    return rows


def _read_jsonl(path: Path) -> Rows:
    rows, blames = [], []
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read examples ({exc})") from None
    for number, row in json_lines(path, lines):
        if not isinstance(row, dict):
            raise DataFormatError(f"{path}:{number}: line: expected an object")
        rows.append(row)
        blames.append(lambda f, m, n=number: DataFormatError(f"{path}:{n}: {f}: {m}"))
    if not rows:
        raise DataFormatError(f"{path}: no examples (the file is empty)")
    return Rows(rows, blames, {"path": str(path), "sha256": file_digest(path)})


def _existing(spec_path: Path, path: str, loc: tuple[str, ...]) -> Path:
    if not Path(path).is_file():
        raise field_error(spec_path, loc, f"no such file: {path}")
    return Path(path)


def _hf_rows(spec_path: Path, source: HFSource) -> Rows:
    import datasets
    import datasets.config

    from cookbook.hub import cache_only, hub_reachable

    offline = bool(datasets.config.HF_HUB_OFFLINE) or not hub_reachable()
    try:
        with cache_only() if offline else contextlib.nullcontext():
            loaded = datasets.load_dataset(source.path, source.name, split=source.split)
    except (OSError, ValueError) as exc:
        reason = "the hub is unreachable and it is not cached" if offline else str(exc)
        if source.offline_fallback is None:
            raise field_error(
                spec_path, ("source", "path"), f"{source.path} cannot be loaded ({reason})"
            ) from None
        path = _existing(spec_path, source.offline_fallback, ("source", "offline_fallback"))
        found = _read_jsonl(path)
        found.stand_ins.append(
            f"dataset: {source.path} cannot be loaded ({reason}); evaluating the spec's "
            f"declared offline fallback {path} instead"
        )
        return found
    rows = loaded.to_list()
    where = f"{source.path}[{source.split}]"
    blames = [
        lambda f, m, i=i: DataFormatError(f"{where} row {i}: {f}: {m}") for i in range(len(rows))
    ]
    return Rows(rows, blames, {"dataset": source.path, "name": source.name, "split": source.split})


def _conversation_rows(spec_path: Path, spec: EvalSpec, source: ConversationsSource) -> Rows:
    from cookbook.data.builders import ChatDatasetCommonConfig, ConversationFileBuilder

    if source.package_file is not None:
        try:
            path = packaged_file(source.package_file.distribution, source.package_file.path)
        except ConfigurationError as exc:
            raise field_error(spec_path, ("source", "package_file"), str(exc)) from None
    else:
        path = _existing(spec_path, source.path, ("source", "path"))
    # Only the split is used (nothing is rendered here): the same held-out rows as a recipe's
    # conversations_file dataset with this test_size and shuffle_seed.
    common = ChatDatasetCommonConfig(
        model_name_for_tokenizer=spec.model_name,
        renderer_name=spec.renderer_name or "",
        max_length=None,
        batch_size=1,
    )
    builder = ConversationFileBuilder(common, path, source.test_size, source.shuffle_seed)
    train, test = builder.split()
    rows = test if test is not None else train
    blames = [
        lambda f, m, r=row: DataFormatError(f"{path}: row {r['row_id']}: {f}: {m}") for row in rows
    ]
    info = {k: v for k, v in builder.describe().items() if k in ("path", "sha256", "rows")}
    return Rows(rows, blames, {**info, "held_out": len(rows)})


def load_rows(spec_path: Path, spec: EvalSpec) -> Rows:
    """The source's rows, each with a way to blame it, and what config.json records."""
    source = spec.source
    if isinstance(source, InlineSource):
        n = len(source.examples)
        blames = [
            lambda f, m, i=i: field_error(spec_path, ("source", "examples", i, f), m)
            for i in range(n)
        ]
        found = Rows(list(source.examples), blames, {})
    elif isinstance(source, JsonlSource):
        found = _read_jsonl(_existing(spec_path, source.path, ("source", "path")))
    elif isinstance(source, HFSource):
        found = _hf_rows(spec_path, source)
    elif isinstance(source, ArithmeticSource):
        rows = arithmetic_rows(source, spec.seed)
        blames = [lambda f, m: ConfigurationError(f"arithmetic example: {f}: {m}")] * len(rows)
        found = Rows(rows, blames, {"generated": len(rows), "seed": spec.seed})
    else:
        found = _conversation_rows(spec_path, spec, source)
    found.info = {"kind": source.kind, **found.info}
    if spec.limit is not None:
        found.rows, found.blames = found.rows[: spec.limit], found.blames[: spec.limit]
    return found


def _prompt(spec: EvalSpec, row: dict[str, Any], blame: Blame) -> list[Message]:
    given = row.get(spec.fields.messages)
    if given is not None:
        if not isinstance(given, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in given
        ):
            raise blame(spec.fields.messages, "expected a list of {role, content} messages")
        return [Message(**m) for m in given]
    template = spec.template
    messages = [Message(role="system", content=template.system)] if template.system else []
    try:
        user = template.user.format(**row)
    except (KeyError, IndexError, AttributeError) as exc:
        raise blame("template.user", f"the example has no field {exc}") from None
    return [*messages, Message(role="user", content=user)]


def _choices(spec: EvalSpec, row: dict[str, Any], blame: Blame) -> tuple[list[str], int]:
    choices, answer = row.get(spec.fields.choices), row.get(spec.fields.answer)
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise blame(spec.fields.choices, "expected a list of at least two strings")
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return choices, answer
    if isinstance(answer, str) and answer in choices:
        return choices, choices.index(answer)
    raise blame(spec.fields.answer, "expected the right choice's index or its exact text")


def build_examples(spec: EvalSpec, found: Rows) -> list[Example]:
    """Examples of the spec's metric; a row that lacks what the metric needs is an error."""
    examples = []
    for index, (row, blame) in enumerate(zip(found.rows, found.blames, strict=True)):
        example_id = str(row.get("id", row.get("row_id", index)))
        if spec.metric.kind == MetricKind.NLL:
            examples.append(Example(example_id, row["messages"], row=row))
            continue
        messages = _prompt(spec, row, blame)
        if spec.metric.kind == MetricKind.MULTIPLE_CHOICE:
            choices, answer_index = _choices(spec, row, blame)
            examples.append(
                Example(example_id, messages, choices[answer_index], choices, answer_index, row)
            )
            continue
        answer = row.get(spec.fields.answer)
        if answer is None or isinstance(answer, dict | list):
            raise blame(spec.fields.answer, "missing, or not a single value")
        examples.append(Example(example_id, messages, str(answer), row=row))
    return examples
