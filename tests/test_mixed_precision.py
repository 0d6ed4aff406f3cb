"""Mixed precision (`trainer.mixed_precision` / `trainer.precision`): validation, float32 outputs and losses, loss scaling,
the policy restored after a run, and through the CLI: train, log, crash and resume, serve raw inputs."""

from __future__ import annotations

import json
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from expkit.config.schema import Trainer
from tests.conftest import REPO, compose, mlflow_runs, output_dirs, read_metrics, run_expkit, run_inprocess


def test_mixed_precision_true_is_mixed_float16_and_precision_names_any_policy() -> None:
    assert Trainer().dtype_policy == "float32"
    assert Trainer(mixed_precision=True).dtype_policy == "mixed_float16"
    assert Trainer(precision="mixed_bfloat16").dtype_policy == "mixed_bfloat16"
    assert Trainer(mixed_precision=True, precision="mixed_bfloat16").dtype_policy == "mixed_bfloat16"
    assert Trainer(mixed_precision=False, precision="float32").dtype_policy == "float32"


@pytest.mark.parametrize(
    ("kwargs", "loc", "words"),
    [
        ({"mixed_precision": "yes"}, "mixed_precision", "valid boolean"),
        ({"mixed_precision": 1}, "mixed_precision", "valid boolean"),
        ({"precision": "float16"}, "precision", "mixed_float16"),
        ({"mixed_precision": True, "precision": "float32"}, "precision", "drop one of the two keys"),
    ],
)
def test_bad_precision_settings_are_refused(kwargs: dict, loc: str, words: str) -> None:
    with pytest.raises(ValidationError) as error:
        Trainer(**kwargs)
    (problem,) = error.value.errors()
    assert problem["loc"] == (loc,) and words in problem["msg"]


def test_a_bad_mixed_precision_value_is_one_clear_cli_error(tmp_path: Path) -> None:
    done = run_inprocess("validate", "trainer.mixed_precision=sometimes", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "trainer.mixed_precision" in done.stderr and "true or false" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one message


@pytest.mark.parametrize("policy", [pytest.param("mixed_float16", marks=pytest.mark.slow), "mixed_bfloat16"])  # quick: the CPU's policy
def test_a_model_built_under_a_mixed_policy_computes_in_16_bits_with_float32_outputs_and_loss(tmp_path: Path, policy: str) -> None:
    import keras

    from expkit.data.pipeline import load_splits
    from expkit.serving.inference import InferenceModel, write_inference
    from expkit.training.precision import current_policy
    from expkit.training.runner import train_and_evaluate

    config = compose(
        f"trainer.precision={policy}", "trainer.epochs=2", "trainer.verbose=0", "tracking.tensorboard.enabled=false", root=tmp_path
    )
    splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
    outcome = train_and_evaluate(config, splits, tmp_path / "run")
    model = outcome.model
    compute = policy.removeprefix("mixed_")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.dtype_policy.name for layer in dense] == [policy, "float32"]
    assert dense[0].compute_dtype == compute and dense[0].kernel.dtype == "float32"  # float32 variables
    assert str(model.outputs[0].dtype) == "float32"
    # Keras wraps the optimizer for loss scaling under mixed_float16 only; bfloat16 has float32's range.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    assert model.compute_loss(y=outcome.splits.y_test[:8], y_pred=model(outcome.splits.x_test[:8])).dtype == "float32"
    assert np.isfinite(outcome.test_metrics["test_loss"]) and outcome.test_metrics["test_accuracy"] > 0.5
    # The policy is back to float32 for whatever this process builds next (a reused sweep worker's next job).
    assert current_policy() == "float32" and keras.layers.Dense(2).dtype_policy.name == "float32"

    # The inference model takes the raw digits (float64 pixel values 0..16) and gives float32, loaded without warnings.
    steps, raw = config.dataset.preprocess.x, splits.raw_x_example
    folder = write_inference(model, steps, splits.x_fitted, raw, config.model.loss, tmp_path / "inference")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inference = InferenceModel(folder)
    probabilities = inference.predict(raw, output="probabilities")
    assert raw.dtype == np.float64 and probabilities.dtype == np.float32
    expected = np.asarray(model(raw.astype(np.float32) / 16.0))
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)  # the same float16 computation
    assert list(inference.predict(raw)) == [str(c) for c in expected.argmax(axis=1)]


