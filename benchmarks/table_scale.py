"""A large table streams: one epoch on a generated 1,000,000-row × 20-column CSV (numeric and categorical columns).

    python benchmarks/table_scale.py                 # writes benchmarks/results/table_scale.json
    python benchmarks/table_scale.py --rows 1000000 --small 100000 --work /tmp/table_scale

Three whole processes under `/usr/bin/time -v` (peak RSS):
- expkit on the 100,000-row file and on the 1,000,000-row file (`dataset.source: table`, `dataset.stream: true`,
  pyarrow's streaming reader; the large file also with `stream_reader: csvdataset`,
  one epoch, batch 256): peak RSS of the large run at most 1.5x the small one's (acceptance 5);
- a hand-written tf.data pipeline on the large file (`tf.data.experimental.CsvDataset`, a 20,000-row shuffle buffer,
  batch 256, the same Keras preprocessing layers and the default MLP (Dense 64 relu, Dense 3 softmax, Adam),
  `steps_per_execution=16`): expkit's training throughput (training rows / first-epoch seconds, from the run's
  `epoch_time_s`) at least 0.9x its rows / epoch seconds.

The readers measured before choosing (`--readers`): pandas chunks, `CsvDataset` batches, and pyarrow's streaming CSV
reader, each one pass over the large file's feature columns, seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NUMERIC = [f"n{i}" for i in range(14)]
CATEGORICAL = {f"c{i}": 5 + 9 * i for i in range(5)}  # 5, 14, 23, 32, 41 categories
BATCH = 256
SHUFFLE = 20_000


def write_table(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """`rows` rows: 14 numeric columns (2 % missing), 5 categorical (1 % missing), a 3-class label from a linear rule."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=len(NUMERIC))
    with path.open("w") as out:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            x = rng.normal(size=(n, len(NUMERIC))).astype(np.float32)
            frame = pd.DataFrame(x, columns=NUMERIC).round(4)
            score = x @ weights
            for name, k in CATEGORICAL.items():
                codes = rng.integers(0, k, n)
                score += (codes % 3 - 1) * 0.5
                values = np.asarray([f"{name}_v{c}" for c in range(k)], dtype=object)[codes]
                values[rng.random(n) < 0.01] = ""
                frame[name] = values
            frame = frame.mask(pd.DataFrame(rng.random(frame.shape) < 0.02, columns=frame.columns) & frame.columns.isin(NUMERIC))
            frame["label"] = np.asarray(["low", "mid", "high"], dtype=object)[np.digitize(score, [-1.0, 1.0])]
            frame.to_csv(out, header=start == 0, index=False)


