"""Run the pinned reference's own training loop against a Tinker-compatible server, offline.

Runs inside the reference's virtualenv (``tinker-cookbook==0.5.8``, ``tinker==0.38``, our
package ``--no-deps``; ``nox -s parity`` builds it). The reference's
``tinker_cookbook.supervised.train.main`` (a ``kind: recipe`` spec) or ``rl.train.main`` (a
``kind: rl_recipe`` spec with ``loop: train``) trains through the real, unpatched ``tinker`` SDK,
which reads ``TINKER_BASE_URL`` and ``TINKER_API_KEY`` from the environment: pointed at
``cookbook-serve``, the server records every call the reference makes, to be compared with the
calls ``cookbook-run --set backend=tinker`` makes (``cookbook.parity.served``).

The reference's config is the one ``cookbook-run`` resolves for the same spec and ``--set``s
with the spec's local profile overlay applied (what a run through cookbook-serve trains):
every ``train.Config`` field our recipe spec shares is taken from it, and the dataset is the one
our :func:`~cookbook.supervised.recipe.resolve_data` picks (offline: the declared fallback
file), built with the reference's own ``FromConversationFileBuilder``. For RL, every field of
our :func:`cookbook.rl.recipe.train_config` the reference's ``rl.train.Config`` shares is copied,
and the dataset is the reference's own ``ArithmeticDatasetBuilder`` with our builder's fields
(GSM8K would need the hub). The tokenizer name is
registered to our offline tokenizer directory, as ``tools/generate_recipe_goldens.py`` does.

Usage: TINKER_BASE_URL=http://127.0.0.1:PORT TINKER_API_KEY=tml-local \\
    python tools/reference_through_server.py --spec specs/sl_basic.yaml --set num_epochs=1 \\
    --log-path DIR
"""

from __future__ import annotations

import os

# Nothing here may reach the hub: switched off before datasets/transformers are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import argparse
import asyncio
import importlib.metadata
import sys
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chz
from tinker_cookbook import tokenizer_utils
from tinker_cookbook.recipes.math_rl.arithmetic_env import (
    ArithmeticDatasetBuilder as RefArithmeticBuilder,
)
from tinker_cookbook.renderers import TrainOnWhat
from tinker_cookbook.rl import train as ref_rl_train
from tinker_cookbook.supervised import train as ref_train
from tinker_cookbook.supervised.data import FromConversationFileBuilder
from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig

from cookbook.backends.tinker.retry import Scrubber
from cookbook.backends.tinker.service import (
    API_KEY_ENV,
    check_connectivity,
    cookbook_serve_identity,
)
from cookbook.exceptions import ConfigurationError, CookbookError
from cookbook.parity import golden as g
from cookbook.rl.recipe import resolve_rl_data, train_config
from cookbook.runner.run import tokenizer_model_name
from cookbook.specs.loader import load_spec
from cookbook.specs.recipe import Backend, RecipeSpec
from cookbook.specs.rl import RLDatasetKind, RLLoop, RLRecipeSpec
from cookbook.supervised.recipe import resolve_data, resolve_renderer_name
from cookbook.tokenizers import offline_directory

LOOPBACK = ("127.0.0.1", "localhost", "::1")
NOT_CONFIG = ("log_path", "dataset_builder", "base_url")
"""``train.Config`` fields not copied from the spec: set here, built here, from the env."""


def resolve_spec(spec_path: Path, overrides: list[str]) -> RecipeSpec | RLRecipeSpec:
    """The spec as cookbook-run resolves it for a run served by cookbook-serve: the local
    profile's overlay applied, the caller's overrides on top (``--set`` wins)."""
    spec = load_spec(spec_path, overrides, local_engine=True)
    if isinstance(spec, RLRecipeSpec):
        if spec.loop != RLLoop.TRAIN or spec.dataset.builder != RLDatasetKind.ARITHMETIC:
            raise ConfigurationError(
                f"{spec_path}: loop: the reference driver runs rl.train.main on the arithmetic "
                f"env only (offline), not loop {spec.loop.value} on {spec.dataset.builder.value}"
            )
        return spec
    if not isinstance(spec, RecipeSpec):
        raise ConfigurationError(
            f"{spec_path}: kind: a recipe or rl_recipe spec is needed, not {spec.kind!r}"
        )
    if spec.evals:
        raise ConfigurationError(f"{spec_path}: evals: the reference's loop has no eval tasks")
    return spec


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def reference_config(spec_path: Path, spec: RecipeSpec, log_path: Path) -> Any:
    """The reference's ``train.Config`` for ``spec`` (see the module docstring)."""
    renderer_name, _ = resolve_renderer_name(spec)
    info = resolve_data(spec_path, spec, renderer_name).info
    if info["builder"] != "conversations_file":
        raise ConfigurationError(
            f"{spec_path}: dataset: the reference driver runs offline, so only a conversations "
            f"file (or no_robots' offline fallback) can be used, not {info['source']}"
        )
    ds = spec.dataset
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=spec.model_name,
        renderer_name=renderer_name,
        max_length=ds.max_length,
        batch_size=ds.batch_size,
        train_on_what=TrainOnWhat(ds.train_on_what.value) if ds.train_on_what else None,
    )
    builder = FromConversationFileBuilder(
        common_config=common,
        file_path=info["path"],
        test_size=info["test_size"],
        shuffle_seed=info["shuffle_seed"],
    )
    shared = [
        name
        for name in chz.chz_fields(ref_train.Config)
        if name in RecipeSpec.model_fields and name not in NOT_CONFIG
    ]
    return ref_train.Config(
        log_path=str(log_path),
        dataset_builder=builder,
        **{name: _plain(getattr(spec, name)) for name in shared if name != "renderer_name"},
        renderer_name=renderer_name,
    )


