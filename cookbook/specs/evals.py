"""``kind: eval`` - an evaluation task: where its examples come from, how a prompt is built from
one, how the model answers (sampled, or scored by logprobs) and how the answer is scored.

The same spec runs alone (``cookbook-run specs/evals/X.yaml``, against the base model or a
``--checkpoint``) and inside a recipe (``evals: [...]``), where the recipe's sampling client,
model and renderer take the place of the spec's own.

Paths in a spec (``source.path``) are relative to the working directory, like a recipe's
``dataset.path``.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from cookbook.backends.local.config import LocalModelConfig
from cookbook.renderers.types import TrainOnWhat
from cookbook.specs.recipe import (
    Backend,
    ConversationSource,
    Identifier,
    ModelName,
    PositiveInt,
    RendererName,
    _Strict,
)


class MetricKind(StrEnum):
    EXACT = "exact"
    """The reply equals the answer (surrounding whitespace ignored)."""
    NORMALIZED = "normalized"
    """Equal after normalisation: Unicode NFKC, case folded, whitespace collapsed, surrounding
    punctuation dropped."""
    CONTAINS = "contains"
    """The normalised answer occurs in the normalised reply."""
    REGEX = "regex"
    """``pattern``'s last match in the reply (group 1 if it has one) equals the answer, both
    normalised; no match scores 0."""
    MULTIPLE_CHOICE = "multiple_choice"
    """No sampling: each choice is scored by the logprob of the whole assistant reply the
    renderer makes of it, after the prompt; the highest must be the answer."""
    NLL = "nll"
    """Held-out conversations scored as the reference's ``SamplerNLLEvaluator`` does: the
    weighted mean negative log-likelihood (``nll``) and bits per byte (``bpb``)."""


BINARY_METRICS = frozenset(MetricKind) - {MetricKind.NLL}


class ChoiceScore(StrEnum):
    SUM = "sum"
    """Total logprob of the reply's trained tokens."""
    MEAN = "mean"
    """Mean logprob per trained token: does not favour short choices."""


class CIMethod(StrEnum):
    BOOTSTRAP = "bootstrap"
    """Percentile bootstrap over examples, seeded from the spec's seed."""
    WILSON = "wilson"
    """Wilson score interval (binary metrics only)."""


class InlineSource(_Strict):
    """Examples written in the spec itself."""

    kind: Literal["inline"]
    examples: Annotated[list[dict[str, Any]], Field(min_length=1)]


class JsonlSource(_Strict):
    """A JSONL file, one example object a line."""

    kind: Literal["jsonl"]
    path: Annotated[str, Field(min_length=1)]


class HFSource(_Strict):
    """A Hugging Face ``datasets`` split, when the hub (or its cache) has it."""

    kind: Literal["hf"]
    path: Annotated[str, Field(min_length=1, description="Dataset id, e.g. 'openai/gsm8k'.")]
    name: str | None = None
    split: str = "test"
    offline_fallback: str | None = Field(
        default=None, description="A JSONL file used, loudly, when the dataset cannot be loaded."
    )


class ArithmeticSource(_Strict):
    """Arithmetic questions generated from the spec's seed: ``{question}``, ``{answer}``."""

    kind: Literal["arithmetic"]
    count: PositiveInt = 50
    # pydantic copies defaults per instance (ruff cannot tell that the imported _Strict is a model)
    operations: Annotated[list[Literal["+", "-", "*"]], Field(min_length=1)] = [  # noqa: RUF012
        "+",
        "-",
        "*",
    ]
    min_operand: int = 0
    max_operand: int = 99

    @model_validator(mode="after")
    def _range(self) -> ArithmeticSource:
        if self.min_operand > self.max_operand:
            raise ValueError("min_operand must not exceed max_operand")
        return self


class ConversationsSource(ConversationSource):
    """Conversations (``{"messages": [...]}`` rows) split as the recipe's conversations_file
    dataset: shuffled with ``shuffle_seed``, the first ``test_size`` rows held out. The eval
    uses the held-out rows (all rows when ``test_size`` is 0)."""

    kind: Literal["conversations"]


_SOURCES: dict[str, type[BaseModel]] = {
    "inline": InlineSource,
    "jsonl": JsonlSource,
    "hf": HFSource,
    "arithmetic": ArithmeticSource,
    "conversations": ConversationsSource,
}


def _source_tag(value: Any) -> str | None:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return f"[{kind}]" if kind in _SOURCES else None


