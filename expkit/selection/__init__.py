"""Model selection: the objective, and the protocols that score a configuration (holdout, k-fold, retrain)."""

from expkit.selection.objective import Objective, direction

__all__ = ["Objective", "direction"]
