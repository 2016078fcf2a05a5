"""Math environments (``recipes/math_rl/math_env.py``): ``MathEnv`` and the GSM8K dataset.

``MathEnv`` asks for the answer in ``\\boxed{}`` and grades the last box against the reference
answer (:mod:`cookbook.recipes.math_rl.math_grading`); GSM8K's answer is the text after its last
``####``. Of the reference's datasets only GSM8K is ported: MATH (Hendrycks), Polaris and
DeepMath are refused by :func:`get_math_dataset_builder` with a message saying so.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Literal

from cookbook import renderers
from cookbook.data.shuffle import hf_shuffle_indices
from cookbook.exceptions import ConfigurationError, DatasetUnavailableError
from cookbook.recipes.math_rl.gsm8k_data import Gsm8kRows, load_gsm8k, stand_in_rows
from cookbook.recipes.math_rl.math_grading import (
    extract_boxed,
    grade_answer,
    grade_answer_math_verify,
    run_with_timeout_signal,
)
from cookbook.renderers import Message, Renderer
from cookbook.rl.problem_env import ProblemEnv, ProblemGroupBuilder
from cookbook.rl.types import EnvGroupBuilder, RLDataset, RLDatasetBuilder
from cookbook.tokenizers import get_tokenizer

logger = logging.getLogger(__name__)

Grader = Literal["sympy", "math_verify"]


class MathEnv(ProblemEnv):
    def __init__(
        self,
        problem: str,
        answer: str,
        renderer: Renderer,
        convo_prefix: list[Message] | None = None,
        grader: Grader = "sympy",
        timeout: float = 1.0,
        format_coef: float = 0.1,
        require_stop_sequence_for_format: bool = True,
    ):
        super().__init__(
            renderer,
            convo_prefix,
            format_coef=format_coef,
            require_stop_sequence_for_format=require_stop_sequence_for_format,
        )
        self.problem = problem
        self.answer = answer
        self.grader = grader
        self.timeout = timeout

    @classmethod
    def question_suffix(cls) -> str:
        return " Write your answer in \\boxed{} format."

    def get_question(self) -> str:
        return self.problem + self.question_suffix()

    def check_format(self, sample_str: str) -> bool:
        try:
            extract_boxed(sample_str)
        except ValueError:
            return False
        return True

    def check_answer(self, sample_str: str) -> bool:
        try:
            answer = extract_boxed(sample_str)
        except ValueError:
            return False
        return safe_grade(answer, self.answer, self.grader, self.timeout)

    def get_reference_answer(self) -> str:
        return self.answer

    @staticmethod
    def standard_fewshot_prefix() -> list[Message]:
        return [
            {
                "role": "user",
                "content": "How many r's are in strawberry?" + MathEnv.question_suffix(),
            },
            {
                "role": "assistant",
                "content": (
                    "Let's spell the word out and number all the letters: 1) s 2) t 3) r 4) a "
                    "5) w 6) b 7) e 8) r 9) r 10) y. We have r's at positions 3, 8, and 9. "
                    "\\boxed{3}"
                ),
            },
        ]


def safe_grade(
    given_answer: str, ground_truth: str, grader: str = "sympy", timeout: float = 1.0
) -> bool:
    """The grade, or False when grading times out or raises.

    Grading runs in a worker thread, as in the reference; math-verify's signal-based timeout
    cannot run there, so the ``math_verify`` grader always gives False through this function
    (the reference's behaviour, kept for parity)."""
    if grader == "sympy":
        grader_func = grade_answer
    elif grader == "math_verify":
        grader_func = grade_answer_math_verify
    else:
        raise ValueError(f"Invalid grader: {grader}")
    out = run_with_timeout_signal(
        grader_func, args=(given_answer, ground_truth), timeout_seconds=math.ceil(timeout)
    )
    if out is None:
        logger.warning(f"Timeout grading {given_answer} against {ground_truth}")
        return False
    return out


def extract_gsm8k_final_answer(text: str) -> str:
    """The answer after the last line starting with ``####`` (an optional ``:`` and every comma
    dropped); else what follows the last inline ``####`` (commas kept)."""
    for line in reversed(text.splitlines()):
        s = line.strip()
        if s.startswith("####"):
            content = s[4:].strip()
            if content.startswith(":"):
                content = content[1:].strip()
            return content.replace(",", "").strip()
    matches = re.findall(r"####\s*(.+)", text)
    if matches:
        return matches[-1].strip()
    raise ValueError("No GSM8K final answer found")


class Gsm8kDataset(RLDataset):
    """GSM8K problems as groups of :class:`MathEnv`: train shuffled with ``seed`` (the order of
    ``datasets.Dataset.shuffle``), test in order with one env per problem.

    ``rows`` replaces loading (``load_gsm8k()`` otherwise); :meth:`describe` says what was used.
    """

    def __init__(
        self,
        batch_size: int,
        group_size: int,
        renderer: Renderer,
        convo_prefix: list[Message] | None = None,
        split: Literal["train", "test"] = "train",
        seed: int = 0,
        rows: Gsm8kRows | None = None,
    ):
        if split not in ("train", "test"):
            raise ValueError("split must be 'train' or 'test'")
        self.source = rows if rows is not None else load_gsm8k()
        self.ds: list[dict[str, Any]] = getattr(self.source, split)
        if split == "train":
            self.ds = [self.ds[i] for i in hf_shuffle_indices(len(self.ds), seed)]
        self.split = split
        self.seed = seed
        self.batch_size = batch_size
        self.group_size = group_size if split == "train" else 1
        self.renderer = renderer
        self.convo_prefix = convo_prefix

    @classmethod
    def question_suffix(cls) -> str:
        return " Provide a numerical answer without units, written inside \\boxed{}."

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        batch_start = index * self.batch_size
        batch_end = min((index + 1) * self.batch_size, len(self.ds))
        if batch_start >= batch_end:
            raise IndexError(f"batch {index} is past the end of {len(self)} batches")
        return [
            builder
            for row in self.ds[batch_start:batch_end]
            if (builder := self._make_env_group_builder(row, self.group_size)) is not None
        ]

    def __len__(self) -> int:
        return math.ceil(len(self.ds) / self.batch_size)

    def _make_env_group_builder(
        self, x: dict[str, str], group_size: int
    ) -> ProblemGroupBuilder | None:
        try:
            problem = x["question"]
            answer = extract_gsm8k_final_answer(x["answer"])
        except Exception as e:
            logger.warning(f"Failed to parse GSM8K row: {e}")
            return None
        return ProblemGroupBuilder(
            env_thunk=partial(
                MathEnv, problem, answer, self.renderer, convo_prefix=self.convo_prefix
            ),
            num_envs=group_size,
        )

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "split": self.split, "shuffle_seed": self.seed}


