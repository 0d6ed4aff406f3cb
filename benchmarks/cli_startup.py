"""Start-up and config-error latency of the `expkit` command.

    python benchmarks/cli_startup.py      # writes benchmarks/results/cli_startup.json

Targets: `expkit --help` under 1 s; a config error reported (exit 2) in under 2 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from record import save_result  # benchmarks/record.py (scripts run as python benchmarks/NAME.py)

HERE = Path(__file__).resolve().parent
CASES = {
    "help": (["--help"], 0),
    "show_preset": (["show", "+experiment=imdb_dense"], 0),
    "misspelled_key": (["train", "trainer.epoch=3"], 2),
    "wrong_type": (["train", "trainer.epochs=ten"], 2),
    "unknown_dense_kwarg": (["train", "+model.layers.0.unit=3"], 2),
    "dropout_out_of_range": (
        ["train", "model.layers.0.type=Dropout", "+model.layers.0.rate=1.5", "~model.layers.0.units", "~model.layers.0.activation"],
        2,
    ),
    "loss_vs_output": (["train", "+experiment=imdb_dense", "model.loss=categorical_crossentropy"], 2),
}


def main(repeats: int = 5) -> None:
    exe = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "expkit"
    command = [str(exe)] if exe.is_file() else ["expkit"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (args, code) in CASES.items():
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                done = subprocess.run([*command, *args], cwd=tmp, capture_output=True, text=True)
                times.append(time.perf_counter() - started)
                assert done.returncode == code, (name, done.returncode, done.stderr)
            results[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "exit": code}
    out = {
        "cases": results,
        "targets": {"help": 1.0, "errors": 2.0},
    }
    save_result("cli_startup", out)


if __name__ == "__main__":
    main()
