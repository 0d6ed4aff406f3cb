"""MLflow run lifecycle, sweep run trees, artifacts: the MLflow `Recorder` (`tracking.recorder.MlflowRecorder`).

Subscribes to training through Keras callbacks; receives plain values from the job and imports nothing from training,
serving or data.
"""
