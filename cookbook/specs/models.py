"""Pydantic models of every spec kind; the JSON Schemas in specs/schema/ are generated from them.

Models forbid unknown keys so a typo is an error with a line number, not a silently ignored
setting (the torchtune lesson).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cookbook.renderers.types import TrainOnWhat
from cookbook.specs.evals import EvalSpec
from cookbook.specs.recipe import Identifier, RecipeSpec, RendererName, _Strict
from cookbook.specs.rl import RLRecipeSpec


class TextPartSpec(_Strict):
    type: Literal["text"]
    text: str


class ThinkingPartSpec(_Strict):
    type: Literal["thinking"]
    thinking: str


class SyntheticImageSpec(_Strict):
    """A test image generated from a seed (cookbook.parity.images): nothing to download."""

    width: Annotated[int, Field(ge=1, le=4096)]
    height: Annotated[int, Field(ge=1, le=4096)]
    seed: int = 0
    mode: Literal["RGB", "RGBA", "L", "P"] = Field(
        default="RGB", description="PIL mode; image_to_chunk converts RGBA, LA and P to RGB."
    )


class ImagePartSpec(_Strict):
    type: Literal["image"]
    image: SyntheticImageSpec


ContentPartSpec = Annotated[
    TextPartSpec | ThinkingPartSpec | ImagePartSpec, Field(discriminator="type")
]


class FunctionBodySpec(_Strict):
    name: str
    arguments: str = Field(description="Arguments as a JSON string, as the reference expects.")


class ToolCallSpec(_Strict):
    type: Literal["function"] = "function"
    id: str | None = None
    function: FunctionBodySpec


class MessageSpec(_Strict):
    """One chat message, in the reference's ``Message`` shape."""

    role: Annotated[str, Field(min_length=1)]
    content: str | list[ContentPartSpec]
    trainable: bool | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallSpec] | None = None

    def to_message(self) -> dict[str, Any]:
        """The plain dict renderers take (unset optional keys are absent, not None)."""
        return self.model_dump(mode="json", exclude_none=True)


class RendererCase(_Strict):
    """A conversation rendered under one or more TrainOnWhat values and compared to a golden."""

    id: Identifier
    category: Identifier = Field(description="Groups cases in reports (e.g. unicode, multi_turn).")
    description: str = ""
    messages: Annotated[list[MessageSpec], Field(min_length=1)]
    train_on_what: list[TrainOnWhat] | None = Field(
        default=None,
        description="Defaults to every value the messages allow: CUSTOMIZED alone when "
        "messages carry 'trainable', every other value otherwise.",
    )

    @model_validator(mode="after")
    def _trainable_matches_customized(self) -> RendererCase:
        has_flags = [m.trainable is not None for m in self.messages]
        if any(has_flags) and not all(has_flags):
            raise ValueError("either every message has 'trainable' or none does")
        return self

    def message_dicts(self) -> list[dict[str, Any]]:
        return [m.to_message() for m in self.messages]

    def resolved_train_on_what(self) -> list[TrainOnWhat]:
        if self.train_on_what is not None:
            return list(self.train_on_what)
        if self.messages[0].trainable is not None:
            return [TrainOnWhat.CUSTOMIZED]
        return [t for t in TrainOnWhat if t is not TrainOnWhat.CUSTOMIZED]


class RendererCasesSpec(_Strict):
    """``kind: renderer_cases`` - parity cases for one renderer over one tokenizer."""

    kind: Literal["renderer_cases"]
    version: Literal[1]
    renderer: RendererName
    model_name: Annotated[
        str, Field(min_length=1, description="Tokenizer source, as get_tokenizer(model_name).")
    ]
    cases: Annotated[list[RendererCase], Field(min_length=1)]

    @field_validator("cases")
    @classmethod
    def _unique_ids(cls, cases: list[RendererCase]) -> list[RendererCase]:
        seen: set[str] = set()
        for case in cases:
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id!r}")
            seen.add(case.id)
        return cases


OracleItem = Literal["generation", "supervised"]


