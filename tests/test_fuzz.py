"""Random overrides and random YAML presets: validation must end in success or a clean ExpkitError, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from expkit.config import validate_config
from expkit.config.overrides import check_overrides
from expkit.errors import ExpkitError
from tests.conftest import run_inprocess

KEYS = [
    "trainer.epochs", "trainer.batch_size", "trainer.verbose", "optimizer.learning_rate", "optimizer.type", "model.units",
    "model.loss", "model.metrics", "model.layers", "model.layers.0.units", "model.layers.0.type", "model.layers.1.activation",
    "dataset.validation.holdout", "dataset.validation.split", "dataset.preprocess.x", "dataset.name", "dataset.source", "seed",
    "name", "callbacks.terminate_on_nan.type", "tracking.enabled", "tracking.tensorboard.histogram_freq", "dataset", "optimizer",
    "model", "experiment", "callbacks", "trainer.epoch", "optimiser.lr", "paths.data_dir",
]  # fmt: skip
SPECIAL = [
    "null", "[1,2]", "{a: 1}", "${oops}", "${model.units}", "mnist_dense", "Dense", "relu", "softmax", "1e-3", "-1", "0", "1.5",
    "[{type: Dense, units: 3}]", "[{op: scale, divisor: 0}]", "'quoted'", "a,b", "range(1,3)", "''", "true", "nan", "inf",
]  # fmt: skip
SAFE_TEXT = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=16)
VALUES = st.one_of(st.integers(-3, 10**7).map(str), st.floats(allow_nan=True).map(str), st.sampled_from(SPECIAL), SAFE_TEXT)
OVERRIDE = st.one_of(
    st.builds(lambda p, k, v: f"{p}{k}={v}", st.sampled_from(["", "+", "++"]), st.sampled_from(KEYS), VALUES),
    st.builds(lambda k: f"~{k}", st.sampled_from(KEYS)),
    SAFE_TEXT,
)
YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), SAFE_TEXT, st.sampled_from(SPECIAL))
YAML_TREES = st.recursive(
    YAML_SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from([*KEYS, "units", "type", "op"]), kids, max_size=4),
    max_leaves=12,
)
PRESET_BODY = st.dictionaries(
    st.sampled_from(["trainer", "model", "optimizer", "dataset", "callbacks", "name", "seed", "defaults"]), YAML_TREES, max_size=4
)


def write_preset(tmp_path_factory: Any, body: dict) -> Path:
    """A config dir holding experiment/fuzz.yaml with `body` as a global preset."""
    conf = tmp_path_factory.mktemp("conf")
    (conf / "experiment").mkdir()
    (conf / "experiment" / "fuzz.yaml").write_text("# @package _global_\n" + yaml.safe_dump(body))
    return conf


def validate_in_process(args: list[str]) -> None:
    """What `expkit validate ARGS` does before any training: check overrides, compose, validate."""
    try:
        cfg = check_overrides(args)
        with tempfile.TemporaryDirectory() as tmp:
            OmegaConf.set_struct(cfg, False)
            cfg.paths = {"root_dir": tmp, "log_dir": tmp, "output_dir": tmp, "data_dir": None}
            validate_config(cfg)
    except ExpkitError:
        pass


# Example counts: each run draws new examples (no fixed seed), so CI's runs explore further over time; the counts keep
# the three config fuzzers (here and in test_preflight.py) at about 35 s of a CI worker.
@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDE, max_size=4))
def test_random_overrides_never_crash(overrides: list[str]) -> None:
    validate_in_process(overrides)


# Found by this fuzzer: a broken interpolation on the way to a misspelled key; a list where Hydra needs a folder name.
REGRESSIONS = [({"trainer": "${0}"}, ["trainer.epoch=3"]), ({"name": ["${model.units}"]}, [])]


@pytest.mark.slow
@settings(max_examples=140, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=PRESET_BODY, overrides=st.lists(OVERRIDE, max_size=2))
@example(body=REGRESSIONS[0][0], overrides=REGRESSIONS[0][1])
@example(body=REGRESSIONS[1][0], overrides=REGRESSIONS[1][1])
def test_random_yaml_presets_never_crash(tmp_path_factory, body: dict, overrides: list[str]) -> None:
    conf = write_preset(tmp_path_factory, body)
    validate_in_process(["--config-dir", str(conf), "+experiment=fuzz", *overrides])


# Each example runs the whole CLI (in-process, `run_inprocess`): few examples, and no shrinking, so a failure stays cheap in CI.
@pytest.mark.slow
@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=PRESET_BODY, overrides=st.lists(OVERRIDE, max_size=2))
@example(body=REGRESSIONS[0][0], overrides=REGRESSIONS[0][1])
@example(body=REGRESSIONS[1][0], overrides=REGRESSIONS[1][1])
def test_random_input_through_the_real_cli(tmp_path_factory, body: dict, overrides: list[str]) -> None:
    conf = write_preset(tmp_path_factory, body)
    done = run_inprocess("validate", "--config-dir", str(conf), "+experiment=fuzz", *overrides, cwd=conf)
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
