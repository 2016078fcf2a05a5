"""``kind: rl_recipe`` - an RL training run: the reference's ``rl.train.Config`` (``loop: train``)
or its ``recipes/rl_loop.py`` Config (``loop: rl_loop``), field for field where implemented.

Names and defaults are the reference's (0.5.8). Options of ``rl.train.Config`` that only its
non-default paths read are accepted as keys so that a reference user's config is recognised,
but any value other than the default is refused at load with a one-line error naming the
option: nothing is silently ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from cookbook.specs.recipe import (
    ModelName,
    NonNegativeInt,
    OverlayValue,
    PositiveInt,
    RunSpec,
    _Strict,
)


class RLLoop(StrEnum):
    TRAIN = "train"
    """``tinker_cookbook.rl.train.main``: environments, group rollouts, the full metrics."""
    RL_LOOP = "rl_loop"
    """``tinker_cookbook.recipes.rl_loop``: its own minimal GSM8K loop, GRPO-style centring."""


class RLLossFn(StrEnum):
    """The SDK's built-in policy-gradient losses (``LossFnType`` less cross_entropy, whose
    per-token weights RL datums do not carry, and custom)."""

    IMPORTANCE_SAMPLING = "importance_sampling"
    PPO = "ppo"
    CISPO = "cispo"
    DRO = "dro"
    GSPO = "gspo"
    STABLE_REINFORCE = "stable_reinforce"


class RLDatasetKind(StrEnum):
    GSM8K = "gsm8k"
    """``recipes/math_rl/math_env.Gsm8kDatasetBuilder`` (openai/gsm8k, main config)."""
    ARITHMETIC = "arithmetic"
    """``recipes/math_rl/arithmetic_env.ArithmeticDatasetBuilder``: generated, needs no data."""


class GsmOfflineFallback(StrEnum):
    STAND_IN = "stand_in"
    """Generated word problems in GSM8K's format; named loudly in the banner and config.json."""


class RLDatasetSpec(_Strict):
    builder: RLDatasetKind
    batch_size: PositiveInt = 128
    group_size: PositiveInt = 16
    seed: int = Field(default=0, description="gsm8k: the train split's shuffle seed.")
    local_copy: str | None = Field(
        default=None, description="gsm8k: a directory with train.jsonl and test.jsonl."
    )
    offline_fallback: GsmOfflineFallback | None = Field(
        default=None, description="gsm8k: used, loudly, when openai/gsm8k cannot be loaded."
    )
    n_batches: PositiveInt = Field(default=100, description="arithmetic: batches per run.")
    include_fewshot: bool = Field(default=True, description="arithmetic: the 4 + 5 example.")

    @model_validator(mode="after")
    def _fits_the_builder(self) -> RLDatasetSpec:
        if self.builder == RLDatasetKind.ARITHMETIC and (
            self.local_copy or self.offline_fallback or self.seed
        ):
            raise ValueError(
                "arithmetic takes no local_copy/offline_fallback/seed: it is generated"
            )
        return self


NOT_IMPLEMENTED = {
    "async_config": "async/off-policy training",
    "stream_minibatch_config": "streaming minibatch training",
    "num_substeps": "more than one optimizer substep per batch",
    "compute_post_kl": "post-update KL metrics",
    "rolling_save_every": "rolling checkpoints",
}
"""``rl.train.Config`` options whose non-default values this port refuses, and what they are."""


class KLReferenceSpec(_Strict):
    """``rl.train.KLReferenceConfig``: the model the KL penalty compares the policy against."""

    base_model: ModelName
    load_checkpoint_path: str | None = None


class FakeProfile(_Strict):
    """How the recipe runs on the fake backend: the reference configuration samples thousands
    of sequences per step, which is minutes even with no model; the overlay shrinks it for a
    dry run of the whole pipeline (dotted keys like ``--set``, which still wins). Printed at
    start and recorded in config.json."""

    overlay: dict[str, OverlayValue] = Field(
        default_factory=dict,
        description="Dotted spec keys -> values applied when backend is fake, e.g. "
        "{'max_steps': 4}.",
    )


class RLRecipeSpec(RunSpec):
    """``kind: rl_recipe`` - rl_basic, rl_loop and their variants."""

    kind: Literal["rl_recipe"]
    loop: RLLoop = RLLoop.TRAIN
    recipe_name: str = "recipe_rl_basic"
    dataset: RLDatasetSpec
    learning_rate: Annotated[float, Field(gt=0)] = 4e-5
    max_tokens: PositiveInt = 256
    temperature: Annotated[float, Field(gt=0)] = 1.0
    loss_fn: RLLossFn = RLLossFn.IMPORTANCE_SAMPLING
    loss_fn_config: dict[str, float | str] | None = None
    lora_rank: PositiveInt = 32
    save_every: NonNegativeInt = 20
    eval_every: NonNegativeInt = 20
    ttl_seconds: PositiveInt | None = 604800
    max_steps: PositiveInt | None = None
    remove_constant_reward_groups: bool = False
    async_config: dict[str, Any] | None = None
    stream_minibatch_config: dict[str, Any] | None = None
    kl_penalty_coef: Annotated[float, Field(ge=0)] = 0.0
    kl_discount_factor: Annotated[float, Field(ge=0, le=1)] = 0.0
    kl_reference_config: KLReferenceSpec | None = None
    num_substeps: PositiveInt = 1
    compute_post_kl: bool = False
    rolling_save_every: NonNegativeInt = 0
    fake: FakeProfile = FakeProfile()

    @field_validator(*NOT_IMPLEMENTED)
    @classmethod
    def _not_implemented(cls, value: Any, info: Any) -> Any:
        default = cls.model_fields[info.field_name].default
        if value != default:
            raise ValueError(
                f"{NOT_IMPLEMENTED[info.field_name]} is not implemented here (the synchronous "
                f"default path only); remove {info.field_name} or set it to {default!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RLRecipeSpec:
        if self.kl_penalty_coef > 0 and self.kl_reference_config is None:
            raise ValueError("kl_penalty_coef > 0 needs kl_reference_config (its base_model)")
        if self.loop == RLLoop.RL_LOOP:
            if self.dataset.builder != RLDatasetKind.GSM8K:
                raise ValueError("loop rl_loop trains on gsm8k only (the reference's rl_loop.py)")
            fixed = {
                "loss_fn": RLLossFn.IMPORTANCE_SAMPLING,
                "loss_fn_config": None,
                "temperature": 1.0,
                "remove_constant_reward_groups": False,
                "renderer_name": None,
                "load_checkpoint_path": None,
                "eval_every": 20,
                "kl_penalty_coef": 0.0,
                "kl_reference_config": None,
            }
            for key, value in fixed.items():
                if getattr(self, key) != value:
                    raise ValueError(f"loop rl_loop does not take {key} (its loop fixes it)")
            if self.dataset.seed:
                raise ValueError("loop rl_loop takes the train rows in order: no dataset.seed")
        return self
