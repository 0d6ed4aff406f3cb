"""Peak memory of a real-size imdb_dense run on generated data in Keras' imdb.npz layout.

python benchmarks/imdb_memory.py      # writes benchmarks/results/imdb_memory.json
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from record import save_result  # benchmarks/record.py (scripts run as python benchmarks/NAME.py)

HERE = Path(__file__).resolve().parent


def write_real_size_imdb(path: Path, n: int = 25_000, vocab: int = 88_000, mean_len: int = 230, seed: int = 0) -> None:
    """25,000 + 25,000 reviews of Zipf-distributed word ranks, lengths like IMDB's."""
    rng = np.random.default_rng(seed)

    def reviews() -> np.ndarray:
        lengths = np.clip(rng.lognormal(np.log(mean_len), 0.6, n).astype(int), 10, 2500)
        out = np.empty(n, dtype=object)
        for i, length in enumerate(lengths):
            out[i] = np.minimum(rng.zipf(1.3, length), vocab).tolist()  # plain Python ints, as in Keras' file
        return out

    np.savez(path, x_train=reviews(), y_train=rng.integers(0, 2, n), x_test=reviews(), y_test=rng.integers(0, 2, n))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        write_real_size_imdb(data / "imdb.npz")
        env = {**os.environ, "EXPKIT_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, "-m", "expkit.cli", "train", "+experiment=imdb_dense", "trainer.verbose=0", "tracking.log_model=false"]
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"run failed:\n{done.stderr[-3000:]}")
        metrics = json.loads(next(Path(tmp).rglob("metrics.json")).read_text())["test"]
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    result = {
        "what": "imdb_dense, 25,000 train / 25,000 test, num_words 10,000, 4 epochs, batch 256",
        "peak_rss_mb": round(peak_kb / 1024),
        "target_mb": 1536,
        "wall_seconds": round(seconds, 1),
        # A memory change must leave these unchanged (same seed, same data): compare before/after to the 4th decimal.
        "test_metrics": {k: round(v, 6) for k, v in metrics.items()},
    }
    save_result("imdb_memory", result)


if __name__ == "__main__":
    main()
