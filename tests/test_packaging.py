"""Conformance from anywhere: a wheel built from this repository carries every renderer golden
(setup.py maps golden/renderers into cookbook/_golden), and after a non-editable install the
conformance runner finds them from any working directory; --golden-dir and
$COOKBOOK_GOLDEN_DIR override where they are read from.

Building the wheel is offline (no build isolation, no index) and done once per module in a copy
of the sources, so the worktree gets no build/ or egg-info.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cookbook.cli import main
from cookbook.parity.golden import GOLDEN_DIR_ENV, default_golden_dir, golden_files

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
SOURCES = ("cookbook", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "_golden")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(GOLDEN / "renderers", src / "golden" / "renderers")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build += ["--no-index", "-q", ".", "-w", str(work / "dist")]
    done = subprocess.run(build, cwd=src, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (work / "dist").glob("cookbook-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_every_renderer_golden_unchanged(wheel: Path) -> None:
    files = golden_files(GOLDEN)
    expected = {p.relative_to(GOLDEN).as_posix(): _sha(p.read_bytes()) for p in files}
    prefix = "cookbook/_golden/"
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name[len(prefix) :]: _sha(archive.read(name))
            for name in archive.namelist()
            if name.startswith(prefix)
        }
    assert len(expected) > 100 and packaged == expected


@pytest.mark.slow
def test_conformance_runs_from_any_directory_after_a_non_editable_install(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
    done = subprocess.run([*install, "--target", str(site), str(wheel)], capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "a_port_repo"  # no golden/ here or above it
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", GOLDEN_DIR_ENV)}
    env |= {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True
        )

    where = run("-c", "import cookbook.parity.golden as g; print(g.default_golden_dir())")
    assert where.stdout.strip() == str(site / "cookbook" / "_golden"), where.stderr
    adapter = f"{sys.executable} -m cookbook.parity.adapter"
    checked = run("-m", "cookbook.cli", "--conformance", adapter, "--renderer", "llama3")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "items pass: conforms" in checked.stdout
    assert (elsewhere / "reports" / "conformance" / "conformance.md").is_file()


def test_in_a_checkout_the_repository_goldens_are_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(GOLDEN_DIR_ENV, raising=False)
    assert default_golden_dir() == GOLDEN


def test_the_environment_variable_overrides_and_a_wrong_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(GOLDEN_DIR_ENV, str(empty))
    assert default_golden_dir() == empty
    monkeypatch.chdir(tmp_path)
    assert main(["--conformance", "true"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --golden-dir {empty}: no goldens under renderers/\n"
    assert not (tmp_path / "reports").exists()