def test_an_output_layer_left_in_float16_is_refused_and_the_policy_restored(tmp_path: Path) -> None:
    from expkit.data.pipeline import load_splits
    from expkit.errors import ExpkitError
    from expkit.training.precision import current_policy
    from expkit.training.runner import train_and_evaluate

    # A `_target_` output layer is not given float32 automatically: its float16 output is refused while the model is built.
    last = "model.layers=[{type: Dense, units: 32, activation: relu}, {_target_: keras.layers.Dense, units: 10, activation: softmax}]"
    config = compose("trainer.mixed_precision=true", last, "trainer.verbose=0", root=tmp_path)
    splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
    with pytest.raises(ExpkitError) as error:
        train_and_evaluate(config, splits, tmp_path / "run")
    assert "float16" in str(error.value) and "dtype: float32" in (error.value.hint or "")
    assert current_policy() == "float32"


def test_graph_model_outputs_are_float32_under_mixed_float16() -> None:
    import keras

    from expkit.config.schema import Model
    from expkit.models.graph import build_graph_model
    from expkit.training.precision import dtype_policy

    spec = Model.model_validate(
        {
            "inputs": {"a": {"shape": [4]}},
            "nodes": [{"name": "h", "type": "Dense", "units": 8, "activation": "relu"}],
            "outputs": {
                "score": {"type": "Dense", "units": 1, "loss": "mse"},
                "hidden": {"in": "h", "loss": "mse"},  # an Identity output: cast to float32 too
            },
        }
    )
    with dtype_policy("mixed_float16"):
        model = build_graph_model(spec, {"a": ((4,), "float32")})
    assert model.get_layer("h").compute_dtype == "float16"
    assert {str(t.dtype) for t in keras.tree.flatten(model.outputs)} == {"float32"}
    assert model.get_layer("score").dtype_policy.name == "float32"


# --- through the CLI --------------------------------------------------------------------------------------------------

MIXED = ("trainer.mixed_precision=true", "trainer.epochs=3", "trainer.verbose=0")


def loss_scaled(weights: Path) -> bool:
    """Whether a saved weights file holds a LossScaleOptimizer's state (its wrapped optimizer's variables)."""
    import h5py

    with h5py.File(weights) as f:
        return "optimizer/inner_optimizer" in f


@pytest.mark.slow
def test_mixed_float16_trains_logs_resumes_after_kill_9_and_serves_raw_inputs(workdir: Path) -> None:
    import keras
    import mlflow

    marker = workdir / "fired"
    crash = f"+callbacks.crash={{_target_: tests.crash.SignalSelf, epoch: 1, signum: {int(signal.SIGKILL)}, marker: '{marker}'}}"
    crashed = run_expkit("train", *MIXED, crash, cwd=workdir, PYTHONPATH=str(REPO))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run_dir,) = output_dirs(workdir)
    state = json.loads((run_dir / "checkpoints" / "resume" / "state.json").read_text())
    assert state["epoch"] == 0  # killed at the end of epoch 1, before its state was saved
    assert loss_scaled(run_dir / "checkpoints" / "resume" / state["weights"])  # the saved optimizer state includes the loss scale

    resumed = run_inprocess("resume", str(run_dir), cwd=workdir, PYTHONPATH=str(REPO))
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1" in resumed.stderr
    assert read_metrics(run_dir)["epochs_run"] == 3

    (run,) = mlflow_runs(workdir, "digits_mlp")
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.mixed_precision"] == "True" and run.data.params["trainer.dtype_policy"] == "mixed_float16"
    assert run.data.metrics["test_accuracy"] > 0.5

    # The resumed process rebuilt the model under the run's policy (float16 layers, a float32 output) and trained on
    # with a loss-scaled optimizer.
    final = keras.models.load_model(run_dir / "checkpoints" / "final.keras", compile=False)
    assert [layer.dtype_policy.name for layer in final.layers if isinstance(layer, keras.layers.Dense)] == ["mixed_float16", "float32"]
    resumed_state = json.loads((run_dir / "checkpoints" / "resume" / "state.json").read_text())
    assert resumed_state["epoch"] == 2 and loss_scaled(run_dir / "checkpoints" / "resume" / resumed_state["weights"])

    # The logged inference model takes the raw digits (float64 pixel values 0..16) and returns float32 and class names.
    from sklearn.datasets import load_digits

    raw = load_digits().data[:64]
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model(run.data.tags["inference_model_uri"])
    probabilities = served.predict(raw, params={"output": "probabilities"})
    assert probabilities.dtype == np.float32 and probabilities.shape == (64, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    # The same numbers as the training model on the preprocessed inputs, to float16's precision.
    expected = np.asarray(final.predict(raw.astype(np.float32) / 16.0, verbose=0))
    assert expected.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=2e-3)
    classes = served.predict(raw)
    assert list(classes) == [str(c) for c in probabilities.argmax(axis=1)]