class DisagreementSpec(_Strict):
    renderer: Annotated[str, Field(min_length=1)]
    case: Identifier | Literal["*"] = Field(
        description="A case id, or * for every case of the renderer (at least one must "
        "disagree); a case then needs no entry of its own for these items."
    )
    items: Annotated[
        list[OracleItem],
        Field(min_length=1, description="Which oracle comparisons of the case disagree."),
    ]


class DisagreementGroupSpec(_Strict):
    """Cases where the reference and an oracle disagree for one reason."""

    oracle: Identifier = Field(description="Oracle key in the goldens, e.g. chat_template.")
    reason: Annotated[str, Field(min_length=1)]
    where: Annotated[list[DisagreementSpec], Field(min_length=1)]


class NoOracleSpec(_Strict):
    """A renderer with no second oracle, and why."""

    renderer: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]


class RendererExclusionsSpec(_Strict):
    """``kind: renderer_exclusions`` - every known disagreement with a second oracle, with its
    reason. Declared entries must match the goldens exactly: an undeclared disagreement and a
    declared one that no longer occurs both fail (tests/test_exclusions.py)."""

    kind: Literal["renderer_exclusions"]
    version: Literal[1]
    no_oracle: list[NoOracleSpec] = Field(default_factory=list)
    disagreements: list[DisagreementGroupSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_item_declared_once(self) -> RendererExclusionsSpec:
        seen: set[tuple[str, str, str, str]] = set()
        for group in self.disagreements:
            for where in group.where:
                for item in where.items:
                    key = (group.oracle, where.renderer, where.case, item)
                    if key in seen:
                        raise ValueError(f"{'/'.join(key)} is declared twice")
                    seen.add(key)
        for oracle, renderer, case, item in seen:
            if case != "*" and (oracle, renderer, "*", item) in seen:
                raise ValueError(f"{oracle}/{renderer}/{case}/{item} is also declared by *")
        return self


class ReferenceTestEntry(_Strict):
    """Reference tests (pytest node ids, or fnmatch patterns over them) and why they are
    sorted apart."""

    tests: Annotated[list[str], Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]


class NotImplementedRenderers(_Strict):
    """Reference tests of renderers cookbook does not implement yet: counted apart from gaps
    when they pass on the reference and fail on ours."""

    issue: int = Field(description="The issue that ports them.")
    files: Annotated[
        list[str], Field(min_length=1, description="Test files of unported renderers.")
    ]
    names: list[str] = Field(
        default_factory=list,
        description="Modules and classes of the unported renderers (cookbook.renderers.kimi_k25, "
        "Qwen3VLRenderer); a test failing on ours because one is missing belongs here too.",
    )
    message: Annotated[
        str, Field(min_length=1, description="Text of our error for an unported renderer name.")
    ]


class ReferenceTestsSpec(_Strict):
    """``kind: reference_tests`` - how the reference's own test suite, run against both
    packages (``nox -s reference-tests``), is sorted beyond pass/fail: tests that cannot apply
    to another package, and the declared category of unported renderers."""

    kind: Literal["reference_tests"]
    version: Literal[1]
    not_applicable: list[ReferenceTestEntry] = Field(default_factory=list)
    not_implemented_renderers: NotImplementedRenderers | None = Field(
        default=None,
        description="Absent while every renderer of the pinned reference is ported.",
    )
    known_gaps: list[ReferenceTestEntry] = Field(
        default_factory=list,
        description="Tests that pass only on the reference, declared until fixed; the gating "
        "test fails when one is missing here or a listed one passes.",
    )


SPEC_KINDS: dict[str, type[BaseModel]] = {
    "eval": EvalSpec,
    "recipe": RecipeSpec,
    "reference_tests": ReferenceTestsSpec,
    "renderer_cases": RendererCasesSpec,
    "renderer_exclusions": RendererExclusionsSpec,
    "rl_recipe": RLRecipeSpec,
}
"""kind -> model; each gets specs/schema/<kind>.schema.json."""
