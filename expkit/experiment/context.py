"""What the launcher knows about a job, gathered once (by `expkit.app`, from Hydra) and handed down: nothing below reads globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobContext:
    """One job's place in its invocation: what was asked, what the sweep varies, how it shares the machine."""

    # The job's overrides as given (Hydra's task overrides, without hydra.run.dir).
    overrides: list[str] = field(default_factory=list)
    # In a sweep: the overrides the sweep varies (not given to the whole sweep on the command line).
    swept: set[str] = field(default_factory=set)
    # 'job 1: seed=2' in a multirun job (its number and swept overrides), '' in a single run.
    label: str = ""
    # One job of a multirun (a sweep chooses by the objective: it needs validation data).
    multirun: bool = False
    # The Optuna trial this job is ({storage, study, trial, pruner}), or None.
    trial: dict[str, Any] | None = None
    # Threads for this job when it shares the cores with others (joblib, cluster launchers); None: it has the machine.
    threads: int | None = None
    # What to do: "train" or "resume"; `force`: resume even though the config changed.
    action: str = "train"
    force: bool = False
    # Config keys written as interpolations of others: logged once, under the key they refer to (expkit.config.params).
    derived: list[str] = field(default_factory=list)

    @property
    def preset(self) -> str:
        """The +experiment= preset the job runs, or 'default'."""
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith(("+experiment=", "experiment="))), "default")

    def epoch_hooks(self) -> list[Any]:
        """The callbacks the protocol adds for this job: a pruning reporter inside an Optuna trial, else none."""
        if self.trial is None:
            return []
        from expkit.selection.pruning import pruning_reporter

        trial = self.trial
        return [lambda objective: pruning_reporter(objective, **trial)]


#: Short names for long config keys in run names (the UI's name column is narrow); other keys go by their last part.
NAME_ABBREVIATIONS = {
    "learning_rate": "lr",
    "initial_learning_rate": "lr0",
    "batch_size": "bs",
    "weight_decay": "wd",
    "max_train_samples": "train_n",
    "max_test_samples": "test_n",
    "steps_per_execution": "spe",
}


def run_name(name: str, overrides: list[str], swept: set[str] | None = None) -> str:
    """The preset name plus a short summary of the overrides, e.g. 'mnist_dense lr=1e-3'.

    In a sweep, the values the sweep varies come first (`swept`: the overrides that differ between jobs),
    so the UI's narrow name column shows what tells the children apart; long keys are abbreviated
    (`NAME_ABBREVIATIONS`: `learning_rate=0.001` -> `lr=0.001`).
    """
    first: list[str] = []
    rest: list[str] = []
    for override in overrides:
        key, _, value = override.partition("=")
        if not override.startswith(("+experiment=", "hydra", "experiment=")):
            last = key.lstrip("+~").split(".")[-1]
            short = f"{NAME_ABBREVIATIONS.get(last, last)}={value}" if value else key
            (first if swept and override in swept else rest).append(short)
    words = [*first, name, *rest]
    while len(" ".join(words)) > 96 and len(words) > 1:  # cut between words, never inside a value such as holdout=1000
        words = words[:-1]
    return (" ".join(words) + (" ..." if len(words) < len([*first, name, *rest]) else "")).strip()
