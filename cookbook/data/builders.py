"""The reference's chat dataset builders: ``NoRobotsBuilder`` and ``FromConversationFileBuilder``.

Calling a builder returns ``(train_dataset, test_dataset | None)`` as in tinker-cookbook 0.5.8;
``describe()`` returns what a run records in config.json to say which data it trained on
(source, file and row digests, row counts), without needing a tokenizer.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import tinker
from pydantic import BaseModel, ConfigDict, Field

from cookbook.data.dataset import ConversationDataset, MapFn, Row, SupervisedDatasetBuilder
from cookbook.data.shuffle import hf_shuffle_indices
from cookbook.data.sources import (
    NO_ROBOTS,
    file_digest,
    load_no_robots,
    read_conversations_jsonl,
    rows_digest,
    to_dataset_rows,
    with_row_ids,
)
from cookbook.exceptions import ConfigurationError
from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.supervised.common import conversation_to_datum, conversations_to_datums
from cookbook.tokenizers import get_tokenizer

NO_ROBOTS_SHUFFLE_SEED = 0
"""The reference shuffles no_robots' train split once, with seed 0, before any epoch."""


class ChatDatasetCommonConfig(BaseModel):
    """The reference's ``ChatDatasetBuilderCommonConfig``, field for field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name_for_tokenizer: str
    renderer_name: str
    max_length: int | None
    batch_size: Annotated[int, Field(gt=0)]
    train_on_what: TrainOnWhat | None = None
    """None means ALL_ASSISTANT_MESSAGES, the default of both builders."""

    @property
    def effective_train_on_what(self) -> TrainOnWhat:
        return self.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES


class RenderRows:
    """A chat builder's ``map_fn``: one row, or (``batch``) a batch of rows, to datums."""

    def __init__(self, renderer: Renderer, max_length: int | None, train_on_what: TrainOnWhat):
        self.renderer = renderer
        self.max_length = max_length
        self.train_on_what = train_on_what

    def __call__(self, row: Row) -> tinker.Datum:
        return conversation_to_datum(
            row["messages"], self.renderer, self.max_length, self.train_on_what
        )

    def batch(self, rows: list[Row]) -> list[tinker.Datum]:
        conversations = [row["messages"] for row in rows]
        return conversations_to_datums(
            conversations, self.renderer, self.max_length, self.train_on_what
        )


class ChatDatasetBuilder(SupervisedDatasetBuilder):
    """Renders rows with the configured tokenizer and renderer, as ``ChatDatasetBuilder``."""

    def __init__(self, common_config: ChatDatasetCommonConfig):
        self.common_config = common_config

    def map_fn(self) -> MapFn:
        """Row -> datum: ``conversation_to_datum`` with the default (mean) reduction; its
        ``batch`` method renders a whole batch of rows at once (same datums)."""
        cc = self.common_config
        renderer = get_renderer(cc.renderer_name, get_tokenizer(cc.model_name_for_tokenizer))
        return RenderRows(renderer, cc.max_length, cc.effective_train_on_what)

    @abstractmethod
    def __call__(self) -> tuple[ConversationDataset, ConversationDataset | None]: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...


