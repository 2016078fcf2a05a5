"""The batch template path with its encodes pipelined (``cookbook/renderers/encode_pipeline.py``):
still the per-conversation output, errors and warnings, with the batch cut into parts of two
conversations so every interleaving of plan, encode and assembly occurs on small inputs.

The interleavings are forced without sleeps: :class:`_LazyExecutor` runs a job only when its
result is asked for, so everything the main thread does between a submit and that wait is what
it would do while a worker encodes; a guard on the tokenizer's Rust backend fails any such
tokenizer call. The real worker thread runs the rest.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from test_batch import CONVERSATIONS, _assert_same
from test_batch_parity import _outcome
from test_batch_template_path import (
    TEMPLATE_CONVERSATIONS,
    TEMPLATE_RENDERERS,
    _assert_same_as_per_conversation,
)

from cookbook.renderers import Renderer, TrainOnWhat, batch_template_examples, get_renderer
from cookbook.renderers.batch import TEMPLATES, build_supervised_examples_batch
from cookbook.renderers.encode_pipeline import INLINE, EncodePipeline, shared_worker
from cookbook.tokenizers import get_tokenizer

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
# A renderer of each mechanism the pipeline has to respect: a split header the renderer divides
# with its tokenizer (DeepSeek V4.1), a BOS read through the memo (role_colon), a leading message
# and warnings (gpt-oss), a default system prompt (Kimi K2), split encoding (Qwen3).
GUARDED = [
    ("deepseekv4_1", "cookbook-standin/deepseek-v4.1"),
    ("role_colon", LLAMA),
    ("gpt_oss_medium_reasoning", "openai/gpt-oss-20b"),
    ("kimi_k2", "cookbook-standin/kimi-k2"),
    ("qwen3", "Qwen/Qwen3-8B"),
]


@pytest.fixture
def parts_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipeline every batch of two or more, two conversations a part."""
    monkeypatch.setattr(batch_template_examples, "PART", 2)
    monkeypatch.setattr(batch_template_examples, "PIPELINED_FROM", 2)


@pytest.mark.usefixtures("parts_of_two")
@pytest.mark.parametrize(
    "train_on_what",
    [TrainOnWhat.LAST_ASSISTANT_MESSAGE, TrainOnWhat.ALL_ASSISTANT_MESSAGES],
    ids=str,
)
@pytest.mark.parametrize(("name", "model"), [*TEMPLATE_RENDERERS, ("llama3", LLAMA)])
def test_pipelined_equals_per_conversation(
    name: str, model: str, train_on_what: TrainOnWhat, caplog: pytest.LogCaptureFixture
) -> None:
    """On the worker thread: same examples, first error and warnings as one at a time (the
    conversations include ones the renderer renders itself, mid-batch)."""
    renderer = get_renderer(name, get_tokenizer(model, "offline"))
    _assert_same_as_per_conversation(renderer, TEMPLATE_CONVERSATIONS, train_on_what, caplog)


class _LazyExecutor:
    """Runs each job when its result is first asked for; counts the jobs not yet run."""

    def __init__(self) -> None:
        self.waiting = 0
        self.running = False

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        executor = self
        self.waiting += 1

        class Lazy(Future):
            def _run(self) -> None:
                if not self.done():
                    executor.waiting -= 1
                    executor.running = True
                    try:
                        INLINE.submit(fn, *args).add_done_callback(self._copy)
                    finally:
                        executor.running = False

            def _copy(self, done: Future[Any]) -> None:
                error = done.exception()
                if error is None:
                    self.set_result(done.result())
                else:
                    self.set_exception(error)

            def result(self, timeout: float | None = None) -> Any:
                self._run()
                return super().result(timeout)

            def exception(self, timeout: float | None = None) -> BaseException | None:
                self._run()
                return super().exception(timeout)

        return Lazy()


# Backend attributes whose use depends on, or changes, the state an encode in flight relies on.
_GUARDED_PREFIXES = ("encode", "decode", "no_", "enable_", "token_to_id", "id_to_token")
_GUARDED_NAMES = {"truncation", "padding", "post_process"}


class _GuardedBackend:
    """A Rust backend that fails any such use while a job is submitted and not yet run."""

    def __init__(self, backend: Any, executor: _LazyExecutor) -> None:
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_executor", executor)

    def _check(self, name: str) -> None:
        executor = object.__getattribute__(self, "_executor")
        if executor.waiting and not executor.running:
            raise AssertionError(f"tokenizer backend .{name} used while an encode is in flight")

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_GUARDED_PREFIXES) or name in _GUARDED_NAMES:
            self._check(name)
        return getattr(object.__getattribute__(self, "_backend"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        setattr(object.__getattribute__(self, "_backend"), name, value)


@pytest.mark.usefixtures("parts_of_two")
@pytest.mark.parametrize("train_on_what", list(TrainOnWhat), ids=str)
@pytest.mark.parametrize(("name", "model"), GUARDED)
def test_no_tokenizer_call_while_an_encode_is_in_flight(
    name: str, model: str, train_on_what: TrainOnWhat
) -> None:
    """Rendering a conversation that is not plain, a memo miss in the generation-prompt check,
    the renderer splitting a header: each waits for the encodes in flight first."""
    executor = _LazyExecutor()
    tokenizer = copy.copy(get_tokenizer(model, "offline"))
    tokenizer._tokenizer = _GuardedBackend(tokenizer._tokenizer, executor)
    # Two renderers: what one caches rendering one at a time must not spare the other's batch
    # its tokenizer calls (DeepSeek V4.1's prefix splits).
    single, renderer = get_renderer(name, tokenizer), get_renderer(name, tokenizer)
    conversations = [*TEMPLATE_CONVERSATIONS, *CONVERSATIONS]
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        conversations = [[{**m, "trainable": True} for m in c] for c in conversations]
    outcomes = [_outcome(single, messages, train_on_what) for messages in conversations]
    rendered = [m for m, o in zip(conversations, outcomes, strict=True) if _rendered(o)]
    batch = batch_template_examples.template_examples(
        TEMPLATES[type(renderer)], renderer, rendered, train_on_what, executor
    )
    _assert_same(batch, [o for o in outcomes if _rendered(o)])
    assert executor.waiting == 0


def _rendered(outcome: Any) -> bool:
    return not isinstance(outcome, Exception)
