"""Streamed image folders: throughput against a hand-written pipeline, and peak memory at 1x and 4x the folder size.

python benchmarks/image_pipeline.py [--images 4000] [--epochs 3] [--rounds 2]   # writes benchmarks/results/image_pipeline.json

One generated folder of 150x150 JPEGs (train/ test/ x cats/ dogs/) is trained on, with the same
small model, (a) through `expkit train` (dataset=image_dir) and (b) by a hand-written
`keras.utils.image_dataset_from_directory` pipeline. Throughput is training images per second of
the last epoch (the first one includes tracing); peak memory is the process's maximum RSS. The
runs are interleaved (expkit, hand-written, expkit, ...) so that load from other processes on
a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from record import save_result  # benchmarks/record.py (scripts run as python benchmarks/NAME.py)

HERE = Path(__file__).resolve().parent
SIZE = 150
BATCH = 32
# A small model, so that the input pipeline (read, decode, resize, rescale) dominates the step time.
LAYERS = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "strides": 2, "activation": "relu"},
    {"type": "GlobalAveragePooling2D"},
    {"type": "Dense", "units": 1, "activation": "sigmoid"},
]

HAND_WRITTEN = """
import json, sys, time
import keras, tensorflow as tf
root, epochs, batch, size, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
train = keras.utils.image_dataset_from_directory(root + "/train", image_size=(size, size), batch_size=batch, label_mode="binary", seed=42)
train = train.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
keras.utils.set_random_seed(42)
inputs = keras.Input((size, size, 3))
x = inputs
for spec in layers:
    spec = dict(spec); x = getattr(keras.layers, spec.pop("type"))(**spec)(x)
model = keras.Model(inputs, x)
model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): print(f"EPOCH_TIME {epoch} {time.perf_counter() - self.t:.4f}", flush=True)
model.fit(train, epochs=epochs, verbose=0, callbacks=[Timer()])
"""


def write_folder(root: Path, n_train: int, n_test: int = 100, seed: int = 0) -> None:
    """n_train + n_test 150x150 JPEGs: smooth random blobs (so they compress like photos, about 5-10 kB each)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = [rng.integers(0, 256, (10, 10, 3), dtype=np.uint8) for _ in range(50)]
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            name = ("cats", "dogs")[i % 2]
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            tile = np.clip(base[i % 50].astype(int) + rng.integers(-30, 30, (10, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(tile).resize((SIZE, SIZE), Image.BILINEAR).save(folder / f"{name}.{i}.jpg", quality=85)


def timed(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run under /usr/bin/time -v: the finished process, wall seconds, peak RSS in MB."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return done, seconds, round(peak_kb / 1024)


def figures(n_train: int, epoch_s: float, wall: float, peak: int) -> dict[str, float]:
    return {"images_per_s": round(n_train / epoch_s, 1), "median_epoch_s": round(epoch_s, 2), "wall_s": round(wall, 1), "peak_rss_mb": peak}


def best_of(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """The best round (least disturbed by other load): highest throughput, lowest peak memory; plus every round."""
    return {
        "images_per_s": max(r["images_per_s"] for r in rounds),
        "peak_rss_mb": min(r["peak_rss_mb"] for r in rounds),
        "rounds": rounds,
    }


def ratio(results: dict[str, Any], a: tuple[str, str, str], b: tuple[str, str, str]) -> float:
    return round(results[a[0]][a[1]][a[2]] / results[b[0]][b[1]][b[2]], 3)


def run_expkit(root: Path, work: Path, epochs: int, n_train: int) -> dict[str, float]:
    import mlflow

    layers = json.dumps(LAYERS).replace('"', "")
    cmd = [
        sys.executable,
        "-m",
        "expkit.cli",
        "train",
        "dataset=image_dir",
        f"dataset.path={root}",
        f"dataset.image_size=[{SIZE},{SIZE}]",
        "~model.units",
        f"model.layers={layers}",
        "model.loss=binary_crossentropy",
        "optimizer=rmsprop",
        f"trainer.epochs={epochs}",
        f"trainer.batch_size={BATCH}",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "tracking.tensorboard.enabled=false",
        "name=image_pipeline",
    ]
    work.mkdir(parents=True, exist_ok=True)
    _, seconds, peak = timed(cmd, work)
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("image_pipeline").experiment_id], max_results=1)[0]
    times = sorted(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step)
    return figures(n_train, float(np.median([m.value for m in times[1:]])), seconds, peak)


def run_hand_written(root: Path, work: Path, epochs: int, n_train: int) -> dict[str, float]:
    cmd = [sys.executable, "-c", HAND_WRITTEN, str(root), str(epochs), str(BATCH), str(SIZE), json.dumps(LAYERS)]
    done, seconds, peak = timed(cmd, work)
    times = [float(t) for t in re.findall(r"EPOCH_TIME \d+ ([\d.]+)", done.stdout)]
    return figures(n_train, float(np.median(times[1:])), seconds, peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 4):
            n = args.images * scale
            root = Path(tmp) / f"folder_{scale}x"
            started = time.perf_counter()
            write_folder(root, n)
            print(f"{scale}x: wrote {n} training JPEGs in {time.perf_counter() - started:.0f} s", flush=True)
            rounds: dict[str, list[dict[str, float]]] = {"expkit": [], "hand_written": []}
            for i in range(args.rounds):  # interleaved: expkit, hand-written, expkit, hand-written, ...
                rounds["expkit"].append(run_expkit(root, Path(tmp) / f"work_{scale}x_{i}", args.epochs, n))
                rounds["hand_written"].append(run_hand_written(root, Path(tmp), args.epochs, n))
            row: dict[str, Any] = {side: best_of(r) for side, r in rounds.items()}
            speed = row["expkit"]["images_per_s"] / row["hand_written"]["images_per_s"]
            row["ratio"] = {"throughput_expkit_over_hand_written": round(speed, 3)}
            results[f"{scale}x"] = row
            print(f"{scale}x: {json.dumps(row)}", flush=True)
    summary = {
        "what": f"{args.images} and {4 * args.images} training JPEGs at {SIZE}x{SIZE}, batch {BATCH}, {args.epochs} epochs; "
        "images/s from the median epoch after the first (tracing); best of the interleaved rounds",
        "results": results,
        "peak_rss_expkit_4x_over_1x": ratio(results, ("4x", "expkit", "peak_rss_mb"), ("1x", "expkit", "peak_rss_mb")),
        "peak_rss_hand_written_4x_over_1x": ratio(results, ("4x", "hand_written", "peak_rss_mb"), ("1x", "hand_written", "peak_rss_mb")),
        "targets": {"throughput_ratio_min": 0.95, "peak_rss_4x_over_1x_max": 1.10},
        "load_average_after": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    save_result("image_pipeline", summary)


if __name__ == "__main__":
    main()