class NoRobotsBuilder(ChatDatasetBuilder):
    """HuggingFaceH4/no_robots: train shuffled with seed 0, test in its own order.

    ``rows`` (train, test) replaces loading and is used as given, so it should already be in
    dataset form (e.g. from :func:`load_no_robots`); otherwise ``local_copy`` (a directory with
    train.jsonl and optionally test.jsonl) or the hub / its cache is loaded.
    """

    def __init__(
        self,
        common_config: ChatDatasetCommonConfig,
        rows: tuple[list[Row], list[Row]] | None = None,
        local_copy: str | Path | None = None,
    ):
        super().__init__(common_config)
        if rows is not None and local_copy is not None:
            raise ConfigurationError("NoRobotsBuilder: give rows or local_copy, not both")
        self._given_rows = rows
        self.local_copy = Path(local_copy) if local_copy is not None else None

    @cached_property
    def splits(self) -> tuple[list[Row], list[Row]]:
        if self._given_rows is not None:
            train, test = self._given_rows
            return with_row_ids(list(train)), with_row_ids(list(test))
        return load_no_robots(self.local_copy)

    def __call__(self) -> tuple[ConversationDataset, ConversationDataset]:
        train, test = self.splits
        shuffled = [train[i] for i in hf_shuffle_indices(len(train), NO_ROBOTS_SHUFFLE_SEED)]
        map_fn = self.map_fn()
        batch_size = self.common_config.batch_size
        return (
            ConversationDataset(shuffled, batch_size, map_fn),
            ConversationDataset(test, batch_size, map_fn),
        )

    def describe(self) -> dict[str, Any]:
        train, test = self.splits
        if self._given_rows is not None:
            source, path, sha256 = "rows", None, None
        elif self.local_copy is not None:
            source, path = "local_copy", str(self.local_copy)
            files = {s: self.local_copy / f"{s}.jsonl" for s in ("train", "test")}
            sha256 = {s: file_digest(f) if f.is_file() else None for s, f in files.items()}
        else:
            source, path, sha256 = f"hf:{NO_ROBOTS}", None, None
        return {
            "builder": "no_robots",
            "source": source,
            "path": path,
            "sha256": sha256,
            "rows_sha256": {"train": rows_digest(train), "test": rows_digest(test)},
            "rows": len(train) + len(test),
            "train_rows": len(train),
            "test_rows": len(test),
            "shuffle_seed": NO_ROBOTS_SHUFFLE_SEED,
        }


class ConversationFileBuilder(ChatDatasetBuilder):
    """A JSONL file of ``{"messages": [...]}`` rows, as ``FromConversationFileBuilder``.

    All rows are shuffled with ``shuffle_seed`` (None keeps the file order); when
    ``0 < test_size < rows`` the first ``test_size`` become the test set, evaluated as one batch.
    """

    def __init__(
        self,
        common_config: ChatDatasetCommonConfig,
        file_path: str | Path,
        test_size: int = 0,
        shuffle_seed: int | None = 0,
    ):
        super().__init__(common_config)
        if test_size < 0:
            raise ConfigurationError(f"test_size must be >= 0, got {test_size}")
        self.file_path = Path(file_path)
        self.test_size = test_size
        self.shuffle_seed = shuffle_seed

    @cached_property
    def rows(self) -> list[Row]:
        return to_dataset_rows(read_conversations_jsonl(self.file_path), str(self.file_path))

    def split(self) -> tuple[list[Row], list[Row] | None]:
        """(train, test) rows after the shuffle; test is None when there is no held-out set."""
        rows = self.rows
        if self.shuffle_seed is not None:
            rows = [rows[i] for i in hf_shuffle_indices(len(rows), self.shuffle_seed)]
        if 0 < self.test_size < len(rows):
            return rows[self.test_size :], rows[: self.test_size]
        return rows, None

    def __call__(self) -> tuple[ConversationDataset, ConversationDataset | None]:
        train, test = self.split()
        map_fn = self.map_fn()
        train_ds = ConversationDataset(train, self.common_config.batch_size, map_fn)
        return train_ds, ConversationDataset(test, len(test), map_fn) if test else None

    def describe(self) -> dict[str, Any]:
        train, test = self.split()
        return {
            "builder": "conversations_file",
            "source": "file",
            "path": str(self.file_path),
            "sha256": file_digest(self.file_path),
            "rows_sha256": rows_digest(self.rows),
            "rows": len(self.rows),
            "train_rows": len(train),
            "test_rows": len(test) if test else 0,
            "test_size": self.test_size,
            "shuffle_seed": self.shuffle_seed,
        }


__all__ = [
    "ChatDatasetBuilder",
    "ChatDatasetCommonConfig",
    "ConversationFileBuilder",
    "NoRobotsBuilder",
]
