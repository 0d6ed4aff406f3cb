"""`expkit resume` compares the stored config with today's: keys a newer expkit added are no change at their default."""

from __future__ import annotations

from pathlib import Path

from expkit.experiment.job import config_drift


def _run_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


def test_a_key_added_since_the_run_started_is_no_drift_at_its_default(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, "trainer:\n  epochs: 3\n")
    now = {"trainer": {"epochs": 3, "precision": None, "mixed_precision": False}}
    assert config_drift(run_dir, now) == []


def test_a_new_key_away_from_its_default_and_a_changed_key_are_drift(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, "trainer:\n  epochs: 3\n")
    drift = config_drift(run_dir, {"trainer": {"epochs": 4, "mixed_precision": True}})
    assert drift == ["trainer.epochs: 3 -> 4", "trainer.mixed_precision: '<absent>' -> True"]


def test_a_key_unknown_to_the_schema_is_drift_when_added(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, "trainer:\n  epochs: 3\n")
    assert config_drift(run_dir, {"trainer": {"epochs": 3}, "extra": {"k": 1}}) == ["extra.k: '<absent>' -> 1"]
