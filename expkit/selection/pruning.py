"""Per-epoch reporting to an Optuna study, for pruning. Active only in a job launched by expkit's Optuna sweeper.

The sweeper passes the study's storage, name and the trial number through the job's config
(`hydra.sweeper` cannot reach the task), as the environment of a launched job is not shared by every launcher.
"""

from __future__ import annotations

import math
from typing import Any

from expkit.selection.objective import Objective

#: The job config node the sweeper adds: {storage, study, trial}.
TRIAL_KEY = "optuna_trial"


def current_trial() -> dict[str, Any] | None:
    """{storage, study, trial} when this job is an Optuna trial, else None."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    node = OmegaConf.select(HydraConfig.get(), f"job.env_set.{TRIAL_KEY.upper()}", default=None)
    if not node:
        return None
    storage, study, number = str(node).rsplit("|", 2)
    return {"storage": storage, "study": study, "trial": int(number)}


def epoch_hooks() -> list[Any]:
    """The callbacks the protocol adds for this job: a pruning reporter inside an Optuna trial, else none."""
    trial = current_trial()
    if trial is None:
        return []
    return [lambda objective: PruningReporter(objective, **trial)]


class PruningReporter:
    """A Keras callback (built lazily) reporting the objective so far after every epoch; stops training when pruned."""

    def __new__(cls, objective: Objective, storage: str, study: str, trial: int) -> Any:
        import keras
        import optuna

        from expkit.app import TrialPruned

        loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
        frozen = next(t for t in loaded.get_trials(deepcopy=False) if t.number == trial)
        live = optuna.trial.Trial(loaded, frozen._trial_id)

        class Reporter(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.curve: list[float] = []
                self.pruned_at: int | None = None

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                value = (logs or {}).get(objective.metric)
                if value is None:
                    return
                self.curve.append(float(value))
                score = objective.score({objective.metric: self.curve})
                if not math.isfinite(score):
                    return
                live.report(score, epoch)
                if live.should_prune():
                    self.pruned_at = epoch
                    self.model.stop_training = True

            def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
                if self.pruned_at is not None and self.pruned_at + 1 < self.params.get("epochs", 0):
                    raise TrialPruned(f"pruned after epoch {self.pruned_at + 1} ({objective.metric} {self.curve[-1]:.4f})")

        return Reporter()


def open_storage(url: str) -> Any:
    """An Optuna storage: a journal file path (journal:PATH) or an RDB URL (sqlite:///..., postgresql://...)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.storages.RDBStorage(url)
