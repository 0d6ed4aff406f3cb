"""The raw-string inference model of a text source: Input(string) -> the TextVectorization fitted on the training
split -> the trained model, saved as one Keras model, so `expkit predict` and `mlflow models serve` take raw text.

Training fed the model the same layer's output, computed once before training (expkit.data.text_dir), so the
inference model's outputs equal the training model's on the same strings. What `predict --input` reads as text:
- a folder: every `*.txt` file below it is one document (named by its path in the folder), read as UTF-8;
- a `.txt` file: the whole file is one document;
- a `.csv` file: one document per row, from the column named as the model's input (`text` by default), else the
  only column; a header row is required.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from expkit.errors import ExpkitError, suggestion
from expkit.serving.inference import reader

TEXT = "text"


def is_text(spec: dict[str, Any]) -> bool:
    """Whether an inference spec (inference.json) describes a raw-string model."""
    return spec.get("input") == TEXT


def write_text_inference(model: Any, fitted: Any, raw_example: Any, loss: Any, out_dir: Path) -> Path:
    """Build Input(string) -> fitted.vectorizer -> `model`, and write it with its spec to `out_dir`; returns the folder."""
    import keras

    from expkit.serving.inference import KERAS_FILE, SPEC_FILE, class_names
    from expkit.training.baseline import is_classification

    inputs = keras.Input(shape=(), dtype="string", name=fitted.input)
    vectors = fitted.vectorizer(inputs)
    outputs = model({fitted.input: vectors} if isinstance(model.input, dict) else vectors)
    inference = keras.Model(inputs, outputs, name=f"{model.name}_inference")
    out_dir.mkdir(parents=True, exist_ok=True)
    inference.save(out_dir / KERAS_FILE)
    classifier = is_classification(loss)
    units = int(model.output_shape[-1])
    names = list(fitted.class_names) if classifier and fitted.class_names else (class_names(units) if classifier else [])
    spec = {
        "input": TEXT,
        "column": fitted.input,
        "numpy_steps": [],
        "classifier": classifier,
        "class_names": names,
        "raw_dtype": "object",
        "raw_shape": None,
        "example": [str(t) for t in np.asarray(raw_example).reshape(-1)[:2]],
    }
    (out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n")
    return out_dir


@reader("text")
def text_rows(x: Any, spec: dict[str, Any], first_row: int = 0) -> np.ndarray:
    """What a text inference model reads: the raw documents (see `as_texts`)."""
    return as_texts(x, spec["column"])


def as_texts(x: Any, column: str = TEXT) -> np.ndarray:
    """Raw documents as a 1-D object array of str: from a DataFrame (its `column`, or its only column), a list,
    a 1-D or (n, 1) array, or one string."""
    if hasattr(x, "columns"):  # a pandas DataFrame (MLflow's serving hands one over for a column signature)
        columns = list(x.columns)
        if column in columns:
            x = x[column]
        elif len(columns) == 1:
            x = x[columns[0]]
        else:
            raise ExpkitError(f"the model takes one text column '{column}', got columns {columns}", key="--input")
        x = x.to_numpy()
    if isinstance(x, str | bytes):
        x = [x]
    if isinstance(x, dict) and len(x) == 1:  # {"text": [...]}: a column given as a dict
        x = next(iter(x.values()))
    a = np.asarray(x, dtype=object)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 1 and len(a) and all(isinstance(v, list | tuple | np.ndarray) for v in a):
        # MLflow reads {"inputs": {"text": [...]}} as one record whose cell holds the list
        a = np.asarray([v for cell in a for v in cell], dtype=object)
    if a.ndim != 1:
        raise ExpkitError(f"the model takes a list of strings, got an array of shape {a.shape}", key="--input")
    out = np.empty(len(a), dtype=object)
    for i, item in enumerate(a):
        if isinstance(item, bytes):
            item = item.decode("utf-8", errors="replace")
        if not isinstance(item, str):
            raise ExpkitError(f"input {i} is {type(item).__name__} {item!r}, not a string", key="--input", hint="give raw text")
        out[i] = item
    return out


def read_texts(path: Path, column: str = TEXT) -> tuple[np.ndarray, list[str] | None]:
    """Documents for `expkit predict --input`: a folder of .txt files, one .txt file, or a CSV with a text column."""
    from expkit.data.text_dir import read_documents

    if not path.exists():
        raise ExpkitError(f"no such file or folder: {path}", key="--input")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".txt")
        if not files:
            raise ExpkitError(f"no .txt files in {path}", key="--input", hint="one document per .txt file, read as UTF-8")
        return read_documents(files), [str(p.relative_to(path)) for p in files]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_text_csv(path, column), None
    if suffix == ".txt":
        return read_documents([path]), [path.name]
    raise ExpkitError(f"cannot read {path.name} as text", key="--input", hint="give a folder of .txt files, a .txt file, or a .csv")


def read_text_csv(path: Path, column: str) -> np.ndarray:
    """The `column` of a CSV with a header row (or its only column), one document per row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise ExpkitError(f"{path} is not UTF-8 text (byte {exc.start})", key="--input", hint="convert it to UTF-8") from None
    if not rows:
        raise ExpkitError(f"{path} is empty", key="--input", hint=f"a header row naming the column '{column}', then one row per document")
    header, body = rows[0], rows[1:]
    if column in header:
        index = header.index(column)
    elif len(header) == 1:
        index = 0
    else:
        raise ExpkitError(
            f"{path} has no column '{column}' (columns: {', '.join(header)})",
            key="--input",
            hint=suggestion(column, header, noun="columns"),
        )
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ExpkitError(f"{path} line {number}: {len(row)} fields, the header has {len(header)}", key="--input")
    out = np.empty(len(body), dtype=object)
    for i, row in enumerate(body):
        out[i] = row[index]
    return out


def text_signature(folder: Path) -> tuple[Any, Any] | None:
    """For a raw-string inference folder: (MLflow signature with one string column, a DataFrame input example); else None."""
    from expkit.serving.inference import SPEC_FILE

    spec = json.loads((folder / SPEC_FILE).read_text())
    if not is_text(spec):
        return None
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    params = ParamSchema([ParamSpec("output", "string", "classes")])
    signature = ModelSignature(inputs=Schema([ColSpec("string", spec["column"])]), params=params)
    return signature, pd.DataFrame({spec["column"]: spec["example"]})