@dataclass(frozen=True)
class Gsm8kDatasetBuilder(RLDatasetBuilder):
    """The reference's fields, plus where the rows come from offline: ``local_copy`` (a
    directory with train.jsonl and test.jsonl) or, with ``offline_fallback``, the declared
    stand-in (named by the datasets' ``describe()`` and :data:`~gsm8k_data.STAND_IN_NOTE`)."""

    batch_size: int
    model_name_for_tokenizer: str
    renderer_name: str
    group_size: int
    convo_prefix: list[Message] | Literal["standard"] | None = "standard"
    seed: int = 0
    local_copy: str | None = None
    offline_fallback: bool = False

    def rows(self) -> Gsm8kRows:
        """The rows this builder trains on, loaded once: the recipe resolves them before the
        run starts (to fail early and to describe them) and ``__call__`` reuses them, so a
        stand-in is announced once and the hub is not asked twice."""
        return self._loaded_rows

    @cached_property
    def _loaded_rows(self) -> Gsm8kRows:
        try:
            return load_gsm8k(Path(self.local_copy) if self.local_copy else None)
        except DatasetUnavailableError:
            if not self.offline_fallback or self.local_copy:
                raise
            logger.warning("GSM8K unavailable; using the declared stand-in")
            return stand_in_rows()

    async def __call__(self) -> tuple[Gsm8kDataset, Gsm8kDataset]:
        if self.convo_prefix == "standard":
            convo_prefix = MathEnv.standard_fewshot_prefix()
        else:
            convo_prefix = self.convo_prefix
        tokenizer = get_tokenizer(self.model_name_for_tokenizer)
        renderer = renderers.get_renderer(self.renderer_name, tokenizer=tokenizer)
        rows = self.rows()
        train, test = (
            Gsm8kDataset(
                batch_size=self.batch_size,
                group_size=self.group_size,
                renderer=renderer,
                convo_prefix=convo_prefix,
                split=split,
                seed=self.seed,
                rows=rows,
            )
            for split in ("train", "test")
        )
        return train, test


DATASET_BUILDER_MAP: dict[str, type[RLDatasetBuilder]] = {"gsm8k": Gsm8kDatasetBuilder}
NOT_PORTED = ("math", "polaris", "deepmath")


def get_math_dataset_builder(
    dataset_name: str,
    batch_size: int,
    model_name_for_tokenizer: str,
    renderer_name: str,
    group_size: int,
    seed: int = 0,
) -> RLDatasetBuilder:
    """The dataset builder by the reference's name; only ``gsm8k`` is ported."""
    if dataset_name in NOT_PORTED:
        raise ConfigurationError(
            f"math dataset {dataset_name!r} exists in the reference but is not implemented in "
            f"cookbook yet; available: {', '.join(DATASET_BUILDER_MAP)}"
        )
    if dataset_name not in DATASET_BUILDER_MAP:
        known = [*DATASET_BUILDER_MAP, *NOT_PORTED]
        raise ValueError(f"Unknown math dataset: {dataset_name}. Available: {known}")
    return DATASET_BUILDER_MAP[dataset_name](
        batch_size=batch_size,
        model_name_for_tokenizer=model_name_for_tokenizer,
        renderer_name=renderer_name,
        group_size=group_size,
        seed=seed,
    )
