"""Per-epoch reporting to an Optuna study, for pruning. Active only in a job launched by expkit's Optuna sweeper.

The sweeper passes the study's storage, name and trial number to each job as `hydra.job.env_set.OPTUNA_TRIAL`
("storage|study|number|pruner"), which every launcher carries into the job's Hydra config.
"""

from __future__ import annotations

import math
from typing import Any

from expkit.selection.objective import Objective, TrialPruned

#: The hydra.job.env_set key the sweeper sets for each trial.
TRIAL_KEY = "OPTUNA_TRIAL"


def parse_trial(text: str | None) -> dict[str, Any] | None:
    """{storage, study, trial, pruner} from the sweeper's "storage|study|number|pruner" (None or "": not a trial)."""
    if not text:
        return None
    storage, study, number, pruner = str(text).rsplit("|", 3)
    return {"storage": storage, "study": study, "trial": int(number), "pruner": pruner}


def pruner_spec(name: str, startup_trials: int, warmup_epochs: int, max_epochs: int) -> str:
    """The pruner as text a job can rebuild (a loaded study does not store its pruner)."""
    return f"{name}:{startup_trials}:{warmup_epochs}:{max_epochs}"


def pruning_reporter(objective: Objective, storage: str, study: str, trial: int, pruner: str) -> Any:
    """A Keras callback reporting the objective so far to the trial after every epoch; stops training when pruned."""
    import keras
    import optuna

    from expkit.selection.study import make_pruner, open_storage

    name, startup, warmup, epochs = pruner.split(":")
    rebuilt = make_pruner(name, startup_trials=int(startup), warmup_epochs=int(warmup), max_epochs=int(epochs))
    backend = open_storage(storage)
    trial_id = backend.get_trial_id_from_study_id_trial_number(backend.get_study_id_from_name(study), trial)
    live = optuna.trial.Trial(optuna.load_study(study_name=study, storage=backend, pruner=rebuilt), trial_id)

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
