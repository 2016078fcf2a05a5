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
from collections.abc import Callable
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
from cookbook.renderers.batch_templates_deepseek import SYSTEM
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
    """Pipeline every batch of two or more, two conversations a part, on any machine."""
    monkeypatch.setattr(batch_template_examples, "PART", 2)
    monkeypatch.setattr(batch_template_examples, "PIPELINED_FROM", 2)
    monkeypatch.setattr(batch_template_examples, "usable_cores", lambda: 2)


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


def _llama3() -> Renderer:
    return get_renderer("llama3", get_tokenizer(LLAMA, "offline"))


@pytest.mark.usefixtures("parts_of_two")
def test_a_failed_encode_leaves_its_conversations_to_the_renderer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An encode that raises in the worker: the conversations from its part on are rendered one
    by one (same examples), and the first error is still the first failing conversation's."""
    renderer = get_renderer("deepseekv3", get_tokenizer("deepseek-ai/DeepSeek-V3.1", "offline"))
    encode_many = batch_template_examples.encode_many
    calls = []

    def failing_second_part(*args: Any, **kwargs: Any) -> list[list[int]]:
        calls.append(args)
        if len(calls) in (3, 4):  # the second part's two batches (plain and split texts)
            raise RuntimeError("encode failed")
        return encode_many(*args, **kwargs)

    monkeypatch.setattr(batch_template_examples, "encode_many", failing_second_part)
    conversations = CONVERSATIONS * 3
    single = [renderer.build_supervised_example(m) for m in conversations]
    _assert_same(build_supervised_examples_batch(renderer, conversations), single)
    assert len(calls) > 4
    late_system = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
    with pytest.raises(Exception) as single_error:
        renderer.build_supervised_example(late_system)
    calls.clear()
    with pytest.raises(type(single_error.value), match=re.escape(str(single_error.value))):
        build_supervised_examples_batch(renderer, [*conversations, late_system])


class _Interrupted(Exception):
    pass


@pytest.mark.usefixtures("parts_of_two")
def test_an_error_in_the_main_thread_waits_for_the_encodes_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception (an interrupt, a renderer's error) while the next part is encoding: the
    call does not return before that encode has ended, so none outlives it."""
    renderer = _llama3()
    seen = []

    def interrupt(self: Renderer, train_on_what: TrainOnWhat) -> None:
        seen.append(train_on_what)
        if len(seen) == 2:
            raise _Interrupted

    monkeypatch.setattr(type(renderer), "_warn_if_prefixes_differ", interrupt)
    executor = _LazyExecutor()
    with pytest.raises(_Interrupted):
        batch_template_examples.template_examples(
            TEMPLATES[type(renderer)],
            renderer,
            CONVERSATIONS * 2,
            TrainOnWhat.LAST_ASSISTANT_MESSAGE,
            executor,
        )
    assert executor.waiting == 0  # the next part's encode, in flight when it raised, has run


def test_pipeline_finishes_jobs_in_order_and_keeps_the_first_failure() -> None:
    """Callbacks run in submission order; a job's Exception is kept (the first) and its
    callback skipped; a BaseException propagates."""
    done: list[int] = []
    executor = _LazyExecutor()
    with EncodePipeline(executor) as pipe:
        first = pipe.submit(done.append, lambda: 1)
        pipe.submit(done.append, _raise, ValueError("a"))
        pipe.submit(done.append, _raise, KeyError("b"))
        last = pipe.submit(done.append, lambda: 4)
        pipe.wait(first)
        assert done == [1] and executor.waiting == 3
        pipe.wait(last)
    assert done == [1, 4]
    assert isinstance(pipe.failed, ValueError)
    with pytest.raises(KeyboardInterrupt), EncodePipeline(executor) as pipe:
        pipe.drain()
        pipe.wait(pipe.submit(done.append, _raise, KeyboardInterrupt()))


def _raise(error: BaseException) -> None:
    raise error


@pytest.mark.usefixtures("parts_of_two")
def test_without_tokenizer_parallelism(monkeypatch: pytest.MonkeyPatch) -> None:
    """TOKENIZERS_PARALLELISM=false: the worker's encodes are serial, still the same output."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("RAYON_NUM_THREADS", "1")
    renderer = _llama3()
    single = [renderer.build_supervised_example(m) for m in CONVERSATIONS]
    _assert_same(build_supervised_examples_batch(renderer, CONVERSATIONS), single)


def test_no_thread_at_import() -> None:
    """The worker starts with the first pipelined batch, not when the renderers are imported."""
    code = (
        "import threading, cookbook.renderers.batch, cookbook.renderers.encode_pipeline as p;"
        "assert p._worker is None and threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
@pytest.mark.usefixtures("parts_of_two")
def test_a_forked_child_starts_its_own_worker() -> None:
    """The parent's worker thread does not exist in a child: a child that reused it would
    queue its encodes for nobody (it would hang; the alarm ends it)."""
    renderer = _llama3()
    expected = build_supervised_examples_batch(renderer, CONVERSATIONS)  # starts the worker
    assert shared_worker() is shared_worker()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the batch renders as in the parent
        status = 1
        try:
            signal.alarm(20)
            _assert_same(build_supervised_examples_batch(renderer, CONVERSATIONS), expected)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.usefixtures("parts_of_two")
def test_a_text_split_again_with_another_prefix_in_a_later_part() -> None:
    """DeepSeek V4.1 splits a system turn's text after its header; the same text can come
    first under the opening (with the effort line) and, in a later part, under a later system
    header: that split is not in the part's encode, so the main thread works it out, after
    waiting for the encodes in flight."""
    executor = _LazyExecutor()
    tokenizer = copy.copy(get_tokenizer("cookbook-standin/deepseek-v4.1", "offline"))
    tokenizer._tokenizer = _GuardedBackend(tokenizer._tokenizer, executor)
    single, renderer = (get_renderer("deepseekv4_1", tokenizer) for _ in range(2))
    effort = object.__new__(type(renderer))._opening("system").removeprefix(SYSTEM)
    assert effort, "the opening must carry the effort line for the texts to coincide"
    first = [{"role": "system", "content": "C"}, {"role": "user", "content": "u"}]
    later = [
        {"role": "user", "content": "u"},
        {"role": "system", "content": effort + "C"},
        {"role": "assistant", "content": "a"},
    ]
    conversations = [first, first, later, later, first]
    calls = []
    split = type(renderer)._prefix_split

    def counted(self: Renderer, prefix: str, tokens: list[int]) -> int:
        calls.append(prefix)
        return split(self, prefix, tokens)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(renderer), "_prefix_split", counted)
        batch = batch_template_examples.template_examples(
            TEMPLATES[type(renderer)], renderer, conversations, TrainOnWhat.ALL_TOKENS, executor
        )
    _assert_same(
        batch, [single.build_supervised_example(m, TrainOnWhat.ALL_TOKENS) for m in conversations]
    )
    assert len(set(calls)) == 2  # both prefixes, each worked out once


@pytest.mark.usefixtures("parts_of_two")
def test_one_core_is_not_pipelined(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one core nothing overlaps: the batch is encoded inline, no worker is asked for."""
    monkeypatch.setattr(batch_template_examples, "usable_cores", lambda: 1)

    def no_worker() -> None:
        raise AssertionError("a worker thread on one core")

    monkeypatch.setattr(batch_template_examples, "shared_worker", no_worker)
    renderer = _llama3()
    single = [renderer.build_supervised_example(m) for m in CONVERSATIONS]
    _assert_same(build_supervised_examples_batch(renderer, CONVERSATIONS), single)
