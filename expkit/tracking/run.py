"""One MLflow run per training: params, per-epoch metrics, test metrics, artifacts, model, status.

MLflow is imported where first used: a job that starts before TensorFlow is imported has its run
created by `expkit.tracking.opener` in a separate process, on the core TensorFlow's import leaves idle,
and imports MLflow itself only while its model trains (see `TrackedRun.warm_up`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit import __version__
from expkit.config.params import run_params
from expkit.errors import ExpkitError
from expkit.tracking.facts import git_state, package_version, requirements
from expkit.tracking.parent import handed_parent
from expkit.tracking.store import TABLE_VIEW_TAG, TRAINING_VIEW_QUERY, ensure_experiment, table_view, tracking_uri

if TYPE_CHECKING:
    import mlflow

MAX_PARAM_LENGTH = 6000
BATCH = 100


def experiment_params(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config minus nulls, bookkeeping and keys that do not apply (`expkit.config.params`): what describes
    the experiment. Derived keys are left out by the caller, which still has the config as written (`run_params`)."""
    return run_params(config)


def log_metrics(client: mlflow.MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Metrics at one step, in one batch (float32 values as their shortest decimal: see `values.readable`)."""
    from mlflow.entities import Metric

    from expkit.tracking.values import readable

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, readable(v), now, step) for k, v in metrics.items()])


#: How a store's database refuses a second copy of a row (SQLite, PostgreSQL, MySQL), locally or through a server.
DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")


def tolerate_concurrent_insert(write: Callable[[], None], attempts: int = 3) -> None:
    """Run `write` (a store write), again when a concurrent run inserted the same new row first.

    MLflow looks a row up, then inserts it: parallel jobs writing one new dataset (a sweep's) or one new experiment
    tag can all miss it, and every insert but one fails. On the next attempt the row is found and linked or updated.
    """
    for attempt in range(attempts):
        try:
            write()
            return
        except Exception as exc:
            if attempt == attempts - 1 or not any(marker in str(exc) for marker in DUPLICATE_ROW):
                raise
            time.sleep(0.05 * (attempt + 1))


class TrackedRun:
    """The MLflow side of one training run. Use start(), then the log_* methods, then end()."""

    def __init__(self, *, uri: str | None, root_dir: str, experiment_name: str, artifact_dir: str) -> None:
        self.uri = tracking_uri(uri, root_dir)
        self.experiment_name = experiment_name
        self.artifact_dir = artifact_dir
        self.root_dir = root_dir
        self._client: mlflow.MlflowClient | None = None
        self._client_lock = threading.RLock()
        self._run_id = ""
        self._opener: subprocess.Popen[str] | None = None  # the process creating the run, until its id is read
        self._active = False  # MLflow's active run in the main thread (model logging needs one)
        self._tags: dict[str, str] = {}
        self._deferred_tags: dict[str, str] = {}  # set before the store was opened here; written when it is

    @property
    def client(self) -> mlflow.MlflowClient:
        """The store's client, opened on first use (from any thread)."""
        with self._client_lock:
            if self._client is None:
                import mlflow

                mlflow.set_tracking_uri(self.uri)
                self._client = mlflow.MlflowClient(self.uri)
                if self._deferred_tags:
                    tags, self._deferred_tags = self._deferred_tags, {}
                    self._log_tags(tags)
            return self._client

    @property
    def run_id(self) -> str:
        """The run's id ('' before start); waits for the opener process if the run is still being created."""
        if self._opener is not None:
            self._collect_opened_run()
        return self._run_id

    def start(
        self,
        run_name: str,
        tags: dict[str, str],
        run_id: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        tensorboard_base: Path | None = None,
        overlap: bool = False,
    ) -> None:
        """Start a new run, or continue run `run_id` (resume), logging `params` and the TensorBoard folder tag.

        With `overlap`, a new run in a process that has not imported TensorFlow yet is created by a
        separate process (`expkit.tracking.opener`) while this one imports it: `run_id` waits for it.
        """
        if overlap and run_id is None and "tensorflow" not in sys.modules:
            self._open_in_background(run_name, tags, params, tensorboard_base)
            return
        self.create(run_name, tags, run_id)
        self.record_start(run_name, params, tensorboard_base)
        self.activate()

    def create(self, run_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """Open the store and create the run (or find `run_id`), without making it the active run."""
        from mlflow.tracking.context import registry
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        parent = None if run_id else handed_parent()  # a sweep's or reproduction's job (a joblib job waits for the id)
        experiment_id = ensure_experiment(self.uri, self.experiment_name, self.artifact_dir)
        versions = {"keras.version": package_version("keras"), "tensorflow.version": package_version("tensorflow", "tensorflow-cpu")}
        self._tags = {
            **tags,
            "expkit.version": __version__,
            **{k: v for k, v in versions.items() if v},
            "host": platform.node(),
            **git_state(self.root_dir),
        }
        if run_id:
            self._run_id = run_id
            return run_id
        run_tags = {**self._tags, MLFLOW_RUN_NAME: run_name, **({MLFLOW_PARENT_RUN_ID: parent} if parent else {})}
        run = self.client.create_run(experiment_id, tags=registry.resolve_tags(run_tags), run_name=run_name)
        self._run_id = run.info.run_id
        self._tags = {}  # already on the run
        return self._run_id

    def record_start(self, run_name: str, params: dict[str, Any] | None, tensorboard_base: Path | None) -> None:
        """A new run's params, and the TensorBoard folder named after it (`tensorboard.run_folder`)."""
        if tensorboard_base is not None:
            from expkit.tracking.tensorboard import run_folder

            self.set_tags({"tensorboard_dir": str(run_folder(tensorboard_base, run_name, self._run_id))})
        if params is not None:
            self.log_params(params, {})

    def _open_in_background(
        self, run_name: str, tags: dict[str, str], params: dict[str, Any] | None, tensorboard_base: Path | None
    ) -> None:
        request = {
            "uri": self.uri,
            "root_dir": self.root_dir,
            "experiment_name": self.experiment_name,
            "artifact_dir": self.artifact_dir,
            "run_name": run_name,
            "tags": tags,
            "params": params,
            "tensorboard_base": None if tensorboard_base is None else str(tensorboard_base),
            "source": sys.argv[0],  # MLflow's source tags name the program, not the opener
        }
        self._opener = subprocess.Popen(
            [sys.executable, "-m", "expkit.tracking.opener"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C for the job does not cut the run's creation short: the job ends the run
        )
        assert self._opener.stdin is not None
        self._opener.stdin.write(json.dumps(request, default=str))
        self._opener.stdin.close()

    def _collect_opened_run(self) -> None:
        opener, self._opener = self._opener, None
        assert opener is not None and opener.stdout is not None
        if opener.stdin is not None and not opener.stdin.closed:  # a Ctrl-C cut the request short: let the opener see its end
            with contextlib.suppress(OSError, ValueError):
                opener.stdin.close()
        output = opener.stdout.read()
        opener.wait()
        lines = output.strip().splitlines()
        try:
            reply = json.loads(lines[-1]) if lines else {}
        except ValueError:
            reply = {}
        if "error" in reply:
            raise ExpkitError(reply["error"], key=reply.get("key"), hint=reply.get("hint"))
        if not reply.get("run_id"):
            raise ExpkitError(
                f"could not create the MLflow run in {self.uri} (exit code {opener.returncode}; the reason is printed above)",
                key="tracking.uri",
                hint="check the store, or run with tracking=none",
            )
        self._run_id = str(reply["run_id"])

    def activate(self) -> None:
        """Make the run MLflow's active run in this thread (artifact and model logging use it)."""
        import mlflow

        self.client  # noqa: B018  (sets the tracking URI the fluent API uses)
        mlflow.start_run(run_id=self.run_id, tags=self._tags or None)
        self._active = True

    def _ensure_active(self) -> None:
        if not self._active:
            self.activate()

    def warm_up(self) -> None:
        """Import and open what logging the results needs (MLflow's store, model flavors, matplotlib).

        Called from a background thread while the model trains, when the main thread mostly waits
        on TensorFlow without holding the GIL, so these costs leave the critical path.
        """
        self.client  # noqa: B018
        import mlflow.keras
        import mlflow.models
        import mlflow.pyfunc  # noqa: F401
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        from expkit.tracking.plots import pyplot

        warn_dependency_requirement_mismatches(requirements())  # what model logging checks; it caches the installed packages
        pyplot()

    def callback(self) -> Any:
        """The Keras callback that logs every epoch to this run."""
        from expkit.tracking.epochs import EpochLogger

        return EpochLogger(self)

    def log_params(self, config: dict[str, Any], extra: dict[str, Any]) -> None:
        """The experiment's config keys as params (see `experiment_params`). A value over MLflow's length limit goes in as an artifact."""
        params: dict[str, str] = {}
        for key, value in {**experiment_params(config), **extra}.items():
            text = str(value)
            if len(text) > MAX_PARAM_LENGTH:
                name = f"params/{key}.txt"
                self.client.log_text(self.run_id, text, name)
                text = f"<see artifact {name}>"
            params[key] = text
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run; before this process has opened the store (see `warm_up`), the tags wait for it."""
        if self._client is None:
            self._deferred_tags.update({k: str(v) for k, v in tags.items()})
            return
        self._log_tags(tags)

    def _log_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def backfill(self, history: dict[str, list[float]], last_epoch: int) -> None:
        """On resume: log the saved epochs MLflow missed (a crash between state save and logging)."""
        from mlflow.entities import Metric

        from expkit.tracking.values import readable

        logged = {m.step for m in self.client.get_metric_history(self.run_id, "loss")}
        now = int(time.time() * 1000)
        missing = [
            Metric(k, readable(values[e]), now, e)
            for k, values in history.items()
            for e in range(min(last_epoch + 1, len(values)))
            if e not in logged
        ]
        for i in range(0, len(missing), 1000):
            self.client.log_batch(self.run_id, metrics=missing[i : i + 1000])

    def log_plots(
        self, history: dict[str, list[float]], confusion: dict[str, Any], out_dir: Path, smoothing: float, run_name: str = ""
    ) -> list[Path]:
        """Learning curves, and the test confusion matrix of each classification head; returns the PNGs.

        `confusion` is {head: counts}, as counted by the test evaluation; "" names a single-output model's head.
        """
        from expkit.tracking import plots

        paths = plots.learning_curves(history, out_dir, smoothing, run_name)
        for head, counts in confusion.items():
            name = f"confusion_matrix_{head}.png" if head else "confusion_matrix.png"
            title = f"{run_name} ({head})" if head and run_name else (run_name or head)
            paths.append(plots.confusion_matrix_png(counts, out_dir / name, title))
        self.log_artifacts(paths, artifact_path="plots")
        return paths

    def log_decision_boundary(self, model: Any, dataset: Any, seed: int, out_dir: Path, accuracy: float | None) -> Path:
        """For a 2-D (playground) problem: test points over the predicted probability field, as an artifact and a keyed image."""
        from PIL import Image

        from expkit.data import playground
        from expkit.tracking import plots

        points, xx, yy = playground.grid()
        outputs = model.predict(playground.model_inputs(dataset, seed, points), batch_size=4096, verbose=0)
        probability = (outputs[:, -1] if outputs.ndim == 2 else outputs.reshape(-1)).reshape(xx.shape)
        _, (test_points, test_labels) = playground.raw_points(dataset.name, dataset.playground or playground.Playground(), seed)
        if dataset.max_test_samples:
            test_points, test_labels = test_points[: dataset.max_test_samples], test_labels[: dataset.max_test_samples]
        title = f"{dataset.name}: test points" + (f", accuracy {accuracy:.3f}" if accuracy is not None else "")
        path = plots.decision_boundary_png(probability, xx, yy, test_points, test_labels, out_dir / "decision_boundary.png", title)
        self.log_artifacts([path], artifact_path="plots")
        import mlflow

        self._ensure_active()
        with Image.open(path) as image:  # a keyed image: MLflow's chart view shows it side by side across runs
            mlflow.log_image(image.convert("RGB"), key="decision_boundary", step=0, synchronous=True)
        return path

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        """Files and folders as run artifacts (through the client, so any thread may call it)."""
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name if artifact_path is None else artifact_path)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_dataset(self, name: str, origin: str, digest: str, sizes: dict[str, int], raw_example: Any) -> None:
        """The dataset as an MLflow dataset input (the runs table's Dataset column): name, source, digest, split sizes."""
        import json

        import mlflow.data
        import numpy as np
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        example = np.asarray(raw_example) if raw_example is not None else np.zeros((1, 1), dtype=np.int64)  # named arrays: no one example
        if example.dtype == object:  # ragged sequences: describe them by their length only
            example = np.zeros((len(example), 1), dtype=np.int64)
        with warnings.catch_warnings():  # MLflow notes that a local path could be several kinds of source
            warnings.simplefilter("ignore")
            dataset = mlflow.data.from_numpy(example, source=origin, name=name, digest=digest)._to_mlflow_entity()
        dataset._profile = json.dumps({f"{split}_samples": n for split, n in sizes.items()})
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training"), *(InputTag(f"{split}_samples", str(n)) for split, n in sizes.items())]
        tolerate_concurrent_insert(lambda: self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags)]))

    def log_model(self, model: Any, input_example: Any, step: int = 0) -> str:
        """Log the training model with MLflow's Keras flavor and a tensor signature; returns the model URI.

        `step` is the last epoch: the logged model is linked to the metrics of that step (the final ones).
        The example itself is stored beside the model as `model_input_example.json`: mlflow 3.17's Keras
        flavor fails when given `input_example` (it writes the example before creating the model folder).
        """
        import mlflow.keras
        import numpy as np
        from mlflow.models import infer_signature

        from expkit.serving.inference import model_outputs

        self._ensure_active()
        if isinstance(input_example, dict):  # a graph model's named inputs and outputs
            example = {k: np.asarray(v) for k, v in input_example.items()}
        else:
            example = np.asarray(input_example).astype(np.float32)
        signature = infer_signature(example, model_outputs(model, example))
        info = mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements(), step=step)
        listed = {k: v.tolist() for k, v in example.items()} if isinstance(example, dict) else example.tolist()
        mlflow.log_dict({"inputs": listed}, "model_input_example.json")
        self.set_tags({"model_uri": info.model_uri})
        return str(info.model_uri)

    def log_inference_model(self, folder: Path, raw_example: Any, step: int = 0) -> str:
        """Log the raw-input inference model (see expkit.serving.inference) as an MLflow pyfunc model; returns its URI."""
        import mlflow.pyfunc
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

        from expkit.serving.inference import pyfunc_class

        self._ensure_active()
        raw = np.asarray(raw_example)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # its notes on cloudpickle and example validation
        params = ParamSchema([ParamSpec("output", "string", "classes")])
        ragged = raw.dtype == object
        inputs = None if ragged else Schema([TensorSpec(raw.dtype, (-1, *raw.shape[1:]))])
        signature = ModelSignature(inputs=inputs, params=params) if inputs is not None else None
        example = None if ragged else raw[:2]
        from expkit.serving.text import text_signature

        text = text_signature(folder)  # raw strings: one string column
        if text is not None:
            signature, example = text
        info = mlflow.pyfunc.log_model(
            name="inference",
            python_model=pyfunc_class()(),
            artifacts={"inference": str(folder)},
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
            step=step,
        )
        self.set_tags({"inference_model_uri": info.model_uri})
        return str(info.model_uri)

    def log_results(self, config: Any, outcome: Any, splits: Any, output_dir: Path, run_name: str, overrides: list[str]) -> None:
        """Everything a finished training leaves in MLflow: test metrics, files, plots, models and the run card."""
        from expkit.tracking.card import CardFacts, render

        history = outcome.history
        last = max(len(history.get("loss", [])) - 1, 0)
        # A metric, not a param: it follows from the knobs (units, depth) rather than being one, and as a param it crowded
        # MLflow's parallel-coordinates view; as a metric it sorts and charts against accuracy.
        self.log_metrics({"model.num_params": float(outcome.model.count_params())}, step=last)
        self.log_params({}, {"trainer.dtype_policy": config.trainer.dtype_policy})
        self.log_metrics(outcome.test_metrics, step=last)  # the step the logged models are linked to
        recorded = ("config.yaml", "overrides.yaml", "metrics.json", "model_summary.txt", "vocabulary.txt")  # vocabulary: text sources
        self.log_artifacts([output_dir / n for n in recorded])
        t = config.tracking
        plots = self.log_plots(history, outcome.confusion, output_dir / "plots", t.plot_smoothing, run_name)
        models: dict[str, str] = {}
        if t.log_model:
            from expkit.training.runner import input_example

            models["training model"] = self.log_model(outcome.model, input_example(splits, 5), step=last)
            if getattr(splits, "raw_x_example", None) is not None:
                from expkit.serving.inference import write_inference

                steps, raw = config.dataset.preprocess.x, splits.raw_x_example
                if getattr(splits, "source_fitted", None) is not None:  # raw strings through the fitted TextVectorization
                    from expkit.serving.text import write_text_inference

                    folder = write_text_inference(outcome.model, splits.source_fitted, raw, config.model.loss, output_dir / "inference")
                else:
                    folder = write_inference(outcome.model, steps, splits.x_fitted, raw, config.model.loss, output_dir / "inference")
                models["inference model (raw inputs)"] = self.log_inference_model(folder, splits.raw_x_example, step=last)
            elif getattr(splits, "feature_types", None) is not None:  # a table: the trained model takes raw rows itself
                from expkit.serving.table import log_table_inference, write_table_inference

                loss = next(iter(config.model.head_losses().values()))  # the (first) output's: classes or values
                folder = write_table_inference(outcome.model, splits, loss, output_dir / "inference")
                self._ensure_active()
                models["inference model (raw rows)"] = log_table_inference(folder, splits, step=last)
                self.set_tags({"inference_model_uri": models["inference model (raw rows)"]})
        facts = CardFacts(
            run_name=run_name,
            run_id=self.run_id,
            preset=next((o.split("=", 1)[1] for o in overrides if o.startswith(("+experiment=", "experiment="))), "default"),
            overrides=overrides,
            output_dir=str(output_dir),
            test_metrics=outcome.test_metrics,
            final_metrics={k: v[-1] for k, v in history.items() if v},
            epochs_run=len(history.get("loss", [])),
            dataset=f"{config.dataset.name} ({splits.fingerprint})",
            plots=[f"plots/{p.name}" for p in plots],
            models=models,
        )
        card = render(facts)
        (output_dir / "run_card.md").write_text(card)
        self.client.log_text(self.run_id, card, "run_card.md")
        shown_params = [o.partition("=")[0].lstrip("+~") for o in overrides if not o.startswith(("+experiment=", "experiment=", "hydra"))]
        tested = sorted(k for k in outcome.test_metrics if k.startswith("test_"))  # baselines stay on the run page
        self.show_in_table([*tested, "objective"], shown_params)
        description = card if len(card) < 7000 else card[:7000] + "\n\n(cut short: see run_card.md)"  # MLflow's tag value limit
        self.set_tags({"mlflow.note.content": description})  # the run page's description

    def log_hparams(self, tb_dir: Path, resolved: dict[str, Any], outcome: Any, run_name: str) -> None:
        """TensorBoard's HParams for this run: its experiment params, final epoch metrics and test metrics."""
        from expkit.tracking.tensorboard import write_hparams

        final = {f"final/{k}": v[-1] for k, v in outcome.history.items() if v}
        last = max(len(outcome.history.get("loss", [])) - 1, 0)
        write_hparams(tb_dir, experiment_params(resolved), {**final, **outcome.test_metrics}, last, run_name, self.run_id)

    def show_in_table(self, metrics: list[str], params: list[str]) -> None:
        """Add these columns to expkit's view of the experiment's runs table (the UI hides all metric columns by default)."""
        run = self.client.get_run(self.run_id)
        experiment_id = run.info.experiment_id
        params = [p for p in params if p in run.data.params]

        def add_columns() -> None:
            current = self.client.get_experiment(experiment_id).tags.get(TABLE_VIEW_TAG)
            self.client.set_experiment_tag(experiment_id, TABLE_VIEW_TAG, table_view(current, metrics, params))

        tolerate_concurrent_insert(add_columns)  # a sweep's first jobs finish together and create the tag at once

    def ui_link(self) -> str:
        """Where to see this run: the server's page, or the `expkit ui` command and the page it serves."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        page = f"#/experiments/{experiment_id}/runs/{self.run_id}?{TRAINING_VIEW_QUERY}"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        return f"run `expkit ui --uri {self.uri}`, then open http://127.0.0.1:5000/{page}"

    def end(self, status: str = "FINISHED") -> None:
        """Flush async logging and close the run as FINISHED, FAILED or KILLED."""
        if not self.run_id:
            return
        if self._active:
            import mlflow

            try:
                mlflow.flush_async_logging()
            finally:
                mlflow.end_run(status=status)
                self._active = False
            if status == "FINISHED":
                return
        self.client.set_terminated(self.run_id, status=status)


class ChildRun:
    """A run nested under a started TrackedRun (a k-fold fold, a retrain phase), logged through the client only."""

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def warm_up(self) -> None:
        """Nothing to open: the parent run's client is already open."""

    @classmethod
    def start(cls, parent: TrackedRun, run_name: str, tags: dict[str, str]) -> ChildRun:
        from expkit.tracking.parent import child_run

        return cls(parent.client, child_run(parent.client, parent.run_id, run_name, tags))

    def callback(self) -> Any:
        from expkit.tracking.epochs import EpochLogger

        return EpochLogger(self)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)
