"""Write Boston housing (a Keras-layout boston_housing.npz) out as two CSV files with `boston_final`'s exact split.

    python experiments/boston_csv.py DATA_DIR    # reads DATA_DIR/boston_housing.npz, writes DATA_DIR/boston_housing_{train,test}.csv

Keras' split: the rows shuffled with numpy.random.RandomState(113), the first 80 % for training (404 / 102 rows).
The `boston_table` preset reads the two files through the table source (dataset.path / dataset.test_path).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

COLUMNS = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]
TARGET = "MEDV"


def write_boston_csv(npz: Path, folder: Path) -> tuple[Path, Path]:
    """The two CSV files (train, test) in `folder`, rows in the order Keras' load_data returns them."""
    with np.load(npz) as data:
        x, y = data["x"], data["y"]
    order = np.arange(len(x))
    np.random.RandomState(113).shuffle(order)
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "boston_housing_train.csv", folder / "boston_housing_test.csv"
    for path, rows in zip(paths, (slice(cut), slice(cut, None)), strict=True):
        lines = [",".join([*COLUMNS, TARGET])]
        lines += [",".join(repr(float(v)) for v in (*xs, ys)) for xs, ys in zip(x[rows], y[rows], strict=True)]
        path.write_text("\n".join(lines) + "\n")
    return paths


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for written in write_boston_csv(folder / "boston_housing.npz", folder):
        print(written)
