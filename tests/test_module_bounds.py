"""Issue 25: every preprocessing op has a fit below config; the import contracts (layers, plug-in tracking, no circles) hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from expkit.config.schema import STEP_CLASSES, PreprocessStep
from expkit.data.preprocess import FITS, fit_step


def test_every_registered_step_has_a_fit_in_data_preprocess() -> None:
    assert set(STEP_CLASSES.values()) <= set(FITS), sorted(c.__name__ for c in set(STEP_CLASSES.values()) - set(FITS))


def test_a_step_without_a_fit_is_a_clear_programming_error() -> None:
    class Clip(PreprocessStep):  # declared, never given a fit
        op: Literal["clip"]

    with pytest.raises(NotImplementedError, match=r"op 'clip' has no fit: register one with @fits\(Clip\)"):
        fit_step(Clip(op="clip"), np.zeros((2, 2)))


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's import-linter contracts: the layer order (registry lookups excepted), tracking as a plug-in that
    imports nothing from training, serving, data or models, and no import circle at any depth (every import counts,
    also those inside functions). `.ci/run` runs `lint-imports` too; this puts a broken contract in the test report."""
    script = Path(sys.executable).with_name("lint-imports")
    if not script.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([str(script), "--no-cache"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout, done.stdout[-2000:]