# Tags are bracketed so that error paths read ``source.count``, not ``source.arithmetic.count``:
# the loader drops bracketed parts, as it does pydantic's own union-member tags.
Source = Annotated[
    Annotated[InlineSource, Tag("[inline]")]
    | Annotated[JsonlSource, Tag("[jsonl]")]
    | Annotated[HFSource, Tag("[hf]")]
    | Annotated[ArithmeticSource, Tag("[arithmetic]")]
    | Annotated[ConversationsSource, Tag("[conversations]")],
    Discriminator(
        _source_tag,
        custom_error_type="source_kind",
        custom_error_message=f"'kind' must be one of: {', '.join(_SOURCES)}",
    ),
]


class PromptTemplate(_Strict):
    """How an example becomes the prompt conversation: an optional system message and a user
    message, ``user`` being ``str.format``-ed with the example's fields. An example with a
    ``messages`` field uses those messages instead."""

    system: str | None = None
    user: str = "{question}"
    prefill: str | None = Field(
        default=None, description="Text the assistant reply starts with (part of the reply)."
    )

    @field_validator("user")
    @classmethod
    def _format_string(cls, user: str) -> str:
        try:
            list(string.Formatter().parse(user))
        except ValueError as exc:
            raise ValueError(f"not a str.format template ({exc})") from None
        return user


class FieldNames(_Strict):
    """Which example fields hold the answer, the choices and a ready-made conversation."""

    answer: str = Field(
        default="answer",
        description="The reference answer; multiple_choice: the right choice's index or text.",
    )
    choices: str = "choices"
    messages: str = "messages"


class SamplingSpec(_Strict):
    """``tinker.SamplingParams``; ``stop`` is always the renderer's stop sequences."""

    max_tokens: PositiveInt = 32
    temperature: Annotated[float, Field(ge=0)] = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Field(ge=-1)] = -1
    seed: int | None = Field(default=None, description="None means the spec's seed.")


class MetricSpec(_Strict):
    kind: MetricKind
    pattern: str | None = Field(default=None, description="regex only: what to extract.")
    choice_score: ChoiceScore = ChoiceScore.SUM
    train_on_what: TrainOnWhat = Field(
        default=TrainOnWhat.ALL_ASSISTANT_MESSAGES, description="nll: which tokens are scored."
    )
    max_length: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="nll: conversations are right-truncated to this many tokens."
    )

    @model_validator(mode="after")
    def _pattern(self) -> MetricSpec:
        if (self.kind == MetricKind.REGEX) != (self.pattern is not None):
            raise ValueError("'pattern' is required by the regex metric and only allowed there")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a regular expression ({exc})") from None
        return self


class ConfidenceSpec(_Strict):
    method: CIMethod = CIMethod.BOOTSTRAP
    level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    resamples: PositiveInt = 1000


class LocalEvalProfile(_Strict):
    """The local backend's stand-in model (as a recipe's ``local.model``)."""

    model: LocalModelConfig = LocalModelConfig()


class EvalSpec(_Strict):
    """``kind: eval`` - one evaluation task."""

    kind: Literal["eval"]
    version: Literal[1]
    name: Identifier = Field(description="Also the metric prefix: eval/<name>/...")
    description: str = ""
    model_name: ModelName
    renderer_name: RendererName | None = Field(
        default=None, description="None means get_recommended_renderer_name(model_name)."
    )
    backend: Backend = Backend.LOCAL
    base_url: str | None = None
    seed: int = 0
    checkpoint: str | None = Field(
        default=None,
        description="Sampler weights to evaluate: a run directory (its last sampler_path) or a "
        "checkpoint path; --checkpoint overrides. None means the base model.",
    )
    log_path: str | None = Field(
        default=None, description="Default: <run dir>/evals/<name> or runs/evals/<name>."
    )
    source: Source
    template: PromptTemplate = PromptTemplate()
    fields: FieldNames = FieldNames()
    sampling: SamplingSpec = SamplingSpec()
    metric: MetricSpec
    limit: PositiveInt | None = Field(default=None, description="Use the first N examples.")
    concurrency: PositiveInt = Field(
        default=32, description="Requests in flight at once (what makes the tinker backend fast)."
    )
    confidence: ConfidenceSpec = ConfidenceSpec()
    local: LocalEvalProfile = LocalEvalProfile()

    @model_validator(mode="after")
    def _metric_fits(self) -> EvalSpec:
        is_nll = self.metric.kind == MetricKind.NLL
        if is_nll != isinstance(self.source, ConversationsSource):
            raise ValueError("the nll metric takes a conversations source, and only it does")
        if is_nll and self.confidence.method == CIMethod.WILSON:
            raise ValueError("confidence.method wilson needs a 0/1 metric; nll takes bootstrap")
        return self
