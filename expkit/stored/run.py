"""A recorded run, read back for predict, evaluate and ensemble: its config, its models, its data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expkit.errors import ExpkitError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from expkit.config.schema import ExperimentConfig


@dataclass
class StoredRun:
    """One finished run and the store it lives in."""

    run: Run
    client: MlflowClient
    uri: str

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @property
    def name(self) -> str:
        return str(self.run.info.run_name or self.run_id[:8])

    def config_dict(self) -> dict[str, Any]:
        """The resolved config the run trained with (its config.yaml artifact, else the run folder's copy)."""
        from omegaconf import OmegaConf

        text = self._artifact_text("config.yaml")
        if text is None:
            raise ExpkitError(f"run {self.run_id} has no config.yaml", hint="only runs trained by `expkit train` can be read back")
        return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]

    def config(self, overrides: list[str] | None = None) -> ExperimentConfig:
        """The run's config (as it trained: checked by the schema, not again against Keras), with `key=value` overrides applied."""
        from omegaconf import OmegaConf
        from pydantic import ValidationError

        from expkit.config.schema import ExperimentConfig

        cfg = OmegaConf.create(self.config_dict())
        if overrides:
            for item in overrides:
                if "=" not in item:
                    raise ExpkitError(f"'{item}' is not an override", hint="write key=value, e.g. dataset.max_test_samples=1000")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
        try:
            return ExperimentConfig.model_validate(OmegaConf.to_container(cfg, resolve=True))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ExpkitError(f"{key}: {first['msg']}", key=key) from None

    def _artifact_text(self, path: str) -> str | None:
        import mlflow

        try:
            return mlflow.artifacts.load_text(f"{self.run.info.artifact_uri.rstrip('/')}/{path}")
        except Exception:  # any failure means "not there"; the run folder is the fallback
            folder = self.run.data.tags.get("output_dir")
            local = Path(folder) / path if folder else None
            return local.read_text() if local and local.is_file() else None

    def training_model(self) -> Any:
        """The trained Keras model: the logged one, else the run folder's final checkpoint."""
        import keras

        folder = self.run.data.tags.get("output_dir")
        final = Path(folder) / "checkpoints" / "final.keras" if folder else None
        if final is not None and final.is_file():
            return keras.models.load_model(final)
        uri = self.run.data.tags.get("model_uri")
        if uri:
            import mlflow

            return mlflow.keras.load_model(uri)
        raise ExpkitError(f"run {self.run_id} has no saved model", hint="train with tracking.log_model=true, or keep the run folder")

    def inference_uri(self) -> str:
        uri = self.run.data.tags.get("inference_model_uri")
        if not uri:
            raise ExpkitError(
                f"run {self.run_id} has no raw-input inference model", hint="runs trained with tracking.log_model=true log one"
            )
        return uri


def open_run(ref: str, uri: str | None) -> StoredRun:
    """The run `ref` (id or unique prefix) in the store `uri` (default: the one `expkit train` writes here)."""
    from expkit.tracking.query import find_run, open_client, store_errors

    client, resolved = open_client(uri)
    with store_errors(resolved):
        run = find_run(client, resolved, ref)
    if run.info.status != "FINISHED":
        raise ExpkitError(f"run {run.info.run_id} is {run.info.status}, not FINISHED", hint="resume it first: expkit resume RUN")
    return StoredRun(run, client, resolved)


def is_model_uri(target: str) -> bool:
    return "://" in target or target.startswith(("models:/", "runs:/"))
