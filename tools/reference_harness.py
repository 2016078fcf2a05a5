"""Running the pinned reference's own training loops on our recording fake backend: what the
recipe and RL golden generators (generate_recipe_goldens.py, generate_rl_goldens.py) share.

Runs inside the reference's virtualenv (``tinker-cookbook==0.5.8`` and our package
``--no-deps``): ``tinker.ServiceClient`` is swapped for our
:class:`~cookbook.backends.fake.FakeServiceClient` for the length of one run, and our offline
tokenizer is registered under :data:`MODEL` so the reference's code finds it offline.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tinker
from tinker_cookbook import tokenizer_utils

from cookbook.backends.fake import CallRecorder, FakeServiceClient
from cookbook.parity import golden as g
from cookbook.parity import recipe as r
from cookbook.tokenizers import TokenizerSource, get_tokenizer, offline_directory, provenance

MODEL = "meta-llama/Llama-3.1-8B"
RENDERER = "llama3"


def versions() -> dict[str, str]:
    names = (g.REFERENCE_PACKAGE, "tinker", "transformers", "tokenizers", "datasets", "numpy")
    return {name: importlib.metadata.version(name) for name in names}


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


def run_on_fake(
    log_path: str,
    state_dir: Path,
    start: Callable[[], None],
    faults: dict | None = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Run ``start`` (a reference loop) with ``tinker.ServiceClient`` as our recording fake:
    its calls, new metrics rows (timings dropped) and new checkpoint rows. With ``faults``, a
    ``RuntimeError`` ends the run and is recorded (``crashed_with``)."""
    recorder = CallRecorder()
    log = Path(log_path)
    before = {name: r.read_jsonl(log / name) for name in ("metrics.jsonl", "checkpoints.jsonl")}

    def service_client(**_kwargs: Any) -> FakeServiceClient:
        return FakeServiceClient(state_dir, recorder, faults, tokenizer=tokenizer)

    crashed = None
    logging.disable(logging.WARNING)
    try:
        with (
            patched(tinker, "ServiceClient", service_client),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            start()
    except RuntimeError as exc:
        if faults is None:
            raise
        crashed = repr(exc)
    finally:
        logging.disable(logging.NOTSET)
    after = {name: r.read_jsonl(log / name) for name in before}
    return {
        "calls": recorder.calls,
        "metrics": [r.without_wall_clock(row) for row in after["metrics.jsonl"]][
            len(before["metrics.jsonl"]) :
        ],
        "checkpoints": after["checkpoints.jsonl"][len(before["checkpoints.jsonl"]) :],
        **({"crashed_with": crashed} if faults is not None else {}),
    }


def prepare_reference(
    argv: list[str] | None, description: str
) -> tuple[argparse.Namespace, dict[str, str], dict[str, Any], Any] | None:
    """What every recipe-golden generator starts with: its arguments, the reference's versions
    (None, after saying why, when it is not the pinned one), our offline tokenizer's provenance,
    and that tokenizer as the reference loads it, registered under MODEL so the reference's
    own code finds it offline."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=Path("golden"))
    parser.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    args = parser.parse_args(argv)
    reference = versions()
    if reference[g.REFERENCE_PACKAGE] != g.REFERENCE_VERSION:
        print(f"error: need {g.REFERENCE_PACKAGE}=={g.REFERENCE_VERSION}, found {reference}")
        return None
    tokenizer_info = provenance(get_tokenizer(MODEL, TokenizerSource.OFFLINE)).to_json()
    ref_tokenizer = tokenizer_utils.get_tokenizer(str(offline_directory(MODEL)))
    tokenizer_utils.register_tokenizer(MODEL, lambda: ref_tokenizer)
    return args, reference, tokenizer_info, ref_tokenizer
