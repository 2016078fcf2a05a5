"""``kind: recipe`` - a supervised training run, field for field the reference's ``train.Config``.

The names and defaults are those of ``tinker_cookbook.supervised.train.Config`` and
``ChatDatasetBuilderCommonConfig`` (0.5.8), so a reference user recognises every key; the
additions are what a declarative, offline-capable run needs and the reference gets from code:
``backend``, ``seed``, the dataset ``offline_fallback`` and ``checkpoint_semantics``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from cookbook.backends.local.config import LocalModelConfig
from cookbook.renderers.types import TrainOnWhat


def known_renderer_name(name: str) -> str:
    """A spec may only name a renderer we implement; the error lists the ones we do."""
    from cookbook.renderers import builtin_renderer_names

    if name not in builtin_renderer_names():
        raise ValueError(
            f"unknown renderer {name!r}; available: {', '.join(builtin_renderer_names())}"
        )
    return name


# Field types every spec kind shares (evals, rl and models import them from here).
RendererName = Annotated[str, Field(min_length=1), AfterValidator(known_renderer_name)]
ModelName = Annotated[str, Field(min_length=3, pattern=r"^[^/\s]+/[^/\s]+$")]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=80)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(StrEnum):
    LOCAL = "local"
    """Embedded CPU training (torch + transformers): the offline default."""
    TINKER = "tinker"
    """The Tinker service through the real SDK; needs TINKER_API_KEY."""
    FAKE = "fake"
    """Deterministic and instant, no model at all: for tests and dry runs of the pipeline."""


class LRSchedule(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


class CheckpointSemantics(StrEnum):
    """When a periodic checkpoint is taken relative to the pipelined next step.

    The reference saves step ``s``'s checkpoint after step ``s+1`` was already submitted
    (``submit_ahead``) and records ``batch = s``, which resume reads as the *next* batch to run,
    so a resumed run trains batches again that the saved weights already contain.
    """

    EXACT_RESUME = "exact_resume"
    """Ours: save right after step ``s``'s optimizer step, record the next batch to run."""
    REFERENCE = "reference"
    """The reference's order and record, for call-sequence parity (resume repeats batches)."""


class DatasetBuilder(StrEnum):
    NO_ROBOTS = "no_robots"
    """HuggingFaceH4/no_robots (``path`` may name a local copy: a directory with
    train.jsonl and test.jsonl rows in the dataset's own format)."""
    CONVERSATIONS_FILE = "conversations_file"
    """A JSONL file of ``{"messages": [...]}`` rows, as the reference's
    ``FromConversationFileBuilder``."""


class PackageFile(_Strict):
    """A data file shipped inside an installed registry package (found without importing it)."""

    distribution: Annotated[str, Field(min_length=1)]
    path: Annotated[str, Field(min_length=1)]


class ConversationSource(_Strict):
    """Where a conversations file comes from: a path, or a file inside a package."""

    path: str | None = None
    package_file: PackageFile | None = None
    test_size: NonNegativeInt = 0
    shuffle_seed: int = 0

    @model_validator(mode="after")
    def _one_location(self) -> ConversationSource:
        if (self.path is None) == (self.package_file is None):
            raise ValueError("give exactly one of 'path' and 'package_file'")
        return self


class DatasetSpec(_Strict):
    """The dataset builder and ``ChatDatasetBuilderCommonConfig``."""

    builder: DatasetBuilder
    batch_size: PositiveInt = 128
    max_length: Annotated[int, Field(ge=2)] | None = 32768
    train_on_what: TrainOnWhat | None = Field(
        default=None, description="None means the builder's default, ALL_ASSISTANT_MESSAGES."
    )
    path: str | None = Field(
        default=None,
        description="conversations_file: the JSONL file; no_robots: an optional local copy.",
    )
    package_file: PackageFile | None = None
    test_size: NonNegativeInt = 0
    shuffle_seed: int = 0
    offline_fallback: ConversationSource | None = Field(
        default=None,
        description="Used, loudly, when no_robots cannot be loaded (no hub access).",
    )

    @model_validator(mode="after")
    def _fits_the_builder(self) -> DatasetSpec:
        if self.builder == DatasetBuilder.CONVERSATIONS_FILE:
            if (self.path is None) == (self.package_file is None):
                raise ValueError("conversations_file needs exactly one of 'path', 'package_file'")
            if self.offline_fallback is not None:
                raise ValueError("offline_fallback only applies to the no_robots builder")
        elif self.package_file is not None or self.test_size or self.shuffle_seed:
            raise ValueError(
                "no_robots takes no package_file/test_size/shuffle_seed: its splits are fixed"
            )
        return self


