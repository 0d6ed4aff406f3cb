"""The job layer: one composed config run through a protocol, recorded through a `Recorder`.

- `context.JobContext`: what Hydra knows about this job (overrides, swept keys, label, trial, threads), built once by the app.
- `job.Job`: runs the config's protocol, tests once, hands the results to the recorder, returns the `TaskResult`.
- `protocols`: holdout, kfold, retrain, registered by name (`@protocol("kfold")`).
- `recorder.Recorder`: what a job records through; `NullRecorder` (tracking=none) here, the MLflow one in `expkit.tracking`.
"""
