"""`expkit predict`, `evaluate` and `ensemble`: using trained runs' models (registered on the app in expkit/cli.py)."""

from __future__ import annotations

import typer

from expkit.commands.common import URI_HELP, guarded


def predict(
    target: str = typer.Argument(..., help="A run id (or unique prefix), or a model URI such as models:/m-..."),
    input: str = typer.Option(..., "--input", "-i", help="Raw samples: .npz (key x / x_test / inputs), .npy, .csv, or a folder of images"),
    output: str = typer.Option("predictions.csv", "--output", "-o", help="CSV to write, one row per sample"),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write each class's probability"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Predict with a run's raw-input model: inputs in the dataset's own form (e.g. uint8 images), classes out."""
    from pathlib import Path

    def run() -> None:
        from expkit.stored.predict import predict_file

        count = predict_file(target, Path(input), Path(output), uri=uri, probabilities=probabilities)
        typer.echo(f"{count} prediction(s) written to {output}")

    guarded(run)


def evaluate(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run whose model to evaluate"),
    split: str = typer.Option("test", "--split", help="test, validation or train"),
    name: str | None = typer.Option(None, "--name", help="Metric prefix eval/NAME/... (default: DATASET_SPLIT)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Re-evaluate a trained run on another split or dataset (dataset.KEY=VALUE overrides); logs eval/NAME/* to the same run."""

    def run() -> None:
        from expkit.stored.evaluate import evaluate as evaluate_run
        from expkit.tracking.table import format_value

        _, metrics = evaluate_run(run_id, list(ctx.args), split=split, name=name, uri=uri)
        for key, value in metrics.items():
            typer.echo(f"{key}: {format_value(value)}")

    guarded(run)


def ensemble(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids of the same dataset"),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated member weights (default: equal)"),
    fit_weights: bool = typer.Option(False, "--fit-weights", help="Fit the weights on the validation split (never on test)"),
    uri: str | None = typer.Option(None, "--uri", help=URI_HELP),
) -> None:
    """Average several runs' predictions; print member and ensemble test metrics; log the ensemble as a run."""

    def run() -> None:
        from expkit.stored.ensemble import ensemble as make_ensemble
        from expkit.stored.ensemble import render

        typer.echo(render(make_ensemble(list(run_ids), weights=weights, fit=fit_weights, uri=uri)))

    guarded(run)
