"""Issue 25's splits: every preprocessing op has a fit below config, config reads no models/training, no training import circle."""

from __future__ import annotations

from typing import Any, Literal

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


def graph() -> Any:
    """expkit's import graph (every import statement, also those inside functions)."""
    grimp = pytest.importorskip("grimp")  # installed with import-linter
    return grimp.build_graph("expkit", cache_dir=None)


def test_config_imports_nothing_above_it_but_the_source_registry() -> None:
    imports = graph()
    low = ("expkit.config", "expkit.errors", "expkit.registry")
    upward = {
        (module, imported)
        for module in imports.modules
        if module.startswith(low)
        for imported in imports.find_modules_directly_imported_by(module)
        if imported.startswith("expkit") and not imported.startswith(low)
    }
    assert {imported for _, imported in upward} <= {"expkit.data.named"}, sorted(upward)


def test_activations_and_callbacks_do_not_import_each_other() -> None:
    assert not graph().chain_exists("expkit.training.activations", "expkit.training.callbacks")
