"""``tinker_cookbook.renderers.testing_utils``: helpers the reference's renderer tests import."""

from __future__ import annotations

from typing import Any

import pytest
import transformers


def extract_token_ids(result: Any) -> list[int]:
    """``apply_chat_template``'s ids: a list in transformers 4.x, a BatchEncoding in 5.x."""
    if hasattr(result, "input_ids"):
        return list(result["input_ids"])
    return list(result)


_DEEPSEEK_TOKENIZER_BUG = (
    "transformers 5.3.0 has a known bug with DeepSeek tokenizer that strips spaces during decode. "
    "See https://github.com/huggingface/transformers/pull/44801"
)
_HAS_DEEPSEEK_TOKENIZER_BUG = transformers.__version__ == "5.3.0"

skip_deepseek_tokenizer_bug = pytest.mark.skipif(
    _HAS_DEEPSEEK_TOKENIZER_BUG, reason=_DEEPSEEK_TOKENIZER_BUG
)


def skip_if_deepseek_tokenizer_bug(model_name: str) -> None:
    """Skip the running test on transformers 5.3.0 when the model is a DeepSeek one."""
    if _HAS_DEEPSEEK_TOKENIZER_BUG and "deepseek" in model_name.lower():
        pytest.skip(_DEEPSEEK_TOKENIZER_BUG)
