"""Batched supervised datasets: what the training loop iterates over.

:class:`ConversationDataset` behaves as the reference's ``SupervisedDatasetFromHFDataset`` over
an already shuffled Hugging Face dataset: batches are contiguous slices of the current order,
rendered only when asked for; the last partial batch is dropped; ``set_epoch(seed)`` reorders
the rows it was built with by ``Dataset.shuffle(seed=seed)``'s permutation - not cumulatively,
and epoch 0 shuffles too (the reference loop calls ``set_epoch(seed=0)`` before the first batch).
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import tinker

from cookbook.data.shuffle import hf_shuffle_indices
from cookbook.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

Row = dict[str, Any]
MapFn = Callable[[Row], tinker.Datum]


class SupervisedDataset(ABC):
    """Batches of datums by index; ``len()`` is the number of batches."""

    @abstractmethod
    def get_batch(self, index: int) -> list[tinker.Datum]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    def set_epoch(self, seed: int = 0) -> None:
        """Called at the start of every epoch; the default keeps the order (and says so)."""
        logger.warning(
            "set_epoch called, but shuffling is not implemented for %s", type(self).__name__
        )


class SupervisedDatasetBuilder(ABC):
    """Builds (train, optional test) datasets, as ``tinker_cookbook.supervised.types``'s."""

    @abstractmethod
    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]: ...


class ConversationDataset(SupervisedDataset):
    """Rows rendered lazily by ``map_fn``, ``batch_size`` rows a batch, in the current order."""

    def __init__(self, rows: Sequence[Row], batch_size: int, map_fn: MapFn):
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self._rows = list(rows)
        self.batch_size = batch_size
        self.map_fn = map_fn
        self._order = list(range(len(self._rows)))

    def __len__(self) -> int:
        return len(self._rows) // self.batch_size

    def set_epoch(self, seed: int = 0) -> None:
        """Order the rows as ``Dataset.shuffle(seed=seed)`` would, starting from the base order."""
        self._order = hf_shuffle_indices(len(self._rows), seed)

    def _positions(self, index: int) -> list[int]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range: {len(self)} full batches")
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]

    def batch_row_ids(self, index: int) -> list[Any]:
        """The ``row_id`` of each row of a batch (its position in the base rows if it has none):
        comparable across runs and implementations without rendering anything."""
        return [self._rows[i].get("row_id", i) for i in self._positions(index)]

    def rows_for_batch(self, index: int) -> list[Row]:
        """Copies of a batch's rows, so a ``map_fn`` that edits its row changes nothing here."""
        return [copy.deepcopy(self._rows[i]) for i in self._positions(index)]

    def get_batch(self, index: int) -> list[tinker.Datum]:
        """``map_fn`` over the batch's rows; through its ``batch`` method if it has one (the
        chat builders' renders a whole batch with one tokenizer call, to the same datums)."""
        rows = self.rows_for_batch(index)
        batch = getattr(self.map_fn, "batch", None)
        return batch(rows) if callable(batch) else [self.map_fn(row) for row in rows]


__all__ = ["ConversationDataset", "MapFn", "Row", "SupervisedDataset"]
