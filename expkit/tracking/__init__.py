"""MLflow run lifecycle, sweep run trees, artifacts. Subscribes to training through Keras callbacks."""
