"""The `table` source: a CSV or Parquet file whose columns are typed features and a target.

```yaml
dataset:
  source: table
  name: penguins
  path: penguins.csv            # or pkg://palmerpenguins/data/penguins.csv (a file inside an installed package)
  test_path: null               # a separate test file, else `test_fraction` of the rows (seeded, stratified for classes)
  target: species
  features: {island: categorical, bill_length_mm: numeric, sex: {type: categorical, encoding: embedding}}
  numeric_rest: true            # every other column (but the target) is numeric
```

Raw values come out as named arrays: numbers as float32 with NaN for missing, categories and text as object arrays of
str ("" for missing), integer categories as int64 (-1 for missing). Class names come from the data (a string target, or
`task: classification`); a numeric target is regression. Everything fitted (means, vocabularies) is fitted later on
the training split only, inside the model (expkit/models/preprocessing.py).

`check_table` reads the header (and the target column) only: file and column errors are found before any run starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from expkit.config.features import FeatureSpec, feature_spec
from expkit.config.schema import Strict
from expkit.data.named import PACKAGE_PREFIX, Named, NamedArrays, package_file
from expkit.errors import ExpkitError, did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# check_table reads a file up to this size whole (finding every bad value before a run starts); larger ones: the header.
CHECK_ALL_BYTES = 64 * 2**20
STREAM_BYTES = 256 * 2**20
# The last table loaded, by (files, their sizes and mtimes, options, seed): the pre-run check's arrays, reused by the run.
_LAST: dict[str, Any] = {}


class TableOptions(Strict):
    """The table source's options (beside the shared dataset.path and dataset.test_fraction)."""

    target: str
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    # Every column neither named under `features` nor the target is a numeric feature.
    numeric_rest: bool = False
    test_path: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    # auto: a string (or boolean) target is classification, a numeric one regression.
    task: Literal["auto", "classification", "regression"] = "auto"
    format: Literal["auto", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"
    delimiter: str = ","
    # Stream the file (pandas chunks for statistics, tf.data's CSV reader for training): auto streams a CSV larger
    # than STREAM_BYTES. A streamed table takes test_fraction and a validation holdout/split (no test_path, no k-fold).
    stream: Literal["auto"] | bool = "auto"
    # The streamed file's reader per pass: pyarrow's streaming CSV reader, or tf.data's CsvDataset.
    stream_reader: Literal["pyarrow", "csvdataset"] = "pyarrow"

    @field_validator("features", mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if value is None:  # conf/dataset/table.yaml leaves it null, so `dataset.features={...}` can set it
            return {}
        return {k: feature_spec(v) for k, v in value.items()} if isinstance(value, dict) else value

    def feature_types(self, columns: list[str]) -> dict[str, Any]:
        """{column: feature spec} for the loaded columns: the named ones, and numeric for the rest (numeric_rest)."""
        from expkit.config.features import NumericFeature

        return {c: self.features.get(c) or NumericFeature() for c in columns}


def resolve_path(path: str | None, data_dir: str | None, key: str) -> Path:
    """A table file: pkg://package/inside/file, an absolute or ~ path, or one relative to paths.data_dir if found there."""
    if not path:
        raise ExpkitError("the table source needs a file", key=key, hint="set dataset.path=<file.csv or file.parquet>")
    if path.startswith(PACKAGE_PREFIX):
        file = Path(package_file(path))
        if str(file) == path:
            package = path[len(PACKAGE_PREFIX) :].partition("/")[0]
            raise ExpkitError(f"no installed package '{package}' for {path}", key=key, hint=f"pip install {package}")
    else:
        file = Path(path).expanduser()
        if not file.is_absolute() and not file.exists() and data_dir and (Path(data_dir).expanduser() / file).exists():
            file = Path(data_dir).expanduser() / file
    if not file.is_file():
        raise ExpkitError(f"table file {file} does not exist", key=key, hint="fix the path (CSV or Parquet)")
    return file


def is_parquet(file: Path, options: TableOptions) -> bool:
    if options.format != "auto":
        return options.format == "parquet"
    return file.suffix.lower() in (".parquet", ".pq")


def read_header(file: Path, options: TableOptions) -> list[str]:
    """The column names, reading only the first line (CSV) or the schema (Parquet)."""
    if is_parquet(file, options):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(file).names)
        except Exception as exc:  # pyarrow raises several kinds for a bad file
            raise ExpkitError(f"{file}: cannot read it as Parquet: {exc}", key="dataset.path") from None
    import csv

    try:
        with file.open(newline="", encoding=options.encoding) as handle:
            header = next(csv.reader(handle, delimiter=options.delimiter), None)
    except UnicodeDecodeError as exc:
        raise not_utf8(file, options, exc) from None
    if not header or not any(h.strip() for h in header):
        raise ExpkitError(f"{file} is empty: no header line", key="dataset.path", hint="a CSV file starts with a line of column names")
    return [h.strip() for h in header]


def not_utf8(file: Path, options: TableOptions, exc: UnicodeDecodeError) -> ExpkitError:
    return ExpkitError(
        f"{file} is not {options.encoding} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
        key="dataset.path",
        hint="save the file as UTF-8, or set dataset.encoding (e.g. latin-1)",
    )


def check_columns(file: Path, header: list[str], options: TableOptions) -> list[str]:
    """The feature columns this config reads from `file`; a named column the file lacks is an error (with did-you-mean)."""
    wanted = [("dataset.target", options.target), *((f"dataset.features.{c}", c) for c in options.features)]
    for key, column in wanted:
        if column not in header:
            best = did_you_mean(column, header)
            raise ExpkitError(
                f"{file} has no column '{column}'",
                key=key,
                hint=(f"did you mean '{best}'? " if best else "") + f"its columns: {', '.join(header)}",
            )
    if options.target in options.features:
        raise ExpkitError(f"column '{options.target}' is both the target and a feature", key=f"dataset.features.{options.target}")
    columns = [c for c in header if c in options.features or (options.numeric_rest and c != options.target)]
    if not columns:
        raise ExpkitError(
            f"no feature columns chosen from {file}",
            key="dataset.features",
            hint="name columns under dataset.features, or set dataset.numeric_rest",
        )
    return columns


def check_table(options: TableOptions, *, path: str | None, data_dir: str | None = None, seed: int = 42, **_: Any) -> None:
    """The data errors found before training: files, columns, and a target with fewer than two classes (the header and
    the target column only); a file up to CHECK_ALL_BYTES is read whole, so a bad value or line is found too (and the
    arrays are kept for the loader). Runs before any MLflow run is created.
    """
    file = resolve_path(path, data_dir, "dataset.path")
    check_columns(file, read_header(file, options), options)
    if options.test_path:
        test = resolve_path(options.test_path, data_dir, "dataset.test_path")
        check_columns(test, read_header(test, options), options)
    if options.stream is not True and file.stat().st_size <= CHECK_ALL_BYTES:
        load_table(options, path=path, data_dir=data_dir, seed=seed)
        return
    labels = read_frame(file, options, [options.target])[options.target].dropna()
    if classification(options, labels) and labels.nunique() < 2:
        raise one_class(file, options.target, labels)


def one_class(file: Path, target: str, labels: pd.Series) -> ExpkitError:
    seen = f"only '{labels.iloc[0]}'" if len(labels) else "no values"
    return ExpkitError(
        f"{file}: the target column '{target}' has {seen}: a classifier needs at least two classes",
        key="dataset.target",
        hint="check the target column (or set dataset.task: regression for a numeric target)",
    )


def read_frame(file: Path, options: TableOptions, columns: list[str] | None = None) -> pd.DataFrame:
    """The file (only `columns`, if given) as a DataFrame; empty, ragged and non-UTF-8 files are errors naming the file."""
    import pandas as pd

    if is_parquet(file, options):
        try:
            return pd.read_parquet(file, columns=columns)
        except Exception as exc:  # pyarrow raises several kinds for a bad file
            raise ExpkitError(f"{file}: cannot read it as Parquet: {exc}", key="dataset.path") from None
    try:
        # Every column is parsed, so a line with more fields than the header is an error (usecols would skip the extra).
        frame = pd.read_csv(file, encoding=options.encoding, sep=options.delimiter, skipinitialspace=True)
    except UnicodeDecodeError as exc:
        raise not_utf8(file, options, exc) from None
    except pd.errors.EmptyDataError:
        raise ExpkitError(f"{file} is empty", key="dataset.path", hint="a CSV file starts with a line of column names") from None
    except pd.errors.ParserError as exc:
        raise ragged(file, exc) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame[columns] if columns is not None else frame
    if frame.empty:
        raise ExpkitError(f"{file} has a header but no rows", key="dataset.path")
    return frame


def ragged(file: Path, exc: Exception) -> ExpkitError:
    import re

    text = str(exc).strip().splitlines()[-1]
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if found:
        want, line, saw = found.groups()
        return ExpkitError(
            f"{file}, line {line}: {saw} fields where the header has {want}",
            key="dataset.path",
            hint="a value with the delimiter in it needs quotes; or the line has a stray delimiter",
        )
    return ExpkitError(f"{file}: cannot parse it as CSV: {text}", key="dataset.path")


def classification(options: TableOptions, target: pd.Series) -> bool:
    import pandas as pd

    if options.task != "auto":
        return options.task == "classification"
    return not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target)


