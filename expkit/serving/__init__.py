"""The raw-input inference model: built from a trained model and what its data fitted (inference.py; text.py for raw
strings, table.py for raw rows), saved beside the run and logged as an MLflow pyfunc model."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep the commands' output to their results

# The raw-input kinds register how their inference models read input (expkit.serving.inference.READERS), so that a
# loaded model finds its reader whichever module loaded it (MLflow's pyfunc loader imports expkit.serving.inference).
from expkit.serving import table, text  # noqa: F401
