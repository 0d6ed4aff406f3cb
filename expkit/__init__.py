"""expkit: config-driven Keras experiments, tracked in MLflow."""

__version__ = "0.1.0"
