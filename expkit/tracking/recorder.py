"""The MLflow recorder: `expkit.experiment.recorder.Recorder` on an MLflow run (a job's `TrackedRun`, or a nested `ChildRun`).

It receives plain values, paths and models (`RunRecord`) and writes them; it imports nothing from training, serving or data.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit.experiment.recorder import DecisionBoundary, ModelToLog, Recorder, RunRecord
from expkit.tracking.run import TrackedRun, experiment_params, log_metrics, tolerate_concurrent_insert
from expkit.tracking.store import TABLE_VIEW_TAG, table_view
from expkit.tracking.writes import log_artifacts as write_artifacts

if TYPE_CHECKING:
    import mlflow

    from expkit.config.schema import ExperimentConfig


class ChildRun:
    """A run nested under a started TrackedRun (a k-fold fold, a retrain phase), logged through the client only."""

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def warm_up(self) -> None:
        """Nothing to open: the parent run's client is already open."""

    @classmethod
    def start(cls, parent: TrackedRun | ChildRun, run_name: str, tags: dict[str, str]) -> ChildRun:
        from expkit.tracking.parent import child_run

        return cls(parent.client, child_run(parent.client, parent.run_id, run_name, tags))

    def callback(self) -> Any:
        from expkit.tracking.epochs import EpochLogger

        return EpochLogger(self)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def log_params(self, config: dict[str, Any], extra: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in {**experiment_params(config), **extra}.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        write_artifacts(self.client, self.run_id, paths, artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def curve_metrics(name: str, values: list[float]) -> list[Any]:
    """A curve as one metric per epoch (step = epoch), non-finite values left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(name, v, now, e) for e, v in enumerate(values) if math.isfinite(v)]


class MlflowRecorder:
    """A job's (or a fold's, a phase's) MLflow run, behind the `Recorder` protocol."""

    def __init__(self, run: TrackedRun | ChildRun, *, output_dir: Path, server_wait_s: float = 0.0, plot_smoothing: float = 0.0) -> None:
        self.run = run
        self.output_dir = Path(output_dir)
        self.server_wait_s = server_wait_s
        self.plot_smoothing = plot_smoothing
        self._name = ""

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> MlflowRecorder:
        """The job's recorder, not started yet: the store, experiment and folders its config names."""
        t = config.tracking
        run = TrackedRun(uri=t.uri, root_dir=config.paths.root_dir, experiment_name=t.experiment_name, artifact_dir=t.artifact_dir)
        return cls(run, output_dir=Path(config.paths.output_dir), server_wait_s=t.server_wait_s, plot_smoothing=t.plot_smoothing)

    @property
    def background_start(self) -> bool:
        """A run opened by a second process (tracking/opener.py) only when asked for: it costs more CPU than it saves wall time."""
        from expkit.tracking.opener import wanted

        return wanted()

    @property
    def tracked(self) -> TrackedRun:
        assert isinstance(self.run, TrackedRun), "a nested run has no run of its own to start, open or finish"
        return self.run

    @property
    def run_id(self) -> str | None:
        return self.run.run_id or None

    @property
    def tensorboard_dir(self) -> Path | None:
        if not self._name or not self.run.run_id:
            return None
        from expkit.tracking.tensorboard import run_folder

        return run_folder(self.output_dir / "tensorboard", self._name, self.run.run_id)  # TensorBoard lists it by the run's name and id

    def start(
        self, name: str, tags: dict[str, str], *, run_id: str | None = None, params: dict[str, Any] | None = None, overlap: bool = False
    ) -> None:
        self._name = name
        self.tracked.start(name, tags, run_id=run_id, params=params, tensorboard_base=self.output_dir / "tensorboard", overlap=overlap)

    def ready(self, label: str = "") -> None:
        print(f"[{label}] " * bool(label) + f"MLflow run {self.tracked.run_id} in {self.tracked.uri}", file=sys.stderr)
        (self.output_dir / "run_id").write_text(self.tracked.run_id + "\n")

    def catch_up(self, history: dict[str, list[float]] | None, last_epoch: int) -> None:
        from expkit.tracking.outage import deliver_saved

        deliver_saved(self.run, self.output_dir)  # what an earlier attempt kept while its tracking server was unreachable
        if history is not None:
            self.tracked.backfill(history, last_epoch)

    def callback(self) -> Any:
        return self.run.callback()

    def child(self, name: str, tags: dict[str, str]) -> Recorder:
        child = ChildRun.start(self.run, name, tags)
        return MlflowRecorder(child, output_dir=self.output_dir, server_wait_s=self.server_wait_s, plot_smoothing=self.plot_smoothing)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.run.log_metrics(metrics, step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.log_params({}, params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.run.set_tags(tags)

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        self.run.log_artifacts(paths, artifact_path=artifact_path)

    def log_curves(self, curves: dict[str, list[float]], *, prefix: str, folder: str) -> None:
        from expkit.tracking import plots

        for name, curve in curves.items():
            self.run.client.log_batch(self.run.run_id, metrics=curve_metrics(f"{prefix}{name}", curve))
        paths = plots.learning_curves(curves, self.output_dir / "plots" / folder, self.plot_smoothing)
        self.log_artifacts(paths, artifact_path=f"plots/{folder}")

    def settle(self) -> None:
        from expkit.tracking.outage import settle

        settle(self.run, self.server_wait_s, self.output_dir)  # the epochs an outage held back; waits for the server

    def end(self, status: str = "FINISHED") -> None:
        self.run.end(status)

    def ui_link(self) -> str:
        return self.tracked.ui_link()

    # --- the results of a finished training -------------------------------------------------------------------------

    def log_result(self, record: RunRecord) -> None:
        """Dataset, files, test metrics (reported, never chosen on), plots, models, figures, the run card and HParams."""
        run = self.tracked
        if record.dataset is not None:
            d = record.dataset
            run.log_dataset(d.name, d.origin, d.digest, d.sizes, d.raw_example)
        if record.params:
            run.log_params({}, record.params)
        for path, artifact_path in record.artifacts:
            run.log_artifacts([path], artifact_path=artifact_path)
        last = record.last_step
        # A metric, not a param: it follows from the knobs (units, depth) rather than being one, and as a param it crowded
        # MLflow's parallel-coordinates view; as a metric it sorts and charts against accuracy.
        run.log_metrics({"model.num_params": float(record.num_params)}, step=last)
        run.log_params({}, {"trainer.dtype_policy": record.dtype_policy})
        run.log_metrics(record.test_metrics, step=last)  # the step the logged models are linked to
        plots = self.log_plots(record)
        models = {model.label: self.log_model(model, last) for model in (record.models() if record.models else [])}
        self.log_card(record, plots, models)
        if record.boundary is not None:
            self.log_decision_boundary(record.boundary())
        tb_dir = self.tensorboard_dir
        if record.hparams is not None and tb_dir is not None:
            from expkit.tracking.tensorboard import write_hparams

            final = {f"final/{k}": v[-1] for k, v in record.history.items() if v}
            write_hparams(tb_dir, experiment_params(record.hparams), {**final, **record.test_metrics}, last, record.run_name, run.run_id)

    def log_plots(self, record: RunRecord) -> list[Path]:
        """Learning curves, and the test confusion matrix of each classification head ("" names a single output's)."""
        from expkit.tracking import plots

        out_dir, name = record.output_dir / "plots", record.run_name
        paths = plots.learning_curves(record.history, out_dir, self.plot_smoothing, name)
        for head, counts in record.confusion.items():
            file = f"confusion_matrix_{head}.png" if head else "confusion_matrix.png"
            title = f"{name} ({head})" if head and name else (name or head)
            paths.append(plots.confusion_matrix_png(counts, out_dir / file, title))
        self.log_artifacts(paths, artifact_path="plots")
        return paths

    def log_model(self, model: ModelToLog, step: int) -> str:
        run = self.tracked
        if model.flavor == "keras":
            uri = run.log_model(model.model, model.example, model.outputs, step=step)
        else:
            uri = run.log_pyfunc_model(model.model, model.artifacts or {}, model.signature, model.example, step=step)
        run.set_tags({model.tag: uri})
        return uri

    def log_card(self, record: RunRecord, plots: list[Path], models: dict[str, str]) -> None:
        """The run card (run_card.md, and the run page's description); its tested metrics and overridden params as table columns."""
        from expkit.tracking.card import CardFacts, render

        run, overrides = self.tracked, record.overrides
        facts = CardFacts(
            run_name=record.run_name,
            run_id=run.run_id,
            preset=next((o.split("=", 1)[1] for o in overrides if o.startswith(("+experiment=", "experiment="))), "default"),
            overrides=overrides,
            output_dir=str(record.output_dir),
            test_metrics=record.test_metrics,
            final_metrics={k: v[-1] for k, v in record.history.items() if v},
            epochs_run=len(record.history.get("loss", [])),
            dataset=record.dataset_label,
            plots=[f"plots/{p.name}" for p in plots],
            models=models,
        )
        card = render(facts)
        (record.output_dir / "run_card.md").write_text(card)
        run.client.log_text(run.run_id, card, "run_card.md")
        shown_params = [o.partition("=")[0].lstrip("+~") for o in overrides if not o.startswith(("+experiment=", "experiment=", "hydra"))]
        tested = sorted(k for k in record.test_metrics if k.startswith("test_"))  # baselines stay on the run page
        self.show_in_table([*tested, "objective"], shown_params)
        description = card if len(card) < 7000 else card[:7000] + "\n\n(cut short: see run_card.md)"  # MLflow's tag value limit
        run.set_tags({"mlflow.note.content": description})  # the run page's description

    def show_in_table(self, metrics: list[str], params: list[str]) -> None:
        """Add these columns to expkit's view of the experiment's runs table (the UI hides all metric columns by default)."""
        client, run_id = self.run.client, self.run.run_id
        run = client.get_run(run_id)
        experiment_id = run.info.experiment_id
        params = [p for p in params if p in run.data.params]

        def add_columns() -> None:
            current = client.get_experiment(experiment_id).tags.get(TABLE_VIEW_TAG)
            client.set_experiment_tag(experiment_id, TABLE_VIEW_TAG, table_view(current, metrics, params))

        tolerate_concurrent_insert(add_columns)  # a sweep's first jobs finish together and create the tag at once

    def log_decision_boundary(self, boundary: DecisionBoundary) -> Path:
        """A 2-D (playground) problem's test points over the predicted probability field, as an artifact and a keyed image."""
        import mlflow
        from PIL import Image

        from expkit.tracking import plots

        b = boundary
        path = plots.decision_boundary_png(
            b.probability, b.xx, b.yy, b.test_points, b.test_labels, self.output_dir / "plots" / "decision_boundary.png", b.title
        )
        self.log_artifacts([path], artifact_path="plots")
        self.tracked._ensure_active()
        with Image.open(path) as image:  # a keyed image: MLflow's chart view shows it side by side across runs
            mlflow.log_image(image.convert("RGB"), key="decision_boundary", step=0, synchronous=True)
        return path
