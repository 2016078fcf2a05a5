"""The toy addition environment (``recipes/math_rl/arithmetic_env.py``): needs no data.

Batch ``i`` draws its problems from ``np.random.RandomState`` seeded with ``i``, so a batch is
the same whichever order or process asks for it, as in the reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from cookbook import renderers
from cookbook.renderers import Message, Renderer
from cookbook.rl.problem_env import ProblemEnv, ProblemGroupBuilder
from cookbook.rl.types import EnvGroupBuilder, RLDataset, RLDatasetBuilder
from cookbook.tokenizers import get_tokenizer

_INTEGER_PATTERN = re.compile(r"-?\d+")


def _extract_final_int(text: str) -> int | None:
    """The last integer in the text, thousands commas removed (``-`` binds: ``3-4`` -> -4)."""
    matches = _INTEGER_PATTERN.findall(text.replace(",", ""))
    if not matches:
        return None
    return int(matches[-1])


class ArithmeticEnv(ProblemEnv):
    """``What is x + y?``: correct when the response's last integer is the sum; any response is
    well formatted (only the stop sequence counts)."""

    def __init__(
        self,
        x: int,
        y: int,
        renderer: Renderer,
        convo_prefix: list[Message] | None = None,
        format_coef: float = 0.1,
        require_stop_sequence_for_format: bool = True,
    ):
        super().__init__(
            renderer,
            convo_prefix,
            format_coef=format_coef,
            require_stop_sequence_for_format=require_stop_sequence_for_format,
        )
        self.x = x
        self.y = y

    def get_question(self) -> str:
        return f"What is {self.x} + {self.y}?"

    def check_answer(self, sample_str: str) -> bool:
        answer = _extract_final_int(sample_str)
        return answer is not None and answer == self.x + self.y

    def check_format(self, sample_str: str) -> bool:
        return True

    def get_reference_answer(self) -> str:
        return str(self.x + self.y)

    @staticmethod
    def standard_fewshot_prefix() -> list[Message]:
        return [
            {"role": "user", "content": "What is 4 + 5?"},
            {"role": "assistant", "content": "9"},
        ]


class ArithmeticDataset(RLDataset):
    def __init__(
        self,
        batch_size: int,
        renderer: Renderer,
        group_size: int,
        n_batches: int = 100,
        include_fewshot: bool = True,
    ):
        self._rng = np.random.RandomState(None)
        self.batch_size = batch_size
        self.group_size = group_size
        self.renderer = renderer
        self.n_batches = n_batches
        self.include_fewshot = include_fewshot

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        self._rng.seed(index)
        return [self._make_env_group_builder(self._rng) for _ in range(self.batch_size)]

    def _make_env_group_builder(self, rng: np.random.RandomState) -> ProblemGroupBuilder:
        x = rng.randint(0, 101)
        y = rng.randint(0, 101)
        convo_prefix = ArithmeticEnv.standard_fewshot_prefix() if self.include_fewshot else None
        return ProblemGroupBuilder(
            env_thunk=partial(
                ArithmeticEnv, x, y, convo_prefix=convo_prefix, renderer=self.renderer
            ),
            num_envs=self.group_size,
        )

    def __len__(self) -> int:
        return self.n_batches


@dataclass(frozen=True)
class ArithmeticDatasetBuilder(RLDatasetBuilder):
    batch_size: int
    model_name_for_tokenizer: str
    renderer_name: str
    n_batches: int
    group_size: int
    include_fewshot: bool = True

    async def __call__(self) -> tuple[ArithmeticDataset, None]:
        tokenizer = get_tokenizer(self.model_name_for_tokenizer)
        renderer = renderers.get_renderer(self.renderer_name, tokenizer=tokenizer)
        dataset = ArithmeticDataset(
            batch_size=self.batch_size,
            renderer=renderer,
            n_batches=self.n_batches,
            include_fewshot=self.include_fewshot,
            group_size=self.group_size,
        )
        return dataset, None