def timed(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """(process, wall seconds, peak RSS in MB) of one whole process under /usr/bin/time -v."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return done, seconds, round(int(found.group(1)) / 1024) if found else -1


def expkit_epoch(path: Path, work: Path, reader: str = "pyarrow") -> dict[str, float]:
    """One expkit epoch on `path`, streamed; its training rows, first-epoch seconds, whole-process seconds and peak RSS."""
    import shutil

    import mlflow

    root = work / f"expkit_{path.stem}_{reader}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    features = "{" + ", ".join(f"{c}: categorical" for c in CATEGORICAL) + "}"
    cmd = [sys.executable, "-m", "expkit.cli", "train", "name=table_scale", "dataset=table", f"dataset.path={path}", "dataset.target=label"]
    cmd += [
        f"dataset.features={features}",
        "dataset.numeric_rest=true",
        "+dataset.stream=true",
        f"+dataset.stream_reader={reader}",
        "dataset.validation.holdout=null",
    ]
    cmd += [
        "model=mlp",
        "model.units=64",
        "model.layers.1.units=3",
        "optimizer=adam",
        "trainer.epochs=1",
        f"trainer.batch_size={BATCH}",
        "trainer.verbose=0",
    ]
    cmd += ["tracking.log_model=false", "tracking.tensorboard.enabled=false", f"paths.root_dir={root}"]
    _done, seconds, rss = timed(cmd, root)
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("table_scale").experiment_id])
    epoch = client.get_metric_history(run.info.run_id, "epoch_time_s")[0].value
    rows = sum(1 for _ in path.open()) - 1
    train_rows = rows - round(rows * 0.2)  # test_fraction 0.2 (sklearn rounds the test part up)
    return {"rows": rows, "train_rows": train_rows, "epoch_seconds": round(epoch, 2), "rows_per_second": round(train_rows / epoch),
            "process_seconds": round(seconds, 1), "peak_rss_mb": rss}  # fmt: skip


def baseline(path: Path) -> None:
    """The hand-written pipeline (run in its own process): statistics in pandas chunks, then one timed epoch."""
    import keras
    import pandas as pd
    import tensorflow as tf

    sums = {c: [0.0, 0.0, 0] for c in NUMERIC}
    vocab: dict[str, set[str]] = {c: set() for c in CATEGORICAL}
    for chunk in pd.read_csv(path, chunksize=100_000):
        for c in NUMERIC:
            v = chunk[c].dropna().to_numpy(np.float64)
            sums[c][0] += v.sum()
            sums[c][1] += (v * v).sum()
            sums[c][2] += len(v)
        for c in CATEGORICAL:
            vocab[c] |= set(chunk[c].fillna("").astype(str))
    header = open(path).readline().strip().split(",")  # noqa: SIM115
    defaults = [tf.constant([""]) if c in CATEGORICAL or c == "label" else tf.constant([np.nan], tf.float32) for c in header]
    rows = tf.data.experimental.CsvDataset(str(path), defaults, header=True).batch(4096)
    classes = tf.constant(["high", "low", "mid"])

    def to_inputs(*cols: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        named = dict(zip(header, cols, strict=True))
        label = tf.argmax(tf.cast(tf.equal(named.pop("label")[:, None], classes[None, :]), tf.int32), axis=1)
        return named, label

    data = rows.map(to_inputs, num_parallel_calls=2).unbatch().shuffle(SHUFFLE, seed=0).batch(BATCH).prefetch(2)
    inputs, parts = {}, []
    for c in NUMERIC:
        total, squares, n = sums[c]
        mean = float(total / n)
        inputs[c] = keras.Input(shape=(1,), name=c)
        fill = keras.layers.Lambda(
            lambda t, m=mean: tf.where(tf.math.is_nan(t), tf.fill(tf.shape(t), tf.constant(m, tf.float32)), t), output_shape=(1,)
        )
        filled = fill(inputs[c])
        parts.append(keras.layers.Normalization(mean=mean, variance=squares / n - mean * mean)(filled))
    for c in CATEGORICAL:
        inputs[c] = keras.Input(shape=(1,), dtype="string", name=c)
        parts.append(keras.layers.StringLookup(vocabulary=sorted(vocab[c]), output_mode="one_hot")(inputs[c]))
    x = keras.layers.Concatenate()(parts)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=16)

    class EpochTime(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds = time.perf_counter() - self.started

    timer = EpochTime()
    model.fit(data, epochs=1, verbose=0, callbacks=[timer])
    print(json.dumps({"epoch_seconds": timer.seconds}))


def readers(path: Path) -> dict[str, dict[str, float]]:
    """One pass over the file's columns with each candidate reader, in its own process: seconds and peak RSS."""
    code = {
        "pandas_chunks": "import pandas as pd\nfor c in pd.read_csv(P, chunksize=100_000): pass",
        "tf_csvdataset": (
            "import tensorflow as tf, numpy as np\nh = open(P).readline().strip().split(',')\n"
            "d = [tf.constant([''], tf.string) if c[0] != 'n' else tf.constant([np.nan], tf.float32) for c in h]\n"
            "for b in tf.data.experimental.CsvDataset(P, d, header=True).batch(4096): pass"
        ),
        "pyarrow_stream": "import pyarrow.csv as pc\nfor b in pc.open_csv(P): pass",
    }
    out = {}
    for name, body in code.items():
        _done, seconds, rss = timed([sys.executable, "-c", f"P = {str(path)!r}\n{body}"], path.parent)
        out[name] = {"seconds": round(seconds, 1), "peak_rss_mb": rss}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--work", default="/tmp/expkit_table_scale")
    parser.add_argument("--readers", action="store_true", help="also time the candidate CSV readers")
    parser.add_argument("--note", default="", help="e.g. 'taken under load'")
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(Path(args.baseline))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for rows in (args.small, args.rows):
        files[rows] = work / f"table_{rows}.csv"
        if not files[rows].is_file():
            write_table(files[rows], rows)
    small = expkit_epoch(files[args.small], work)
    large = expkit_epoch(files[args.rows], work)
    large_csvdataset = expkit_epoch(files[args.rows], work, "csvdataset")  # the other reader, measured for the choice
    done, seconds, rss = timed([sys.executable, __file__, "--baseline", str(files[args.rows])], work)
    epoch = json.loads(done.stdout.strip().splitlines()[-1])["epoch_seconds"]
    hand = {"rows": large["rows"], "epoch_seconds": round(epoch, 2), "rows_per_second": round(large["rows"] / epoch),
            "process_seconds": round(seconds, 1), "peak_rss_mb": rss}  # fmt: skip
    result = {
        "what": f"one epoch, batch {BATCH}, {args.rows:,} x 20 CSV (14 numeric, 5 categorical, 3-class label) against {args.small:,}",
        "note": args.note,
        "file_mb": {str(k): round(v.stat().st_size / 2**20) for k, v in files.items()},
        "expkit_small": small,
        "expkit_large": large,
        "expkit_large_csvdataset_reader": large_csvdataset,
        "hand_written_tf_data_large": hand,
        "rss_ratio_large_to_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "rss_ratio_target_max": 1.5,
        "throughput_ratio_expkit_to_hand": round(large["rows_per_second"] / hand["rows_per_second"], 3),
        "throughput_ratio_target_min": 0.9,
    }
    if args.readers:
        result["readers_one_pass"] = readers(files[args.rows])
    out = HERE / "results" / "table_scale.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
