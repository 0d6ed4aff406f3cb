"""Config schema and validation: pure Python, imports no TensorFlow or MLflow."""

from expkit.config.schema import ExperimentConfig
from expkit.config.validate import validate_config

__all__ = ["ExperimentConfig", "validate_config"]
