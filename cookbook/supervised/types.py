"""``tinker_cookbook.supervised.types`` under our name: the dataset and builder types of the
supervised slice (they live in :mod:`cookbook.data`)."""

from cookbook.data.builders import ChatDatasetBuilder
from cookbook.data.builders import ChatDatasetCommonConfig as ChatDatasetBuilderCommonConfig
from cookbook.data.dataset import SupervisedDataset, SupervisedDatasetBuilder

__all__ = [
    "ChatDatasetBuilder",
    "ChatDatasetBuilderCommonConfig",
    "SupervisedDataset",
    "SupervisedDatasetBuilder",
]
