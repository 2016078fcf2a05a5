"""Eval tasks attached to a recipe (``evals: [specs/evals/X.yaml, ...]``).

They run at every eval step of the training loop, on the same sampling client (pre-step
weights) as the held-out NLL evaluator, and log ``eval/<task>/<metric>`` into metrics.jsonl.
The recipe's model, tokenizer and renderer are used; an eval spec that names another renderer
is refused, since its prompts would not be in the chat format the model is trained on. Each
task is prepared here, before the run directory is created, so a bad eval spec writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from cookbook.evals.runner import TaskEvaluator, prepare_task
from cookbook.specs.evals import EvalSpec
from cookbook.specs.loader import field_error, load_spec
from cookbook.specs.recipe import RecipeSpec
from cookbook.tokenizers import Tokenizer


def attached_evaluators(
    spec_path: Path, recipe: RecipeSpec, renderer_name: str, tokenizer: Tokenizer
) -> list[TaskEvaluator]:
    evaluators: list[TaskEvaluator] = []
    names: set[str] = set()
    for index, reference in enumerate(recipe.evals):
        loc = ("evals", index)
        path = Path(reference)
        if not path.is_file():
            raise field_error(spec_path, loc, f"no such eval spec: {reference}")
        spec = load_spec(path)
        if not isinstance(spec, EvalSpec):
            raise field_error(spec_path, loc, f"{reference} is a {spec.kind} spec, not an eval")
        if spec.renderer_name is not None and spec.renderer_name != renderer_name:
            raise field_error(
                spec_path,
                loc,
                f"{reference} renders with {spec.renderer_name!r}, this recipe trains with "
                f"{renderer_name!r}",
            )
        if spec.name in names:
            raise field_error(spec_path, loc, f"two eval tasks are named {spec.name!r}")
        names.add(spec.name)
        evaluators.append(TaskEvaluator(prepare_task(path, spec, renderer_name, tokenizer)))
    return evaluators
