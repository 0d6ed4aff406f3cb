"""`expkit ensemble`: a weighted average of several runs' predictions, weights chosen on validation data only."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from expkit.errors import ExpkitError
from expkit.stored.run import StoredRun, open_run

#: Config parts that must be equal for members to average: same data, same preprocessing, same target.
SAME_KEYS = ("dataset",)


def check_compatible(members: list[StoredRun], configs: list[dict[str, Any]]) -> None:
    """One message naming the first member that differs from the first one."""
    base = configs[0]
    for member, config in zip(members[1:], configs[1:], strict=True):
        for key in SAME_KEYS:
            if config.get(key) != base.get(key):
                raise ExpkitError(
                    f"run {member.run_id[:8]} was trained on other data than run {members[0].run_id[:8]} ({key} differs)",
                    hint="ensemble runs of the same dataset and preprocessing",
                )
        if config["model"].get("loss") != base["model"].get("loss"):
            raise ExpkitError(f"run {member.run_id[:8]} uses another loss than run {members[0].run_id[:8]}", hint="ensemble like models")
        prints = {m.run.data.tags.get("dataset.fingerprint") for m in (members[0], member)}
        if len(prints) > 1:
            raise ExpkitError(f"run {member.run_id[:8]} saw other data (dataset fingerprint) than run {members[0].run_id[:8]}")


def parse_weights(text: str | None, count: int) -> np.ndarray | None:
    if text is None:
        return None
    try:
        weights = np.asarray([float(w) for w in text.split(",")], dtype=np.float64)
    except ValueError:
        raise ExpkitError(f"weights '{text}' are not numbers", key="--weights", hint="e.g. --weights 0.7,0.3") from None
    if len(weights) != count or np.any(weights < 0) or weights.sum() <= 0:
        raise ExpkitError(f"need {count} non-negative weights, not all zero; got '{text}'", key="--weights")
    return weights / weights.sum()


def loss_value(predictions: np.ndarray, y: np.ndarray, classifier: bool) -> float:
    """Cross-entropy for classifiers, mean squared error otherwise (what the weights minimise)."""
    if not classifier:
        return float(np.mean((predictions.reshape(y.shape) - y) ** 2))
    p = np.clip(predictions, 1e-7, 1 - 1e-7)
    if p.ndim == 2 and p.shape[1] > 1:
        true = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1).astype(int)
        return float(-np.mean(np.log(p[np.arange(len(p)), true])))
    y = y.reshape(-1)
    p = p.reshape(-1)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_weights(predictions: list[np.ndarray], y: np.ndarray, classifier: bool) -> np.ndarray:
    """Weights on the simplex minimising the validation loss of the weighted average (softmax parametrisation)."""
    from scipy.optimize import minimize

    stack = np.stack(predictions)

    def objective(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        w /= w.sum()
        return loss_value(np.tensordot(w, stack, axes=1), y, classifier)

    found = minimize(objective, np.zeros(len(predictions)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    w = np.exp(found.x - found.x.max())
    return w / w.sum()


def score(predictions: np.ndarray, y: np.ndarray, config: Any) -> dict[str, float]:
    """The run's own loss and metrics on given predictions, computed by Keras exactly as `evaluate` does."""
    import keras

    from expkit.training.compile import compile_model

    identity = keras.Sequential([keras.Input(predictions.shape[1:]), keras.layers.Identity()])
    compile_model(identity, config.optimizer.model_dump(), config.model.loss, config.model.metrics)
    values = identity.evaluate(predictions.astype(np.float32), y, batch_size=1024, verbose=0, return_dict=True)
    return {f"test_{k}": float(v) for k, v in values.items()}


