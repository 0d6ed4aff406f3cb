"""A large table file, streamed: it trains without being loaded whole.

- Pass 1 reads the target column only (pandas, in chunks): labels as int32 class indices (or float32 values), and
  each row's part (train, validation, test) from a seeded, stratified split of the row numbers.
- Pass 2 reads the feature columns in chunks and gathers the training rows' statistics (expkit.data.table_stats),
  checking every value as the in-memory loader does (text in a numeric column names its line).
- Training and evaluation read the file again each epoch with tf.data's C++ CSV reader (`CsvDataset`), keep the
  rows of the wanted part, and batch them; the model's own preprocessing layers encode them.

Memory grows with the rows only by a label and a part byte per row. The stream subclasses ImageSplits, so it has the
common splits interface (expkit.data.splits.DataSplits) and feeds itself through `batches` and `steps`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expkit.data.images import ImageFiles, ImageSplits
from expkit.data.table import TableOptions, check_columns, classification, column_values, read_header, resolve_path
from expkit.data.table_stats import ColumnStats
from expkit.errors import ExpkitError

CHUNK_ROWS = 100_000
READ_BATCH = 4096  # rows parsed per tf.data step before the wanted part's rows are kept
SHUFFLE_ROWS = 20_000
TRAIN, VALIDATION, TEST, DROPPED = 0, 1, 2, -1


@dataclass
class TableStream(ImageSplits):
    """A table file's splits, read from disk per pass. `y_*` are the labels in memory; the features stay on disk."""

    file: Path = Path()
    columns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    feature_types: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, ColumnStats] = field(default_factory=dict)
    parts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    delimiter: str = ","
    # Training batches end with each epoch (one pass over the file, no steps_per_epoch), so the runner lets a multi-step
    # call (trainer.steps_per_execution) stop at the epoch's end, as it does for arrays.
    epoch_ends: bool = True
    # How each pass reads the file: pyarrow's streaming CSV reader, or tf.data's CsvDataset (benchmarks/table_scale.py).
    reader: str = "pyarrow"
    encoding: str = "utf-8"

    @property
    def raw_x_example(self) -> None:  # the table's inference model is logged from its typed columns
        return None

    def count(self, name: str) -> int:
        return int((self.parts == {"train": TRAIN, "validation": VALIDATION, "test": TEST}[name]).sum())

    def steps(self, name: str, batch_size: int) -> int:
        return -(-self.count(name) // batch_size)

    def _rows(self, part: int) -> Any:
        """The rows of `part` as ({column: tensor}, label) elements, in file order."""
        return self._rows_pyarrow(part) if self.reader == "pyarrow" else self._rows_csvdataset(part)

    def _rows_pyarrow(self, part: int) -> Any:
        """pyarrow's streaming CSV reader (multi-threaded C++ parsing) in blocks; one Python call per block, not per row."""
        import pyarrow as pa
        import pyarrow.csv as pc
        import tensorflow as tf

        types = {c: self.statistics[c].dtype for c in self.columns}
        arrow = {"string": pa.string(), "int64": pa.float64(), "float32": pa.float32()}  # whole numbers may have gaps

        def blocks() -> Any:
            reader = pc.open_csv(
                self.file,
                read_options=pc.ReadOptions(block_size=4 << 20, encoding=self.encoding),
                parse_options=pc.ParseOptions(delimiter=self.delimiter),
                convert_options=pc.ConvertOptions(
                    include_columns=self.columns, column_types={c: arrow[t] for c, t in types.items()}, strings_can_be_null=True
                ),
            )
            start = 0
            for block in reader:
                n = block.num_rows
                mask = self.parts[start : start + n] == part
                start += n
                if not mask.any():
                    continue
                features = {}
                for column, kind in types.items():
                    values = block.column(column)
                    if kind == "string":
                        array = np.asarray(values.fill_null("").to_numpy(zero_copy_only=False), dtype=object)
                    elif kind == "int64":
                        array = values.fill_null(-1).to_numpy().astype(np.int64)
                    else:
                        array = values.to_numpy(zero_copy_only=False).astype(np.float32)  # nulls -> NaN
                    features[column] = array[mask]
                yield features, self.labels[start - n : start][mask]

        tf_types = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
        signature = (
            {c: tf.TensorSpec([None], tf_types[t]) for c, t in types.items()},
            tf.TensorSpec([None], tf.as_dtype(self.labels.dtype)),
        )
        return tf.data.Dataset.from_generator(blocks, output_signature=signature).unbatch()

    def _rows_csvdataset(self, part: int) -> Any:
        """tf.data's C++ CSV reader, row by row, the part's rows kept batch by batch."""
        import tensorflow as tf

        defaults = []
        for column in self.columns:
            dtype = self.statistics[column].dtype
            defaults.append(
                tf.constant([""], tf.string)
                if dtype == "string"
                else tf.constant([-1], tf.int64)
                if dtype == "int64"
                else tf.constant([np.nan], tf.float32)
            )
        select = [self.header.index(c) for c in self.columns]
        order = np.argsort(select)  # CsvDataset yields the selected columns in file order
        csv = tf.data.experimental.CsvDataset(
            str(self.file), [defaults[i] for i in order], header=True, select_cols=sorted(select), field_delim=self.delimiter, na_value="NA"
        ).batch(READ_BATCH)
        meta = tf.data.Dataset.from_tensor_slices((self.labels, self.parts)).batch(READ_BATCH)
        names = [self.columns[i] for i in order]

        def keep(values: Any, meta: Any) -> Any:
            labels, parts = meta
            mask = tf.equal(parts, part)
            features = {n: tf.boolean_mask(v, mask) for n, v in zip(names, values, strict=True)}
            return features, tf.boolean_mask(labels, mask)

        return tf.data.Dataset.zip(csv, meta).map(keep, num_parallel_calls=2, deterministic=True).unbatch()

    def batches(
        self,
        name: str,
        batch_size: int,
        *,
        train: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        first_epoch: int = 0,
        epochs: int = 1,
        labels: bool = True,
    ) -> Any:
        """Batches of split `name`: one pass over the file. Training rows go through a shuffle buffer of SHUFFLE_ROWS
        rows, seeded by (seed, first epoch) and reshuffled on each pass (fit iterates the dataset once per epoch)."""
        part = {"train": TRAIN, "validation": VALIDATION, "test": TEST}[name]
        rows = self._rows(part)
        if train and shuffle:
            rows = rows.shuffle(SHUFFLE_ROWS, seed=seed * 1000 + first_epoch, reshuffle_each_iteration=True)
        data = rows.batch(batch_size)
        if not labels:
            data = data.map(lambda x, y: x)
        return data.prefetch(2)

    def sample(self, name: str, count: int) -> Any:  # named raw arrays, not one array as the base class gives
        """The first `count` rows of a split as raw named arrays (an input example)."""
        batch = next(iter(self.batches(name, count, labels=False)))
        out = {}
        for column, tensor in batch.items():
            values = tensor.numpy()
            out[column] = np.asarray([v.decode() for v in values], dtype=object) if values.dtype == object else values
        return out


def read_chunks(file: Path, options: TableOptions, columns: list[str]) -> Any:
    """The file's `columns` in chunks of CHUNK_ROWS rows (pandas), with the same errors as the in-memory reader."""
    import pandas as pd

    from expkit.data.table import not_utf8, ragged

    try:
        reader = pd.read_csv(
            file, usecols=columns, encoding=options.encoding, sep=options.delimiter, skipinitialspace=True, chunksize=CHUNK_ROWS
        )
        yield from reader
    except UnicodeDecodeError as exc:
        raise not_utf8(file, options, exc) from None
    except pd.errors.ParserError as exc:
        raise ragged(file, exc) from None


def label_pass(file: Path, options: TableOptions) -> tuple[np.ndarray, list[str] | None]:
    """Every row's label (class index, or value; NaN / -1 where missing) and the class names (None: regression)."""
    import pandas as pd

    codes: dict[str, int] = {}
    parts: list[np.ndarray] = []
    is_class: bool | None = None
    for chunk in read_chunks(file, options, [options.target]):
        target = chunk[options.target]
        if is_class is None:
            is_class = classification(options, target)
        if is_class:
            present = target.notna().to_numpy()
            text = target.astype(object).where(target.notna(), "").map(str).to_numpy()
            for value in pd.unique(text[present]):
                codes.setdefault(value, len(codes))
            parts.append(np.asarray([codes[v] if ok else -1 for v, ok in zip(text, present, strict=True)], dtype=np.int32))
        else:
            parts.append(pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan))
    labels = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not is_class:
        return labels, None
    names = sorted(codes, key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
    remap = np.asarray([names.index(v) for v in codes] + [-1], dtype=np.int32)
    return remap[labels], names  # -1 (missing) indexes the appended -1


def assign_parts(
    labels: np.ndarray, classes: list[str] | None, options: TableOptions, validation: Any, seed: int, file: Path
) -> np.ndarray:
    """Each row's part: a seeded (stratified) test_fraction, then the validation holdout or split of the rest."""
    from sklearn.model_selection import train_test_split

    missing = labels < 0 if classes is not None else np.isnan(labels)
    rows = np.flatnonzero(~missing)
    parts = np.full(len(labels), DROPPED, dtype=np.int8)
    parts[rows] = TRAIN
    stratify = labels[rows] if classes is not None else None
    try:
        if not options.test_path:
            keep, test = train_test_split(rows, test_size=options.test_fraction, random_state=seed, stratify=stratify)
            parts[test] = TEST
            rows, stratify = keep, (labels[keep] if classes is not None else None)
        held = validation.holdout if validation.holdout is not None else validation.split
        if held is not None:
            _, val = train_test_split(rows, test_size=held, random_state=seed + 1, stratify=stratify)
            parts[val] = VALIDATION
    except ValueError as exc:
        raise ExpkitError(f"{file}: cannot split the rows: {exc}", key="dataset.test_fraction") from None
    if missing.any():
        print(f"{file}: {int(missing.sum())} row(s) without a '{options.target}' value left out", file=sys.stderr)
    return parts


def statistics_pass(file: Path, options: TableOptions, columns: list[str], parts: np.ndarray) -> dict[str, ColumnStats]:
    """The training rows' statistics, one chunk at a time; every value is checked as the in-memory loader does."""
    types = options.feature_types(columns)
    stats = {c: ColumnStats(types[c]) for c in columns}
    rng = np.random.default_rng(0)
    start = 0
    for chunk in read_chunks(file, options, columns):
        train = parts[start : start + len(chunk)] == TRAIN
        for column in columns:
            values = column_values(file, chunk, column, types[column], first_row=start)
            stats[column].add(values[train], rng)
            if types[column].type == "categorical" and values.dtype != object:
                stats[column].dtype = "int64"
        start += len(chunk)
    return stats


def stream_table(
    options: TableOptions,
    *,
    path: str | None,
    data_dir: str | None = None,
    seed: int = 42,
    validation: Any = None,
    fold: Any = None,
    **_: Any,
) -> TableStream | None:
    """The streamed splits of a large table (or with dataset.stream: true); None when the file is read into memory."""
    from expkit.data.table import STREAM_BYTES

    file = resolve_path(path, data_dir, "dataset.path")
    if options.stream is False or (options.stream == "auto" and file.stat().st_size <= STREAM_BYTES):
        return None
    if fold is not None or options.test_path:
        raise ExpkitError(
            "a streamed table is split by test_fraction and a validation holdout or split",
            key="dataset.stream",
            hint="k-fold and test_path need dataset.stream: false (the file is read into memory)",
        )
    header = read_header(file, options)
    columns = check_columns(file, header, options)
    labels, classes = label_pass(file, options)
    if classes is not None and len(classes) < 2:
        import pandas as pd

        from expkit.data.table import one_class

        raise one_class(file, options.target, pd.Series(classes))
    parts = assign_parts(labels, classes, options, validation, seed, file)
    stats = statistics_pass(file, options, columns, parts)
    labels = np.where(parts == DROPPED, 0, labels).astype(labels.dtype)

    def files(part: int) -> ImageFiles:
        return ImageFiles([], labels[parts == part])

    return TableStream(
        train=files(TRAIN),
        test=files(TEST),
        validation=files(VALIDATION) if (parts == VALIDATION).any() else None,
        class_names=classes or [],
        image_size=(1, 1),
        channels=1,
        fingerprint=f"{file.name}-{file.stat().st_size}-{file.stat().st_mtime_ns}",
        file=file,
        columns=columns,
        header=header,
        feature_types=options.feature_types(columns),
        statistics=stats,
        parts=parts,
        labels=labels,
        delimiter=options.delimiter,
        reader=options.stream_reader,
        encoding=options.encoding,
    )
