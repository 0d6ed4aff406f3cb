"""The commands behind `expkit` (expkit/cli.py registers them). Each imports its implementation inside the function,
so that `expkit --help` and the light commands start without TensorFlow or MLflow."""