def ensemble(refs: list[str], *, weights: str | None, fit: bool, uri: str | None) -> dict[str, Any]:
    """Average the members' predictions, report ensemble and member test metrics, log the ensemble as its own run."""
    from expkit.data import load_splits
    from expkit.training.baseline import is_classification

    if len(refs) < 2:
        raise ExpkitError("an ensemble needs at least 2 runs", hint="expkit ensemble RUN_ID RUN_ID ...")
    if weights is not None and fit:
        raise ExpkitError("give --weights or --fit-weights, not both")
    members: list[StoredRun] = []
    for ref in refs:
        member = open_run(ref, uri)
        if member.run_id in {m.run_id for m in members}:
            raise ExpkitError(f"run {member.run_id[:8]} is listed twice")
        members.append(member)
    fixed = parse_weights(weights, len(members))
    configs = [m.config_dict() for m in members]
    check_compatible(members, configs)
    config = members[0].config()
    classifier = is_classification(config.model.loss)
    splits = load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)
    if fit and splits.x_val is None:
        raise ExpkitError("--fit-weights needs validation data, and these runs have none", hint="set dataset.validation, or give --weights")

    models = [m.training_model() for m in members]
    shapes = {tuple(model.output_shape[1:]) for model in models}
    if len(shapes) > 1:
        raise ExpkitError(f"the members' outputs differ in shape: {sorted(shapes)}", hint="ensemble models with the same output")
    test = [np.asarray(model.predict(splits.x_test, batch_size=256, verbose=0)) for model in models]
    if fit:
        assert splits.x_val is not None and splits.y_val is not None
        val = [np.asarray(model.predict(splits.x_val, batch_size=256, verbose=0)) for model in models]
        chosen = fit_weights(val, splits.y_val, classifier)  # validation only: the test split is not looked at
    else:
        chosen = fixed if fixed is not None else np.full(len(models), 1 / len(models))
    combined = np.tensordot(chosen, np.stack(test), axes=1)
    result = {
        "members": [
            {"run_id": m.run_id, "name": m.name, "weight": float(w), **score(p, splits.y_test, config)}
            for m, w, p in zip(members, chosen, test, strict=True)
        ],
        "ensemble": score(combined, splits.y_test, config),
        "weights": [float(w) for w in chosen],
        "fitted": fit,
    }
    result["run_id"] = log_ensemble(members, result, config)
    return result


def log_ensemble(members: list[StoredRun], result: dict[str, Any], config: Any) -> str:
    """The ensemble as a run of its own in the first member's experiment; returns its id."""
    from expkit.tracking.writes import log_finished_run

    first = members[0].run
    params = {
        "ensemble.members": ",".join(m.run_id[:8] for m in members),
        "ensemble.weights": ",".join(f"{w:.4f}" for w in result["weights"]),
        "ensemble.weights_fitted_on": "validation" if result["fitted"] else "given",
        "dataset.name": config.dataset.name,
    }
    metrics = dict(result["ensemble"])
    for m, member in zip(members, result["members"], strict=True):
        metrics.update({f"members/{m.run_id[:8]}/{k}": v for k, v in member.items() if k.startswith("test_")})
    return log_finished_run(
        members[0].client,
        first.info.experiment_id,
        "ensemble: " + " + ".join(m.name for m in members),
        tags={"expkit.ensemble.members": ",".join(m.run_id for m in members), "preset": first.data.tags.get("preset", "")},
        params=params,
        metrics=metrics,
        texts={"ensemble.json": json.dumps(result, indent=1)},
    )


def render(result: dict[str, Any]) -> str:
    """Members and the ensemble, one row each, with their weights and test metrics."""
    from expkit.tracking.table import format_value, render_table

    metrics = sorted(result["ensemble"])
    rows = [[m["run_id"][:8], m["name"][:40], f"{m['weight']:.3f}", *(format_value(m.get(k)) for k in metrics)] for m in result["members"]]
    rows.append([result["run_id"][:8], "ensemble", "", *(format_value(result["ensemble"][k]) for k in metrics)])
    how = "fitted on validation data" if result["fitted"] else "given" if len(set(result["weights"])) > 1 else "equal"
    table = render_table(["run id", "name", "weight", *metrics], rows, [False, False, True, *([True] * len(metrics))])
    return f"{table}\n\nweights {how}; ensemble logged as run {result['run_id']}"
