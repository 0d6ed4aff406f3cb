"""What a finished run leaves for use and reading: experiment-only params, the dataset input, models linked to the final
metrics, the run card, the raw-input inference model (in process, through `expkit predict`, and served by
`mlflow models serve`), `expkit evaluate` and `expkit ensemble`. All on one small real-MNIST sweep of two seeds."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests import mlflow_server as ms
from tests.conftest import assert_clean_error, expkit_env, run_expkit, run_inprocess
from tests.mnist_sweep import Sweep, mnist_sweep


@pytest.fixture(scope="module")
def sweep(shared_data: Path) -> Sweep:
    done = mnist_sweep(shared_data)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def raw_test(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data / "mnist.npz") as data:
        return data["x_test"][:300], data["y_test"][:300]


def final_value(client: mlflow.MlflowClient, run_id: str, key: str) -> tuple[int, float]:
    history = client.get_metric_history(run_id, key)
    last = max(history, key=lambda m: m.step)
    return last.step, last.value


# ---------------------------------------------------------------- what MLflow shows


@pytest.mark.slow
def test_params_describe_the_experiment_only(sweep: Sweep) -> None:
    for run in sweep.children():
        params = run.data.params
        assert params["seed"] in ("1", "2") and params["trainer.epochs"] == "2" and params["dataset.validation.holdout"] == "200"
        assert not [k for k in params if k.startswith(("paths.", "tracking.", "hydra."))]
        assert "trainer.verbose" not in params
        assert not [k for k, v in params.items() if v == "None"], params
        # The resolved config stays an artifact, paths included.
        config = mlflow.artifacts.load_text(run.info.artifact_uri + "/config.yaml")
        assert "output_dir:" in config and "tracking:" in config


@pytest.mark.slow
def test_dataset_input_has_name_source_digest_and_split_sizes(sweep: Sweep) -> None:
    for run in sweep.children():
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == "mnist"
        assert dataset.digest == run.data.tags["dataset.fingerprint"]
        assert json.loads(dataset.source)["uri"].endswith("mnist.npz")
        assert json.loads(dataset.profile) == {"train_samples": 1000, "validation_samples": 200, "test_samples": 500}
        tags = {t.key: t.value for t in dataset_input.tags}
        assert tags["mlflow.data.context"] == "training"


@pytest.mark.slow
def test_child_names_start_with_the_swept_value(sweep: Sweep) -> None:
    names = [r.info.run_name for r in sweep.children()]
    assert names[0].startswith("seed=1 mnist_dense") and names[1].startswith("seed=2 mnist_dense"), names
    parent = sweep.parent()
    assert not [k for k in parent.data.metrics if k.startswith("best_")]
    best = {k: v for k, v in parent.data.metrics.items() if k.startswith("best/")}
    winner = next(r for r in sweep.children() if r.info.run_id == parent.data.tags["sweep.best_run_id"])
    assert best["best/test_accuracy"] == winner.data.metrics["test_accuracy"]


@pytest.mark.slow
def test_logged_models_carry_the_final_metrics(sweep: Sweep) -> None:
    client = sweep.client()
    for run in sweep.children():
        outputs = run.outputs.model_outputs
        assert len(outputs) == 2  # the training model and the raw-input inference model
        last_step, last_val_loss = final_value(client, run.info.run_id, "val_loss")
        assert last_step == 1
        for output in outputs:
            model = client.get_logged_model(output.model_id)
            metrics = {m.key: m for m in model.metrics}
            assert metrics["val_loss"].step == last_step and metrics["val_loss"].value == pytest.approx(last_val_loss)
            assert metrics["test_accuracy"].value == pytest.approx(run.data.metrics["test_accuracy"])
        assert {client.get_logged_model(o.model_id).name for o in outputs} == {"model", "inference"}


@pytest.mark.slow
def test_run_card_names_preset_changes_metrics_plots_and_commands(sweep: Sweep) -> None:
    run = sweep.children()[0]
    card = mlflow.artifacts.load_text(run.info.artifact_uri + "/run_card.md")
    assert card == run.data.tags["mlflow.note.content"]  # also the run page's description
    assert "preset **mnist_dense**" in card
    assert "- `seed=1`" in card and "- `trainer.epochs=2`" in card
    assert f"| test_accuracy | {run.data.metrics['test_accuracy']:.4f} |" in card
    for plot in ("plots/loss.png", "plots/confusion_matrix.png"):
        assert f"![{plot}](get-artifact?path={plot}&run_uuid={run.info.run_id})" in card
    assert "expkit train -m" not in card and "expkit train +experiment=mnist_dense seed=1" in card
    assert f"expkit resume {run.data.tags['output_dir']}" in card
    logged = {f.path for f in sweep.client().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss.png", "plots/accuracy.png", "plots/confusion_matrix.png"} <= logged


# ---------------------------------------------------------------- the raw-input inference model


def training_predictions(run: mlflow.entities.Run, raw: np.ndarray) -> np.ndarray:
    """The training model on arrays preprocessed as the preset does (flatten, / 255)."""
    import keras

    model = keras.models.load_model(Path(run.data.tags["output_dir"]) / "checkpoints" / "final.keras")
    return np.asarray(model.predict(raw.reshape(len(raw), -1).astype(np.float32) / 255.0, verbose=0))


@pytest.mark.slow
def test_inference_model_takes_raw_uint8_images(sweep: Sweep, raw_test: tuple[np.ndarray, np.ndarray]) -> None:
    raw, labels = raw_test
    run = sweep.children()[0]
    mlflow.set_tracking_uri(sweep.uri)
    model = mlflow.pyfunc.load_model(run.data.tags["inference_model_uri"])
    assert str(model.metadata.signature.inputs.inputs[0].type) == "uint8"
    assert model.metadata.signature.inputs.inputs[0].shape == (-1, 28, 28)
    expected = training_predictions(run, raw)
    probabilities = model.predict(raw, params={"output": "probabilities"})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    classes = model.predict(raw)
    assert list(classes) == [str(c) for c in expected.argmax(axis=1)]
    assert np.mean(classes.astype(int) == labels) > 0.7
    # The training model is logged unchanged, on preprocessed float inputs.
    training = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    assert training.metadata.signature.inputs.inputs[0].shape == (-1, 784)


@pytest.mark.slow
def test_predict_command_equals_model_predict(sweep: Sweep, raw_test: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    raw, _ = raw_test
    run = sweep.children()[1]
    np.savez(tmp_path / "raw.npz", x=raw)
    out = tmp_path / "preds.csv"
    done = run_expkit(
        "predict", run.info.run_id[:8], "--input", str(tmp_path / "raw.npz"), "--output", str(out), "--probabilities", cwd=sweep.root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(raw)} prediction(s) written to {out}" in done.stdout
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    expected = training_predictions(run, raw)
    assert [int(r["class"]) for r in rows] == list(expected.argmax(axis=1))
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in range(10)] for r in rows], expected, atol=1e-5)


@pytest.mark.slow
def test_predict_rejects_bad_inputs_with_one_message(sweep: Sweep, tmp_path: Path) -> None:
    from expkit.errors import ExpkitError
    from expkit.stored.predict import predict_file

    run_id = sweep.children()[0].info.run_id
    np.save(tmp_path / "wrong_shape.npy", np.zeros((3, 28, 27), dtype=np.uint8))
    np.save(tmp_path / "scaled.npy", np.full((3, 28, 28), 0.5))
    np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.zeros(3))
    cases = {
        "wrong_shape.npy": r"shape \(28, 27\) per sample, the model takes \(28, 28\)",
        "scaled.npy": "dtype float64 do not fit the model's raw dtype uint8",
        "two.npz": "holds \\['a', 'b'\\]; which are the inputs",
        "missing.npz": "no such file",
        "notes.txt": "cannot read notes.txt",
    }
    (tmp_path / "notes.txt").write_text("hello")
    for name, pattern in cases.items():
        with pytest.raises(ExpkitError, match=pattern):
            predict_file(run_id, tmp_path / name, tmp_path / "out.csv", uri=sweep.uri, probabilities=False)
    # Through the CLI: one line, exit code 2.
    missing = run_inprocess("predict", "0123456789abcdef", "--input", str(tmp_path / "scaled.npy"), cwd=sweep.root)
    assert_clean_error(missing, "no run '0123456789abcdef'")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="mlflow models serve needs uvicorn")
def test_mlflow_models_serve_answers_raw_json(sweep: Sweep, raw_test: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    raw, _ = raw_test
    run = sweep.children()[0]
    port = ms.free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", run.data.tags["inference_model_uri"], "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = ms.start_process(
        command, url=f"http://127.0.0.1:{port}", log=tmp_path / "serve.log", cwd=sweep.root, env=expkit_env(MLFLOW_TRACKING_URI=sweep.uri)
    )
    try:
        ms.wait_ping(server)
        answer = ms.rest(server.url, "invocations", {"inputs": raw[:20].tolist()})
        expected = training_predictions(run, raw[:20]).argmax(axis=1)
        assert answer["predictions"] == [str(c) for c in expected]
        probabilities = ms.rest(server.url, "invocations", {"inputs": raw[:2].tolist(), "params": {"output": "probabilities"}})
        assert np.asarray(probabilities["predictions"]).shape == (2, 10)
    finally:
        ms.stop(server)


# ---------------------------------------------------------------- evaluate and ensemble


@pytest.mark.slow
def test_evaluate_logs_to_the_same_run_under_its_own_name(sweep: Sweep) -> None:
    from expkit.stored.evaluate import evaluate

    run = sweep.children()[0]
    label, metrics = evaluate(run.info.run_id, [], split="validation", name="holdout", uri=sweep.uri)
    assert label == "holdout" and set(metrics) == {"eval/holdout/accuracy", "eval/holdout/loss"}
    after = sweep.client().get_run(run.info.run_id)
    assert after.data.metrics["eval/holdout/accuracy"] == pytest.approx(run.data.metrics["val_accuracy"], abs=1e-6)
    assert after.data.metrics["test_accuracy"] == run.data.metrics["test_accuracy"]  # nothing overwritten
    # Another dataset config: the first 100 test samples.
    label, metrics = evaluate(run.info.run_id, ["dataset.max_test_samples=100"], split="test", name=None, uri=sweep.uri)
    assert label == "mnist_test"
    assert sweep.client().get_run(run.info.run_id).data.metrics["eval/mnist_test/accuracy"] == metrics["eval/mnist_test/accuracy"]
    assert after.data.tags.get("eval.mnist_test.overrides") is None
    assert sweep.client().get_run(run.info.run_id).data.tags["eval.mnist_test.overrides"] == "dataset.max_test_samples=100"
    # Through the CLI: one line, exit code 2.
    bad = run_inprocess("evaluate", run.info.run_id, "model.units=3", cwd=sweep.root)
    assert_clean_error(bad, "not a dataset override")


@pytest.mark.slow
def test_ensemble_of_two_seeds_is_at_least_the_weaker_member(sweep: Sweep) -> None:
    first, second = sweep.children()
    done = run_expkit("ensemble", first.info.run_id, second.info.run_id[:10], "--fit-weights", cwd=sweep.root, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights fitted on validation data" in done.stdout
    ensemble_id = done.stdout.strip().split()[-1]
    run = sweep.client().get_run(ensemble_id)
    assert run.info.status == "FINISHED" and run.data.params["ensemble.weights_fitted_on"] == "validation"
    members = [first.data.metrics["test_accuracy"], second.data.metrics["test_accuracy"]]
    assert run.data.metrics["test_accuracy"] >= min(members)
    for member, accuracy in zip((first, second), members, strict=True):
        assert run.data.metrics[f"members/{member.info.run_id[:8]}/test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    weights = [float(w) for w in run.data.params["ensemble.weights"].split(",")]
    assert math.isclose(sum(weights), 1, abs_tol=1e-3)
    # The printed table shows all three, with the figures logged.
    lines = {
        line.split()[0]: line
        for line in done.stdout.splitlines()
        if line[:8] in (first.info.run_id[:8], second.info.run_id[:8], ensemble_id[:8])
    }
    assert len(lines) == 3
    assert f"{run.data.metrics['test_accuracy']:.4f}" in lines[ensemble_id[:8]]
    # The sweep's store is shared with tests/test_ui.py, which reads its runs table: leave it as the sweep made it.
    sweep.client().delete_run(ensemble_id)


@pytest.mark.slow
def test_ensemble_rejects_bad_members_with_one_message(sweep: Sweep) -> None:
    from expkit.errors import ExpkitError
    from expkit.stored.ensemble import ensemble

    first, second = (r.info.run_id for r in sweep.children())
    cases = [
        ((first, first), {}, "listed twice"),
        ((first, "0123456789abcdef"), {}, "no run '0123456789abcdef'"),
        ((first, second), {"weights": "1,x"}, "not numbers"),
        ((first, second), {"weights": "1,2,3"}, "need 2 non-negative weights"),
        ((first, second), {"weights": "1,1", "fit": True}, "not both"),
        ((first, sweep.parent().info.run_id), {}, "has no config.yaml"),
    ]
    for refs, options, pattern in cases:
        with pytest.raises(ExpkitError, match=pattern):
            ensemble(list(refs), **{"weights": None, "fit": False, "uri": sweep.uri, **options})
    # Members trained on other data or with another loss.
    from expkit.stored.ensemble import check_compatible
    from expkit.stored.run import open_run

    members = [open_run(first, sweep.uri), open_run(second, sweep.uri)]
    base = members[0].config_dict()
    other_data = {**base, "dataset": {**base["dataset"], "name": "fashion_mnist"}}
    with pytest.raises(ExpkitError, match="trained on other data"):
        check_compatible(members, [base, other_data])
    with pytest.raises(ExpkitError, match="another loss"):
        check_compatible(members, [base, {**base, "model": {**base["model"], "loss": "mse"}}])
    # Through the CLI: one line, exit code 2.
    assert_clean_error(run_inprocess("ensemble", first, cwd=sweep.root), "at least 2 runs")


# ---------------------------------------------------------------- the inference model for other preprocessing (in process)


def build_and_compare(steps: list[dict], train_raw: np.ndarray, raw: np.ndarray, loss: str, units: int, tmp_path: Path) -> None:
    """Fit `steps` on train_raw as training does, build the inference model, and check it against the training model."""
    import keras
    from pydantic import TypeAdapter

    from expkit.config.schema import Step
    from expkit.data.preprocess import apply_steps
    from expkit.serving.inference import InferenceModel, write_inference

    parsed = [TypeAdapter(Step).validate_python(s) for s in steps]
    fitted: list[dict] = []
    train, (test,) = apply_steps(parsed, train_raw, [raw], "x", fitted)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(train.shape[1:]), keras.layers.Dense(units, activation="softmax" if units > 1 else None)])
    write_inference(model, parsed, fitted, raw, loss, tmp_path / "inference")
    inference = InferenceModel(tmp_path / "inference")
    expected = np.asarray(model.predict(test.astype(np.float32), verbose=0))
    np.testing.assert_allclose(inference.predict(raw, output="probabilities"), expected, rtol=1e-5, atol=1e-5)
    if units > 1:
        assert list(inference.predict(raw)) == [str(c) for c in expected.argmax(axis=1)]


def test_inference_model_standardizes_with_the_training_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(50, 10, size=(200, 13))
    train[:, 3] = 1.0  # a constant column: std 0 becomes 1, as in training
    raw = rng.normal(50, 10, size=(7, 13))
    build_and_compare([{"op": "standardize"}], train, raw, "mse", 1, tmp_path)


def test_inference_model_multi_hot_encodes_raw_word_indices(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def sequences(n: int) -> np.ndarray:
        out = np.empty(n, dtype=object)
        for i in range(n):
            out[i] = list(rng.integers(1, 120, size=rng.integers(0, 30)))  # some indices beyond num_words, one may be empty
        return out

    build_and_compare([{"op": "multi_hot", "num_words": 100}], sequences(50), sequences(6), "categorical_crossentropy", 3, tmp_path)
