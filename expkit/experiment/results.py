"""What a finished training leaves: the model's summary and diagram in its folder, and a `RunRecord` for the recorder.

The job builds here what needs training, serving or data (the inference model, the decision-boundary field);
the recorder receives the values and only writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from expkit.config.schema import ExperimentConfig
from expkit.experiment.recorder import DatasetFacts, DecisionBoundary, ModelToLog, RunRecord

#: The run folder's files every recorded run keeps (vocabulary.txt: text sources).
RECORDED_FILES = ("config.yaml", "overrides.yaml", "metrics.json", "model_summary.txt", "vocabulary.txt")


def write_model_files(model: Any, output_dir: Path) -> Path | None:
    """model_summary.txt and the architecture diagram (model.png, when it can be drawn); returns the diagram."""
    from expkit.models.diagram import plot_architecture

    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    (output_dir / "model_summary.txt").write_text("\n".join(lines) + "\n")
    return plot_architecture(model, output_dir / "model.png")


def run_record(
    config: ExperimentConfig,
    outcome: Any,
    splits: Any,
    output_dir: Path,
    name: str,
    overrides: list[str],
    knobs: dict[str, Any],
    diagram: Path | None,
) -> RunRecord:
    """The record of a trained (and tested) outcome: values, the run folder's files, and builders of its models and figures."""
    seen = outcome.splits or splits  # named by input/output for graph models
    d = config.dataset
    facts = splits.record(output_dir)  # plain values from the source: nothing is read back from the run folder
    dataset = DatasetFacts(facts.name, facts.origin, facts.digest, facts.sizes, facts.raw_example) if facts.sizes else None
    params: dict[str, Any] = dict(facts.params)
    artifacts: list[tuple[Path, str | None]] = [(path, None) for path in facts.artifacts]
    artifacts.append((output_dir / "plots" / "augmented_samples.png", "plots"))
    artifacts += [(output_dir / file, None) for file in RECORDED_FILES]
    artifacts.append((output_dir / "activations", None))  # ActivationLogger's per-epoch npz (and PNGs), when configured
    if diagram:
        artifacts.append((diagram, None))
    accuracy = outcome.test_metrics.get("test_accuracy")
    return RunRecord(
        run_name=name,
        overrides=overrides,
        output_dir=output_dir,
        history=outcome.history,
        test_metrics=outcome.test_metrics,
        confusion=outcome.confusion,
        num_params=int(outcome.model.count_params()),
        dtype_policy=config.trainer.dtype_policy,
        dataset_label=f"{d.name} ({seen.fingerprint})",
        dataset=dataset,
        params=params,
        artifacts=artifacts,
        models=(lambda: models_to_log(config, outcome.model, seen, output_dir)) if config.tracking.log_model else None,
        boundary=(lambda: decision_boundary(outcome.model, d, config.seed, accuracy)) if d.source == "playground" else None,
        hparams=knobs if config.tracking.tensorboard.enabled else None,
    )


def models_to_log(config: ExperimentConfig, model: Any, splits: Any, output_dir: Path) -> list[ModelToLog]:
    """The training model, and the inference model that takes raw inputs (written to <run folder>/inference)."""
    from expkit.serving.inference import model_outputs
    from expkit.training.runner import input_example

    example: Any = input_example(splits, 5)
    named = isinstance(example, dict)  # a graph model's named inputs and outputs
    example = {k: np.asarray(v) for k, v in example.items()} if named else np.asarray(example).astype(np.float32)
    models = [ModelToLog("training model", "keras", model, example=example, outputs=model_outputs(model, example))]
    if getattr(splits, "raw_x_example", None) is not None:
        from expkit.serving.inference import pyfunc_parts, write_inference
        from expkit.serving.text import text_signature

        steps, raw = config.dataset.preprocess.x, splits.raw_x_example
        if getattr(splits, "source_fitted", None) is not None:  # raw strings through the fitted TextVectorization
            from expkit.serving.text import write_text_inference

            folder = write_text_inference(model, splits.source_fitted, raw, config.model.loss, output_dir / "inference")
        else:
            folder = write_inference(model, steps, splits.x_fitted, raw, config.model.loss, output_dir / "inference")
        models.append(
            ModelToLog(
                "inference model (raw inputs)", "pyfunc", tag="inference_model_uri", **pyfunc_parts(folder, raw, text_signature(folder))
            )
        )
    elif getattr(splits, "feature_types", None) is not None:  # a table: the trained model takes raw rows itself
        from expkit.serving.table import table_pyfunc_parts, write_table_inference

        loss = next(iter(config.model.head_losses().values()))  # the (first) output's: classes or values
        folder = write_table_inference(model, splits, loss, output_dir / "inference")
        models.append(ModelToLog("inference model (raw rows)", "pyfunc", tag="inference_model_uri", **table_pyfunc_parts(folder, splits)))
    return models


def decision_boundary(model: Any, dataset: Any, seed: int, accuracy: float | None) -> DecisionBoundary:
    """For a 2-D (playground) problem: the model's probability of the positive class over the Playground's square, and the test points."""
    from expkit.data import playground

    points, xx, yy = playground.grid()
    outputs = model.predict(playground.model_inputs(dataset, seed, points), batch_size=4096, verbose=0)
    probability = (outputs[:, -1] if outputs.ndim == 2 else outputs.reshape(-1)).reshape(xx.shape)
    _, (test_points, test_labels) = playground.raw_points(dataset.name, dataset.playground or playground.Playground(), seed)
    if dataset.max_test_samples:
        test_points, test_labels = test_points[: dataset.max_test_samples], test_labels[: dataset.max_test_samples]
    title = f"{dataset.name}: test points" + (f", accuracy {accuracy:.3f}" if accuracy is not None else "")
    return DecisionBoundary(probability, xx, yy, test_points, test_labels, title)
