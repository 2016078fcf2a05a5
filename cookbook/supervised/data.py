"""``tinker_cookbook.supervised.data`` under our name, for what the supervised slice covers:
``conversation_to_datum`` and the conversation-file builder. The reference's Hugging Face
dataset wrappers exist by name only: constructing one raises NotImplementedError (cookbook's
no_robots builder, ``cookbook.data.NoRobotsBuilder``, does not need them)."""

from cookbook.data.builders import ConversationFileBuilder as FromConversationFileBuilder
from cookbook.data.dataset import SupervisedDataset
from cookbook.renderers.not_ported import not_ported
from cookbook.supervised.common import conversation_to_datum

SupervisedDatasetFromHFDataset = not_ported(
    "SupervisedDatasetFromHFDataset", __name__, SupervisedDataset, NotImplementedError, None
)
StreamingSupervisedDatasetFromHFDataset = not_ported(
    "StreamingSupervisedDatasetFromHFDataset",
    __name__,
    SupervisedDataset,
    NotImplementedError,
    None,
)

__all__ = [
    "FromConversationFileBuilder",
    "StreamingSupervisedDatasetFromHFDataset",
    "SupervisedDatasetFromHFDataset",
    "conversation_to_datum",
]
