"""Model selection, the pure parts: the objective, the study, pruning and export.

The protocols that score a configuration (holdout, k-fold, retrain) are in `expkit.experiment.protocols`.
"""

from expkit.selection.objective import Objective, direction

__all__ = ["Objective", "direction"]
