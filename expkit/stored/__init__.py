"""Use recorded runs: open a run's models from the store (run.py), predict, evaluate and ensemble.

Above tracking in the layer order: these read what `expkit train` recorded. The raw-input inference model they load
is built in `expkit.serving`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep the commands' output to their results