def reference_rl_config(spec_path: Path, spec: RLRecipeSpec, log_path: Path) -> Any:
    """The reference's ``rl.train.Config`` for ``spec`` (see the module docstring)."""
    renderer_name, _ = resolve_renderer_name(spec)
    # The tokenizer cookbook-run renders with through this server: the spec model's, or the
    # served stand-in's own (smollm2_gguf) - the reference must render with the same one.
    # (asked as a served run: this driver always trains through the server, whatever the
    # spec's own backend says)
    served_by = cookbook_serve_identity(spec.model_copy(update={"backend": Backend.TINKER}))
    tokenizer_model = tokenizer_model_name(spec_path, spec, served_by, renderer_name)
    register_offline_tokenizer(tokenizer_model)
    builder = resolve_rl_data(spec_path, spec, renderer_name, tokenizer_model).builder
    ours = train_config(spec, renderer_name, builder, log_path)
    dataset = RefArithmeticBuilder(
        **{name: getattr(builder, name) for name in chz.chz_fields(RefArithmeticBuilder)}
    )
    kl = ours.kl_reference_config
    shared = [
        name
        for name in chz.chz_fields(ref_rl_train.Config)
        if hasattr(ours, name) and name not in ("dataset_builder", "kl_reference_config")
    ]
    return ref_rl_train.Config(
        dataset_builder=dataset,
        kl_reference_config=(
            ref_rl_train.KLReferenceConfig(
                base_model=kl.base_model, load_checkpoint_path=kl.load_checkpoint_path
            )
            if kl is not None
            else None
        ),
        **{name: getattr(ours, name) for name in shared},
    )


def register_offline_tokenizer(model_name: str) -> None:
    """The reference's ``get_tokenizer(model_name)`` would ask the hub; answer with ours."""
    tokenizer = tokenizer_utils.get_tokenizer(str(offline_directory(model_name)))
    tokenizer_utils.register_tokenizer(model_name, lambda: tokenizer)


def check_environment() -> str:
    """The SDK's target: it must be set, and on this machine (no request may leave it)."""
    base_url = os.environ.get("TINKER_BASE_URL")
    if not base_url or not os.environ.get(API_KEY_ENV):
        raise ConfigurationError(
            "set TINKER_BASE_URL=http://127.0.0.1:PORT (a running cookbook-serve) and "
            "TINKER_API_KEY=tml-..."
        )
    if urlparse(base_url).hostname not in LOOPBACK:
        raise ConfigurationError(f"TINKER_BASE_URL {base_url!r} is not a loopback address")
    installed = importlib.metadata.version(g.REFERENCE_PACKAGE)
    if installed != g.REFERENCE_VERSION:
        raise ConfigurationError(
            f"need {g.REFERENCE_PACKAGE}=={g.REFERENCE_VERSION}, found {installed}"
        )
    return base_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="a kind: recipe spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-path", type=Path, required=True, help="the reference's log_path")
    args = parser.parse_args(argv)
    try:
        base_url = check_environment()
        spec = resolve_spec(args.spec, args.overrides)
        # The SDK alone would retry a dead server silently for minutes.
        key = os.environ[API_KEY_ENV]
        check_connectivity(base_url, spec.tinker.connect_timeout_s, Scrubber([key]))
        if isinstance(spec, RLRecipeSpec):
            config, train_main = reference_rl_config(args.spec, spec, args.log_path), ref_rl_train
        else:
            config, train_main = reference_config(args.spec, spec, args.log_path), ref_train
        register_offline_tokenizer(spec.model_name)
    except CookbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"reference {train_main.__name__}.main for {spec.name} against {base_url}, "
        f"log in {args.log_path}"
    )
    asyncio.run(train_main.main(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
