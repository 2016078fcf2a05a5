"""Fuzzing the spec loader and `--set`: whatever the file holds (any bytes, any text, YAML
built to hurt) and whatever `--set` says, loading either succeeds or fails with exactly one
line `file[:line]: [field: ]message` - never a traceback - and the CLI exits 2 having written
nothing. `nox -s fuzz` runs these with many more examples (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cookbook import cli
from cookbook.exceptions import SpecError
from cookbook.specs import load_spec

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[1]
SPECS = [ROOT / "specs" / "sl_basic.yaml", ROOT / "specs" / "evals" / "arithmetic.yaml"]
SPECS += sorted((ROOT / "tests" / "malformed_specs").glob("*.yaml"))[:8]
ONE_LINE = re.compile(r"^[^\n]+$")
# A billion laughs: 8^9 leaves if the aliases were expanded.
BILLION_LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "evals: [*i, *i]\nlocal: {overlay: {a: *i}}"
)
# YAML that has broken loaders: complex keys, tags, aliases, bad scalars, deep nesting, BOM.
NASTY = [
    "? [a, b]\n: 1",
    "? {a: 1}\n: 2",
    "a: !!python/object/apply:os.system [echo]",
    "a: !!int twelve",
    "a: !!float x",
    "a: !!binary '%%%'",
    "a: !!timestamp 2001-13-45",
    "a: !!set {1, 2}",
    "a: !!omap [1, 2]",
    "a: &x [*x]",
    "a: *nowhere",
    "a: &a [1]\nb: [*a, *a, *a]",
    "[" * 600,
    "- " * 300 + "x",
    "{" * 200 + "}" * 200,
    "\ufeffkind: recipe",
    "kind: recipe\x00",
    "kind:\trecipe",
    "%YAML 9.9\n---\na: 1",
    "--- a\n--- b",
    "kind: [recipe]",
    'kind: recipe\nversion: 1\nname: "x\\ny"\nmodel_name: a/b\ndataset: {}',
    'kind: recipe\n"a\\nb": 1',
    "kind: eval\n1: 2",
    "kind: recipe\nnull: 1",
    "kind: recipe\n? !!binary aGk=\n: 1",
    BILLION_LAUGHS,
    "a: 1e400",
    "a: .nan",
    "a: 0x_",
    "a: '\\ud800'",
]


def _check_load(path: Path, overrides: list[str] = ()) -> None:
    try:
        spec = load_spec(path, overrides)
    except SpecError as exc:
        message = str(exc)
        assert ONE_LINE.match(message), message
        assert message.startswith(str(path)) or message.startswith("--set"), message
    else:
        assert isinstance(spec, BaseModel)


def _write(data: bytes) -> Path:
    handle, name = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(handle, "wb") as f:
        f.write(data)
    return Path(name)


def _loads(data: bytes, overrides: list[str] = ()) -> None:
    path = _write(data)
    try:
        _check_load(path, overrides)
    finally:
        path.unlink()


def _mutated(text: str, draw: st.DrawFn) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        new = draw(st.sampled_from(NASTY) | st.text(max_size=40))
        match draw(st.sampled_from(["replace", "insert", "delete", "indent"])):
            case "replace" if lines:
                lines[at] = new
            case "insert":
                lines.insert(at, new)
            case "delete" if lines:
                del lines[at]
            case "indent" if lines:
                lines[at] = draw(st.sampled_from([" ", "  ", "\t", "- "])) + lines[at]
    return "\n".join(lines)


@st.composite
def spec_texts(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(SPECS)).read_text("utf-8")
    return _mutated(base, draw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(st.binary(max_size=400))
def test_any_bytes_load_or_fail_in_one_line(data: bytes) -> None:
    _loads(data)


@given(st.text(max_size=400) | st.lists(st.sampled_from(NASTY), max_size=4).map("\n".join))
@example(BILLION_LAUGHS)
def test_any_text_loads_or_fails_in_one_line(text: str) -> None:
    _loads(text.encode("utf-8", "surrogatepass"))


@given(spec_texts())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_mutated_real_specs_load_or_fail_in_one_line(text: str) -> None:
    _loads(text.encode("utf-8", "surrogatepass"))


@given(json_values)
def test_any_yaml_document_loads_or_fails_in_one_line(value: object) -> None:
    _loads(yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass"))


KEYS = ["backend", "dataset.batch_size", "learning_rate", "local.overlay", "tinker.replay"]
KEYS += ["evals", "kind", "dataset", "final_sample.prompt", "a.b.c", "", "."]


@given(
    st.lists(
        st.text(max_size=60)
        | st.builds(
            "{}={}".format,
            st.sampled_from(KEYS) | st.text(max_size=12),
            st.sampled_from(NASTY) | st.text(max_size=30),
        ),
        max_size=3,
    )
)
def test_any_set_overrides_load_or_fail_in_one_line(overrides: list[str]) -> None:
    _check_load(SPECS[0], overrides)


@given(st.binary(max_size=300) | spec_texts().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_the_cli_exits_0_or_2_in_one_line_and_writes_nothing(data: bytes) -> None:
    """Through `cookbook-run` itself; what a valid spec would run is replaced by a no-op, so
    only loading and validation are exercised."""
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "spec.yaml"
        spec.write_bytes(data)
        rc, err = _cli(Path(work), [str(spec), "--set", "max_steps=1"])
        assert (rc, err) == (0, "") or (rc == 2 and ONE_LINE.match(err.rstrip("\n"))), err
        assert sorted(p.name for p in Path(work).iterdir()) == ["spec.yaml"]


def _cli(work: Path, argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    runners = ("_run_renderer_cases", "_show_renderer_exclusions", "_run_recipe", "_run_eval")
    saved = {name: getattr(cli, name) for name in runners}
    err = io.StringIO()
    cwd = Path.cwd()
    try:
        for name in runners:
            setattr(cli, name, lambda _args, _spec: 0)
        os.chdir(work)
        with contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    finally:
        os.chdir(cwd)
        for name, runner in saved.items():
            setattr(cli, name, runner)
    return rc, err.getvalue()
