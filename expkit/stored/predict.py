"""`expkit predict`: raw inputs from a file or image folder -> a run's inference model -> a CSV of predictions."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from expkit.errors import ExpkitError

NPZ_KEYS = ("x", "x_test", "inputs", "features")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
CHUNK = 1024


def progress(total: int, what: str) -> Any:
    """A progress bar on an interactive stderr (nothing when piped)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="sample", disable=None, leave=False)


def read_images(folder: Path, raw_shape: list[int] | None) -> tuple[np.ndarray, list[str]]:
    """Every image below `folder` (sorted), resized to the model's raw shape; returns (array, file names)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ExpkitError(f"no images in {folder}", key="--input", hint=f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    if not raw_shape or len(raw_shape) not in (2, 3):
        raise ExpkitError(f"the model does not take images (raw input shape {raw_shape})", key="--input")
    from PIL import Image

    height, width = raw_shape[0], raw_shape[1]
    channels = raw_shape[2] if len(raw_shape) == 3 else 0
    mode = "RGB" if channels == 3 else "L"
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode).resize((width, height)), dtype=np.uint8)
        except OSError as exc:
            raise ExpkitError(f"cannot read image {path}: {exc}", key="--input") from None
        images.append(pixels[..., None] if channels == 1 else pixels)
    return np.stack(images), [str(p.relative_to(folder)) for p in files]


def read_inputs(path: Path, raw_shape: list[int] | None) -> tuple[np.ndarray, list[str] | None]:
    """Raw samples from .npz (key x, x_test, inputs or the only array), .npy, .csv (one sample per row) or an image folder."""
    if not path.exists():
        raise ExpkitError(f"no such file or folder: {path}", key="--input")
    if path.is_dir():
        return read_images(path, raw_shape)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.keys())
                key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ExpkitError(
                        f"{path} holds {keys}; which are the inputs?", key="--input", hint=f"name the array one of {NPZ_KEYS}"
                    )
                return data[key], None
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".csv":
            return read_csv(path, raw_shape), None
    except (ValueError, OSError) as exc:
        raise ExpkitError(f"cannot read {path}: {exc}", key="--input") from None
    raise ExpkitError(f"cannot read {path.name}", key="--input", hint="give a .npz, .npy or .csv file, or a folder of images")


def read_csv(path: Path, raw_shape: list[int] | None) -> np.ndarray:
    """Numbers, one sample per row (a header row is skipped), reshaped to the model's raw shape."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if rows and rows[0] and not _is_number(rows[0][0]):
        rows = rows[1:]
    values = np.asarray(rows, dtype=np.float64)
    if np.all(values == np.round(values)):
        values = values.astype(np.int64)
    if raw_shape and values.ndim == 2 and values.shape[1] == int(np.prod(raw_shape)):
        values = values.reshape((len(values), *raw_shape))
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_inference(target: str, uri: str | None) -> tuple[Any, str]:
    """The InferenceModel of run `target` (or of a model URI) and the URI it came from."""
    from expkit.stored.run import is_model_uri, open_run

    model_uri = target if is_model_uri(target) else open_run(target, uri).inference_uri()
    import mlflow

    from expkit.tracking.query import resolve_uri

    mlflow.set_tracking_uri(resolve_uri(uri))  # where models:/ URIs are looked up
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # MLflow raises many kinds for a bad URI
        raise ExpkitError(f"cannot load model {model_uri}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    inner = loaded.unwrap_python_model()
    if not hasattr(inner, "inference"):
        raise ExpkitError(f"{model_uri} is not an expkit inference model", hint="give a run id, or the run's inference_model_uri tag")
    return inner.inference, model_uri


def predict_file(target: str, input_path: Path, output_path: Path, *, uri: str | None, probabilities: bool, batch_size: int = 256) -> int:
    """Write one CSV row per input sample: class (classifiers) and per-class probabilities, or the predicted values."""
    from expkit.serving.inference import check_raw

    inference, _ = load_inference(target, uri)
    spec = inference.spec
    if spec.get("input") == "text":  # raw strings: a folder of .txt files, a .txt file, or a CSV column
        from expkit.serving.text import read_texts

        x, names = read_texts(input_path, spec["column"])
    elif inference.table:  # rows with named columns: CSV or Parquet, strings and empty values as they are
        from expkit.serving.table import read_table

        if not input_path.is_file():
            raise ExpkitError(f"no such file: {input_path}", key="--input", hint="give a CSV or Parquet file of rows")
        x, names = read_table(input_path), None
    else:
        x, names = read_inputs(input_path, spec.get("raw_shape"))
        x = check_raw(x, spec)
    outputs = []
    with progress(len(x), "predict") as bar:
        for start in range(0, len(x), CHUNK):
            outputs.append(inference.probabilities(x[start : start + CHUNK], batch_size=batch_size, first_row=start))
            bar.update(len(outputs[-1]))
    scores = np.concatenate(outputs) if outputs else np.zeros((0, 1))
    scores = scores.reshape(len(scores), -1)
    header = ["sample"]
    if spec["classifier"]:
        header.append("class")
        columns = spec["class_names"] if scores.shape[1] > 1 else ["probability"]
        if probabilities:
            header += [f"p_{c}" for c in columns] if scores.shape[1] > 1 else columns
    else:
        header += [f"prediction_{i}" for i in range(scores.shape[1])] if scores.shape[1] > 1 else ["prediction"]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    classes = inference.classes(scores) if spec["classifier"] else None
    with output_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(len(scores)):
            row: list[Any] = [names[i] if names else i]
            if classes is not None:
                row.append(classes[i])
                if probabilities:
                    row += [f"{v:.6g}" for v in scores[i]]
            else:
                row += [f"{v:.6g}" for v in scores[i]]
            writer.writerow(row)
    return len(scores)