OverlayValue = int | float | str | bool | None


class LocalProfile(_Strict):
    """How the recipe runs on the embedded local backend (``backend: local`` only).

    The reference configuration (batch 128, 32k tokens, an 8B model) cannot train on a laptop
    CPU, so the local backend trains the declared stand-in model, with ``overlay`` settings
    applied on top of the spec: dotted keys exactly like ``--set`` (which still wins). Both are
    printed at start and recorded in config.json, so a local run never passes for the real one.
    """

    model: LocalModelConfig = LocalModelConfig()
    overlay: dict[str, OverlayValue] = Field(
        default_factory=dict,
        description="Dotted spec keys -> values applied when backend is local, e.g. "
        "{'dataset.batch_size': 8}.",
    )


class TinkerOptions(_Strict):
    """How a ``backend: tinker`` run talks to the service (see cookbook.backends.tinker)."""

    record: str | None = Field(
        default=None,
        description="Record every client call and its result to this cassette file "
        "(JSON Lines, key-free).",
    )
    replay: str | None = Field(
        default=None,
        description="Answer every call from this cassette instead of the service: no network, "
        "no TINKER_API_KEY; a cassette recorded from another spec is refused before the run, "
        "and the first call that differs from the recording fails the run.",
    )
    connect_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=10.0,
        description="Fail (one line) when the service does not answer within this many "
        "seconds at start.",
    )
    max_attempts: PositiveInt = Field(
        default=6,
        description="Tries per request on rate-limit, 5xx, timeout and connection errors; an "
        "accepted training request is never sent twice.",
    )

    @model_validator(mode="after")
    def _record_or_replay(self) -> TinkerOptions:
        if self.record is not None and self.replay is not None:
            raise ValueError("give at most one of 'record' and 'replay'")
        return self


class FinalSample(_Strict):
    """A reply sampled from the trained weights after the last step, logged to samples.jsonl:
    the quickest look at what training did."""

    prompt: Annotated[str, Field(min_length=1)] = "What is the capital of France?"
    max_tokens: PositiveInt = 48
    temperature: Annotated[float, Field(ge=0)] = 0.0


class RunSpec(_Strict):
    """What every training-run spec kind has: identity, model, backend and its profiles."""

    kind: str
    version: Literal[1]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]
    recipe_name: str
    model_name: ModelName
    renderer_name: RendererName | None = Field(
        default=None, description="None means get_recommended_renderer_name(model_name)."
    )
    backend: Backend = Backend.LOCAL
    base_url: str | None = None
    seed: int = 0
    log_path: str | None = Field(default=None, description="Default: runs/<name>.")
    load_checkpoint_path: str | None = None
    local: LocalProfile = LocalProfile()
    tinker: TinkerOptions = TinkerOptions()

    @model_validator(mode="after")
    def _tinker_options_need_the_tinker_backend(self) -> RunSpec:
        # A cassette option on another backend would be silently ignored; say so instead.
        if self.backend != Backend.TINKER and (self.tinker.record or self.tinker.replay):
            raise ValueError("tinker.record and tinker.replay need backend: tinker")
        return self


class RecipeSpec(RunSpec):
    """``kind: recipe`` - the sl_basic experiment and its variants."""

    kind: Literal["recipe"]
    recipe_name: str = "recipe_sl_basic"
    dataset: DatasetSpec
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    lr_schedule: LRSchedule = LRSchedule.LINEAR
    num_epochs: PositiveInt = 1
    lora_rank: PositiveInt = 32
    save_every: NonNegativeInt = 20
    eval_every: NonNegativeInt = 10
    ttl_seconds: PositiveInt | None = 604800
    adam_beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    adam_beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    adam_eps: Annotated[float, Field(gt=0)] = 1e-8
    max_steps: PositiveInt | None = None
    submit_ahead: NonNegativeInt = 1
    checkpoint_semantics: CheckpointSemantics = CheckpointSemantics.EXACT_RESUME
    final_sample: FinalSample | None = FinalSample()
    evals: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Eval task specs (kind: eval) run at every eval step on the pre-step "
        "weights, logged as eval/<task>/<metric>; paths relative to the working directory.",
    )