def column_values(file: Path, frame: pd.DataFrame, column: str, spec: Any, first_row: int = 0) -> np.ndarray:
    """One feature column as its raw array (see the module doc); values of the wrong kind are errors naming the line."""
    import numpy as np
    import pandas as pd

    series = frame[column]
    kind = spec.type
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if kind in ("numeric", "passthrough"):
        if not numeric:
            parsed = pd.to_numeric(series, errors="coerce")
            bad = parsed.isna() & series.notna() & (series.astype(str).str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ExpkitError(
                    f"{file}, line {first_row + row + 2}: column '{column}' is numeric but holds {frame[column].iloc[row]!r}",
                    key=f"dataset.features.{column}",
                    hint="fix that value (leave it empty if missing), or declare the column categorical or text",
                )
            series = parsed
        values = series.to_numpy(dtype=np.float32, na_value=np.nan)
        if kind == "passthrough" and np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise ExpkitError(
                f"{file}, line {first_row + row + 2}: column '{column}' (passthrough) has a missing value",
                key=f"dataset.features.{column}",
                hint="declare it numeric to impute missing values",
            )
        return values
    if kind == "categorical" and numeric:
        present = series.dropna().to_numpy(dtype=np.float64)
        if not np.all(present == np.round(present)):
            example = next(v for v in present if v != round(v))
            raise ExpkitError(
                f"{file}: column '{column}' is declared categorical but holds numbers such as {example:g}",
                key=f"dataset.features.{column}",
                hint="declare it numeric; categories are strings or whole numbers",
            )
        return series.to_numpy(dtype=np.float64, na_value=-1).astype(np.int64)
    return strings(series)


def strings(series: pd.Series) -> np.ndarray:
    """An object array of str, "" where missing."""
    import numpy as np

    return np.asarray(series.astype(object).where(series.notna(), "").map(str).to_numpy(), dtype=object)


def target_values(file: Path, frame: pd.DataFrame, options: TableOptions, is_class: bool) -> np.ndarray:
    import numpy as np
    import pandas as pd

    series = frame[options.target]
    if is_class:
        if pd.api.types.is_float_dtype(series):
            series = series.astype("Int64") if bool((series.dropna() == series.dropna().round()).all()) else series
        return np.asarray(series.map(str).to_numpy(), dtype=object)
    if not pd.api.types.is_numeric_dtype(series):
        raise ExpkitError(
            f"{file}: the target '{options.target}' is not numeric, so it cannot be regressed", key="dataset.task", hint="use task: auto"
        )
    return series.to_numpy(dtype=np.float32)


def load_file(file: Path, options: TableOptions, columns: list[str], is_class: bool | None = None) -> tuple[Named, Named, bool]:
    """({feature: raw array}, {target: labels or values}, is classification) for one file; rows without a target are dropped."""
    frame = read_frame(file, options, [*columns, options.target])
    missing = frame[options.target].isna()
    if missing.any():
        print(f"{file}: {int(missing.sum())} row(s) without a '{options.target}' value left out", file=sys.stderr)
        frame = frame[~missing].reset_index(drop=True)
    is_class = classification(options, frame[options.target]) if is_class is None else is_class
    if is_class and frame[options.target].nunique() < 2:
        raise one_class(file, options.target, frame[options.target])
    types = options.feature_types(columns)
    x = {c: column_values(file, frame, c, types[c]) for c in columns}
    return x, {options.target: target_values(file, frame, options, is_class)}, is_class


def split_rows(x: Named, y: Named, fraction: float, seed: int, stratify: np.ndarray | None, file: Path) -> NamedArrays:
    """A seeded train/test split of the rows (stratified by class for classification)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    n = len(next(iter(y.values())))
    try:
        train, test = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise ExpkitError(
            f"{file}: cannot hold out {fraction:g} of {n} rows as test data: {exc}",
            key="dataset.test_fraction",
            hint="give a separate dataset.test_path, or change test_fraction (every class needs 2+ rows)",
        ) from None

    def rows(a: Named, idx: np.ndarray) -> Named:
        return {k: v[idx] for k, v in a.items()}

    return (rows(x, train), rows(y, train)), (rows(x, test), rows(y, test))


def load_table(options: TableOptions, *, path: str | None, data_dir: str | None = None, seed: int = 42, **_: Any) -> NamedArrays:
    """Named raw arrays from the table file(s): a test file, or a seeded (stratified) split."""
    file = resolve_path(path, data_dir, "dataset.path")
    files = [file, *([resolve_path(options.test_path, data_dir, "dataset.test_path")] if options.test_path else [])]
    key = repr(([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files], options.model_dump_json(), seed))
    if _LAST.get("key") == key:
        return _LAST["arrays"]  # type: ignore[no-any-return]
    _LAST.clear()
    arrays = _load_table(file, options, data_dir, seed)
    if file.stat().st_size <= CHECK_ALL_BYTES:
        _LAST.update(key=key, arrays=arrays)
    return arrays


def _load_table(file: Path, options: TableOptions, data_dir: str | None, seed: int) -> NamedArrays:
    columns = check_columns(file, read_header(file, options), options)
    x, y, is_class = load_file(file, options, columns)
    if options.test_path:
        test = resolve_path(options.test_path, data_dir, "dataset.test_path")
        check_columns(test, read_header(test, options), options)
        x_test, y_test, _same = load_file(test, options, columns, is_class)
        return (x, y), (x_test, y_test)
    return split_rows(x, y, options.test_fraction, seed, y[options.target] if is_class else None, file)
