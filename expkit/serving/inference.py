"""The inference model: raw dataset-form inputs -> fitted preprocessing -> the trained model -> class names or probabilities.

Preprocessing steps with a Keras layer (flatten, reshape, scale, standardize) become layers in front of the trained
model, in one Keras model. Steps that work on ragged word-index sequences (multi_hot, pad_sequences) and casts run
in numpy inside a thin MLflow pyfunc wrapper, which also maps outputs to class names.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from expkit.errors import ExpkitError
from expkit.training.baseline import is_classification

#: Steps run in numpy by the wrapper (no Keras layer takes their raw input form).
NUMPY_OPS = {"multi_hot", "pad_sequences", "cast"}
KERAS_FILE = "inference.keras"
SPEC_FILE = "inference.json"
OUTPUTS = ("classes", "probabilities")

#: How an inference model of a kind ("text", "table") reads its raw input into the model's inputs: (x, spec, first_row) ->
#: model inputs. The kinds register themselves (expkit/serving/text.py, table.py; imported by expkit/serving/__init__.py),
#: so this module imports neither.
READERS: dict[str, Callable[[Any, dict[str, Any], int], Any]] = {}


def reader(kind: str) -> Callable[[Callable[[Any, dict[str, Any], int], Any]], Callable[[Any, dict[str, Any], int], Any]]:
    """Register how an inference model of `kind` reads its raw input."""

    def register(read: Callable[[Any, dict[str, Any], int], Any]) -> Callable[[Any, dict[str, Any], int], Any]:
        READERS[kind] = read
        return read

    return register


def model_outputs(model: Any, x: Any, batch_size: int = 256) -> Any:
    """The model's outputs as numpy (a dict for named outputs). At most one batch runs as a direct call.

    `predict` traces a function before its first batch (about 0.2 s); a direct call of the same layers
    gives the same outputs (within float rounding) for the few rows of an example or a request.
    """
    from keras import ops

    rows = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    outputs = model.predict(x, batch_size=batch_size, verbose=0) if rows > batch_size else model(x, training=False)
    if isinstance(outputs, dict):
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in outputs.items()}
    return np.asarray(ops.convert_to_numpy(outputs))


def split_steps(steps: list[dict[str, Any]]) -> int:
    """How many leading steps run in numpy: everything up to the last step without a Keras layer."""
    last = max((i for i, s in enumerate(steps) if s["op"] in NUMPY_OPS), default=-1)
    return last + 1


def step_layer(step: dict[str, Any], state: dict[str, Any]) -> Any:
    """The Keras preprocessing layer for one fitted step."""
    import keras

    op = step["op"]
    if op == "flatten":
        return keras.layers.Flatten()
    if op == "reshape":
        return keras.layers.Reshape(tuple(step["shape"]))
    if op == "scale":
        return keras.layers.Rescaling(1.0 / float(step.get("divisor", 1.0)))
    if op == "standardize":  # adapted on the training data: the exact statistics `standardize` used
        return keras.layers.Normalization(mean=state["mean"], variance=np.square(state["std"]))
    raise ExpkitError(f"no Keras layer for preprocessing op '{op}'")


def numpy_transform(step: dict[str, Any], state: dict[str, Any], a: np.ndarray) -> np.ndarray:
    """Apply one fitted step in numpy (the wrapper's part)."""
    from pydantic import TypeAdapter

    from expkit.config.schema import Step
    from expkit.data.preprocess import fit_step

    if step["op"] == "standardize":
        return ((a - state["mean"]) / state["std"]).astype(np.float32)
    return fit_step(TypeAdapter(Step).validate_python(step), a)(a)


def build_inference_keras(model: Any, steps: list[dict[str, Any]], fitted: list[dict[str, Any]], raw_shape: tuple, raw_dtype: str) -> Any:
    """Input(raw form) -> preprocessing layers -> `model`. The trained model is reused, not copied or changed."""
    import keras

    inputs = keras.Input(shape=raw_shape, dtype=raw_dtype, name="raw")
    x = inputs
    for step, state in zip(steps, fitted, strict=True):
        x = step_layer(step, state)(x)
    if not str(x.dtype).startswith(("float", "bfloat")):
        x = keras.layers.Rescaling(1.0, name="to_float")(x)  # a cast: integer images straight into Dense
    return keras.Model(inputs, model(x), name=f"{model.name}_inference")


def class_names(num_outputs: int) -> list[str]:
    """Names of the classes: the label indices as text (2 for a single sigmoid output)."""
    return [str(i) for i in range(max(num_outputs, 2))]


def write_inference(
    model: Any, x_steps: list[Any], fitted: list[dict[str, Any]], raw_example: np.ndarray, loss: Any, out_dir: Path
) -> Path:
    """Build the inference model and write it with its spec to `out_dir`; returns the folder."""
    steps = [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in x_steps]
    k = split_steps(steps)
    raw = np.asarray(raw_example)
    head = raw
    for step, state in zip(steps[:k], fitted[:k], strict=True):
        head = numpy_transform(step, state, head)
    keras_model = build_inference_keras(model, steps[k:], fitted[k:], tuple(head.shape[1:]), str(head.dtype))
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_model.save(out_dir / KERAS_FILE)
    numpy_part = [
        {"step": s, "state": {n: np.asarray(v).tolist() for n, v in st.items()}} for s, st in zip(steps[:k], fitted[:k], strict=True)
    ]
    units = int(model.output_shape[-1])
    spec = {
        "numpy_steps": numpy_part,
        "classifier": is_classification(loss),
        "class_names": class_names(units) if is_classification(loss) else [],
        "raw_dtype": str(raw.dtype),
        "raw_shape": list(raw.shape[1:]) if raw.dtype != object else None,
    }
    (out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n")
    return out_dir


def check_raw(x: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Raw inputs as the model expects them: right per-sample shape, and the raw dtype (a lossless cast is allowed)."""
    x = np.asarray(x)
    shape, dtype = spec.get("raw_shape"), np.dtype(spec["raw_dtype"]) if spec["raw_dtype"] != "object" else None
    if shape is not None and list(x.shape[1:]) != list(shape):
        raise ExpkitError(
            f"inputs have shape {x.shape[1:]} per sample, the model takes {tuple(shape)}",
            key="--input",
            hint=f"give raw samples in the dataset's form: {tuple(shape)} {spec['raw_dtype']}",
        )
    if dtype is not None and x.dtype != dtype:
        cast = x.astype(dtype)
        if x.dtype == object or not np.array_equal(cast, x):
            raise ExpkitError(
                f"inputs of dtype {x.dtype} do not fit the model's raw dtype {dtype}",
                key="--input",
                hint=f"give raw (unpreprocessed) values, e.g. {dtype} pixels 0..255",
            )
        x = cast
    return x


class InferenceModel:
    """Loads the inference folder; maps raw inputs to class names, probabilities or regression values."""

    def __init__(self, folder: Path) -> None:
        import keras

        self.spec = json.loads((folder / SPEC_FILE).read_text())
        self.table = self.spec.get("kind") == "table"  # raw rows with named columns (expkit.serving.table)
        if self.table:
            import expkit.models.preprocessing  # noqa: F401  # registers the model's own preprocessing layers
        with warnings.catch_warnings():
            # The trained model inside keeps its optimizer's state, which inference never uses; a mixed_float16 model's
            # (loss-scaled) does not match the plain optimizer Keras rebuilds for it on load, and Keras warns.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            self.model = keras.models.load_model(folder / KERAS_FILE, compile=False)

    def probabilities(self, x: Any, batch_size: int = 256, first_row: int = 0) -> np.ndarray:
        kind = "text" if self.spec.get("input") == "text" else "table" if self.table else None
        if kind is not None:  # raw strings (expkit.serving.text) or raw rows with named columns (expkit.serving.table)
            out = model_outputs(self.model, READERS[kind](x, self.spec, first_row), batch_size)
            return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)  # a graph's (first) output
        x = check_raw(x, self.spec)
        for item in self.spec["numpy_steps"]:
            state = {k: np.asarray(v) for k, v in item["state"].items()}
            x = numpy_transform(item["step"], state, x)
        return np.asarray(model_outputs(self.model, x, batch_size))

    def classes(self, probabilities: np.ndarray) -> np.ndarray:
        names = np.asarray(self.spec["class_names"])
        if probabilities.ndim == 2 and probabilities.shape[1] > 1:
            return names[probabilities.argmax(axis=1)]
        return names[(probabilities.reshape(-1) > 0.5).astype(int)]

    def predict(self, x: Any, output: str = "classes") -> np.ndarray:
        if output not in OUTPUTS:
            raise ExpkitError(f"unknown output '{output}'", key="output", hint="classes or probabilities")
        probabilities = self.probabilities(x)
        if output == "probabilities" or not self.spec["classifier"]:
            return probabilities
        return self.classes(probabilities)


def pyfunc_parts(folder: Path, raw_example: Any, text: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """What MLflow's pyfunc flavor logs for the raw-input inference model in `folder`: {model, artifacts, signature, example}.

    `text`: the (signature, example) of a model that takes raw strings (expkit.serving.text.text_signature)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    raw = np.asarray(raw_example)
    params = ParamSchema([ParamSpec("output", "string", "classes")])
    ragged = raw.dtype == object
    inputs = None if ragged else Schema([TensorSpec(raw.dtype, (-1, *raw.shape[1:]))])
    signature = ModelSignature(inputs=inputs, params=params) if inputs is not None else None
    example = None if ragged else raw[:2]
    if text is not None:
        signature, example = text
    return {"model": pyfunc_class()(), "artifacts": {"inference": str(folder)}, "signature": signature, "example": example}


def pyfunc_class() -> type:
    """The MLflow PythonModel wrapper (defined lazily: importing mlflow is slow)."""
    import warnings

    import mlflow.pyfunc

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, *args: Any, **kwargs: Any) -> None:
            # MLflow asks for type hints on predict (and forces its notice past filters); the signature is logged instead
            if "Add type hints to the `predict` method" not in str(message):
                shown(message, *args, **kwargs)

        warnings.showwarning = show
        return _define_pyfunc_class(mlflow.pyfunc.PythonModel)


def _define_pyfunc_class(base: type) -> type:
    class ExpkitInference(base):  # type: ignore[valid-type,misc]
        """Raw inputs in; class names (params: output=classes) or probabilities (output=probabilities) out."""

        def load_context(self, context: Any) -> None:
            self.inference = InferenceModel(Path(context.artifacts["inference"]))

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # untyped: MLflow reads hints as a schema
            output = (params or {}).get("output", "classes")
            rows = model_input if self.inference.table else np.asarray(model_input)  # a table keeps its named columns
            return self.inference.predict(rows, output=output)

    return ExpkitInference
