"""Serving a model trained on table features: raw rows (a DataFrame, a CSV or Parquet file, JSON records) in.

The trained model already holds its fitted preprocessing layers (expkit.models.preprocessing), so it IS the
inference model: this module only turns rows into its named raw inputs (numbers as float32 with NaN for missing,
strings with "" for missing) and checks the columns, with errors naming the column and the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from expkit.errors import ExpkitError, did_you_mean
from expkit.serving.inference import reader

KIND = "table"


def write_table_inference(model: Any, splits: Any, loss: Any, out_dir: Path) -> Path:
    """The trained model and its spec (columns, class names) in `out_dir`, as expkit.serving.inference reads them."""
    from expkit.serving.inference import KERAS_FILE, SPEC_FILE
    from expkit.training.baseline import is_classification

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / KERAS_FILE)
    classifier = is_classification(loss)
    from expkit.models.preprocessing import training_statistics

    names = splits.class_names if isinstance(splits.class_names, list) else next(iter(splits.class_names.values()), None)
    if classifier and names is None:
        from expkit.serving.inference import class_names

        names = class_names(int(model.output_shape[-1]))
    spec = {
        "kind": KIND,
        "columns": {column: stats.info() for column, stats in training_statistics(splits).items()},
        "classifier": classifier,
        "class_names": names or [],
    }
    (out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n")
    return out_dir


def signature_schema(spec: dict[str, Any]) -> Any:
    """The MLflow input schema: one column per feature, double for numbers, string for categories and text."""
    from mlflow.types import ColSpec, Schema

    return Schema([ColSpec("string" if c["dtype"] == "string" else "double", name) for name, c in spec["columns"].items()])


def as_frame(rows: Any) -> Any:
    """A DataFrame from a DataFrame, a dict of columns, a list of records, or a 2-D array with named fields."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict | list):
        return pd.DataFrame(rows)
    raise ExpkitError(
        f"the model takes rows with named columns, got {type(rows).__name__}", key="--input", hint="give a CSV file or JSON records"
    )


@reader("table")
def table_rows(rows: Any, spec: dict[str, Any], first_row: int = 0) -> dict[str, np.ndarray]:
    """What a table inference model reads: its named raw inputs (see `table_inputs`)."""
    return table_inputs(rows, spec, first_row=first_row)


def table_inputs(rows: Any, spec: dict[str, Any], *, first_row: int = 0) -> dict[str, np.ndarray]:
    """The model's named raw inputs from rows; a missing column, text in a numeric column or (with unseen: error) an unseen
    category is an error naming it. `first_row`: the number of rows before these (for messages about a chunk)."""
    import pandas as pd

    frame = as_frame(rows)
    columns = spec["columns"]
    have = [str(c) for c in frame.columns]
    for name in columns:
        if name not in frame.columns:
            best = did_you_mean(name, have)
            raise ExpkitError(
                f"the input has no column '{name}'",
                key="--input",
                hint=(f"did you mean '{best}'? " if best else "")
                + f"the model takes: {', '.join(columns)} (a missing value may be left empty)",
            )
    out = {}
    for name, info in columns.items():
        series = frame[name]
        if info["dtype"] == "string":
            values = series.astype(object).where(series.notna(), "").map(str)
            if info.get("vocabulary") is not None:
                known = set(info["vocabulary"])
                unseen = ~values.isin(known)
                if unseen.any():
                    row = int(np.flatnonzero(unseen.to_numpy())[0])
                    raise ExpkitError(
                        f"row {first_row + row + 1}: column '{name}' has '{values.iloc[row]}', a category the model never saw",
                        key="--input",
                        hint=f"known: {', '.join(info['vocabulary'][:20])}; or train with unseen: oov to use the out-of-vocabulary bucket",
                    )
            out[name] = np.asarray(values.to_numpy(), dtype=object)
            continue
        parsed = pd.to_numeric(series, errors="coerce")
        bad = parsed.isna() & series.notna() & (series.astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ExpkitError(f"row {first_row + row + 1}: column '{name}' is numeric but holds {series.iloc[row]!r}", key="--input")
        if info["dtype"] == "int64":
            values = parsed.to_numpy(dtype=np.float64, na_value=-1)
            if info.get("vocabulary") is not None:
                unseen = ~np.isin(values, info["vocabulary"])
                if unseen.any():
                    row = int(np.flatnonzero(unseen)[0])
                    raise ExpkitError(
                        f"row {first_row + row + 1}: column '{name}' has {values[row]:g}, a category the model never saw", key="--input"
                    )
            out[name] = values.astype(np.int64)
        else:
            out[name] = parsed.to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def read_table(path: Path) -> Any:
    """Rows from a CSV or Parquet file, for `expkit predict`."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, skipinitialspace=True)
    except UnicodeDecodeError as exc:
        raise ExpkitError(f"{path} is not UTF-8 text (offset {exc.start})", key="--input", hint="save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise ExpkitError(f"{path} is empty", key="--input", hint="a CSV file starts with a line of column names") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise ExpkitError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}", key="--input") from None


def table_pyfunc_parts(folder: Path, splits: Any) -> dict[str, Any]:
    """What MLflow's pyfunc flavor logs for the table inference model in `folder`: {model, artifacts, signature (one column
    per feature), example}."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    from expkit.serving.inference import SPEC_FILE, pyfunc_class

    spec = json.loads((folder / SPEC_FILE).read_text())
    x_test = getattr(splits, "x_test", None)
    example = example_rows(x_test if isinstance(x_test, dict) else splits.sample("test", 2), spec, 2)  # arrays, or a stream
    signature = ModelSignature(inputs=signature_schema(spec), params=ParamSchema([ParamSpec("output", "string", "classes")]))
    return {"model": pyfunc_class()(), "artifacts": {"inference": str(folder)}, "signature": signature, "example": example}


def example_rows(x: dict[str, np.ndarray], spec: dict[str, Any], count: int) -> Any:
    """The first `count` raw rows as a DataFrame (missing numbers as NaN, missing strings as None)."""
    import pandas as pd

    columns = {}
    for name, info in spec["columns"].items():
        values = x[name][:count]
        if info["dtype"] == "string":
            columns[name] = [v if v != "" else None for v in values]
        elif info["dtype"] == "int64":
            columns[name] = [float(v) if v != -1 else np.nan for v in values]
        else:
            columns[name] = values.astype(np.float64)
    return pd.DataFrame(columns)
