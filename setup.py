"""Packaging hook: a wheel carries the renderer goldens, so `cookbook-run --conformance` works
from any directory after a non-editable `pip install .`.

The goldens stay where the `golden` nox session writes them (golden/renderers/); building a
wheel maps them into the package as ``cookbook/_golden/renderers/`` (no copy in the repository).
An editable install reads the repository's golden/ instead (:func:`cookbook.parity.golden.
default_golden_dir`). Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

GOLDENS = Path(__file__).resolve().parent / "golden" / "renderers"
PACKAGED = Path("cookbook", "_golden", "renderers")


class BuildPyWithGoldens(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode or not GOLDENS.is_dir():
            return  # editable: the repository's golden/ is read in place
        target = Path(self.build_lib) / PACKAGED
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(GOLDENS, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode and GOLDENS.is_dir():
            target = Path(self.build_lib) / PACKAGED
            outputs += [str(target / p.relative_to(GOLDENS)) for p in GOLDENS.rglob("*.json")]
        return outputs


setup(cmdclass={"build_py": BuildPyWithGoldens})
