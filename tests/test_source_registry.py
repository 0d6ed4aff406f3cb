"""A new data source is one file: `expkit/data/source_<name>.py`, registering itself (expkit.data.named).

The worked example of docs/architecture.md, run for real: a `jsonl` source (one JSON object a line), written as that
one file into a folder on the `expkit.data` package path, found by `discover_sources`, and then listed, validated,
pre-flighted (errors before anything is recorded), loaded and trained end to end in-process on 20 rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from expkit.errors import ExpkitError
from tests.conftest import compose

# The whole source, as it would sit in expkit/data/source_jsonl.py.
JSONL_SOURCE = '''
"""`dataset.source: jsonl`: one JSON object a line, e.g. {"x": [0.1, 0.2], "y": 1}; the last test_fraction is test data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expkit.config.schema import Strict
from expkit.data.named import register_source
from expkit.errors import ExpkitError


class JsonlOptions(Strict):
    input: str = "x"  # the key holding each row's features (a list of numbers), and the model input's name
    target: str = "y"  # the key holding each row's class index, and the model output's name
    test_fraction: float = 0.2  # a shared dataset key the source reads


def read_rows(path: str | None, options: JsonlOptions) -> list[dict[str, Any]]:
    if not path:
        raise ExpkitError("the jsonl source needs dataset.path: the .jsonl file", key="dataset.path")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ExpkitError(f"dataset file {file} does not exist", key="dataset.path", hint="fix the path to your .jsonl file")
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExpkitError(f"{file}:{number} is not JSON ({exc.msg})", key="dataset.path", hint="one JSON object a line") from None
        for key in (options.input, options.target):
            if key not in row:
                raise ExpkitError(f"{file}:{number} has no key '{key}'", key=f"dataset.{'input' if key == options.input else 'target'}")
        rows.append(row)
    return rows


def check(options: JsonlOptions, *, path: str | None, **_: Any) -> None:
    read_rows(path, options)  # the pre-flight: file, JSON and keys, before any run exists


def sizes(options: JsonlOptions, *, path: str | None, **_: Any) -> tuple[int, int]:
    n = len(read_rows(path, options))
    return n - round(n * options.test_fraction), round(n * options.test_fraction)


@register_source("jsonl", JsonlOptions, check=check, sizes=sizes)
def load(options: JsonlOptions, *, path: str | None, **_: Any) -> Any:
    import numpy as np

    rows = read_rows(path, options)
    x = np.asarray([r[options.input] for r in rows], dtype=np.float32)
    y = np.asarray([r[options.target] for r in rows], dtype=np.int64)
    cut = len(rows) - round(len(rows) * options.test_fraction)
    return ({options.input: x[:cut]}, {options.target: y[:cut]}), ({options.input: x[cut:]}, {options.target: y[cut:]})
'''


@pytest.fixture
def jsonl_source(tmp_path: Path) -> Iterator[Path]:
    """The one file, on the expkit.data package path, discovered as a new source would be; removed afterwards."""
    from expkit import data
    from expkit.data.catalog import SOURCES, discover_sources

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "source_jsonl.py").write_text(JSONL_SOURCE)
    data.__path__.append(str(folder))
    try:
        assert discover_sources([str(folder)]) == ["source_jsonl"]
        yield folder
    finally:
        data.__path__.remove(str(folder))
        SOURCES.pop("jsonl", None)
        sys.modules.pop("expkit.data.source_jsonl", None)


def write_rows(path: Path, n: int = 20) -> Path:
    """n rows whose class is whether the two features sum above 1 (learnable in a few epochs)."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = []
    for _ in range(n):
        x = rng.uniform(0, 1, 2).round(3).tolist()
        lines.append(json.dumps({"x": x, "y": int(sum(x) > 1)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def jsonl_config(root: Path, *overrides: str) -> object:
    return compose(
        "dataset.source=jsonl",
        "dataset.name=toy",
        "dataset.preprocess.x=[]",
        "dataset.validation.holdout=4",
        "trainer.epochs=2",
        "tracking=none",
        *overrides,
        root=root,
    )


def test_the_registered_source_is_listed_and_an_unregistered_one_is_unknown(jsonl_source: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from expkit.cli import app

    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith("dataset sources"))
    assert "jsonl" in line.split(": ", 1)[1].split(", ")
    from expkit.data.catalog import SOURCES, get_source

    SOURCES.pop("jsonl")  # unregistered: validation and the loader's lookup both name the known sources, from the registry
    with pytest.raises(ExpkitError, match=r"dataset\.source: unknown dataset source 'jsonl' \(sources: image_dir, keras, npz, "):
        jsonl_config(tmp_path, f"dataset.path={write_rows(tmp_path / 'rows.jsonl')}")
    with pytest.raises(ExpkitError, match=r"unknown dataset source 'jsonl'") as unknown:
        get_source("jsonl")
    assert unknown.value.key == "dataset.source" and "known: image_dir, keras, npz" in str(unknown.value.hint)


def test_its_options_are_validated_and_its_checks_run_before_anything_is_recorded(jsonl_source: Path, tmp_path: Path) -> None:
    from expkit.preflight import preflight

    rows = write_rows(tmp_path / "rows.jsonl")
    with pytest.raises(ExpkitError, match=r"dataset\.inptu: unknown key \(did you mean 'input'\?\)"):
        jsonl_config(tmp_path, f"dataset.path={rows}", "+dataset.inptu=x")
    with pytest.raises(ExpkitError, match="does not exist") as missing:
        preflight(jsonl_config(tmp_path, f"dataset.path={tmp_path / 'nope.jsonl'}"))  # type: ignore[arg-type]
    assert missing.value.key == "dataset.path" and "fix the path" in str(missing.value.hint)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(rows.read_text() + '{"x": [1, 2]}\n')
    with pytest.raises(ExpkitError, match=r"broken\.jsonl:21 has no key 'y'") as no_target:
        preflight(jsonl_config(tmp_path, f"dataset.path={broken}"))  # type: ignore[arg-type]
    assert no_target.value.key == "dataset.target"
    # The source's sizes (16 training rows) check the validation split before any data is loaded.
    with pytest.raises(ExpkitError, match=r"holdout of 30 samples leaves no training data \(16 training samples\)"):
        preflight(jsonl_config(tmp_path, f"dataset.path={rows}", "dataset.validation.holdout=30"))  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists()


def test_it_loads_and_trains_end_to_end_in_process(jsonl_source: Path, tmp_path: Path) -> None:
    from expkit.data import load_splits
    from expkit.preflight import preflight
    from expkit.training.runner import train_and_evaluate

    rows = write_rows(tmp_path / "rows.jsonl")
    config = preflight(jsonl_config(tmp_path, f"dataset.path={rows}"))  # type: ignore[arg-type]
    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    assert splits.sizes == {"train": 12, "validation": 4, "test": 4}  # type: ignore[attr-defined]
    record = splits.record(tmp_path / "run")
    assert (record.name, record.origin, record.sizes["test"]) == ("toy", str(rows), 4) and record.digest == splits.fingerprint
    outcome = train_and_evaluate(config, splits, tmp_path / "run")
    assert len(outcome.history["loss"]) == 2 and "val_loss" in outcome.history
    assert set(outcome.test_metrics) >= {"test_loss", "test_accuracy"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] == outcome.test_metrics


# --- the splits' record: what the job logs, without reading classes.json back ---------------------------


def test_an_image_folder_records_its_classes_and_skipped_images_as_plain_values(tmp_path: Path) -> None:
    from expkit.data import load_splits
    from tests.test_vision import image_config, write_jpeg_tree

    root = write_jpeg_tree(tmp_path / "pets", per_class=3, size=16)
    broken = root / "train" / "dogs" / "dogs.1.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    config = image_config(tmp_path, root, "dataset.on_bad_image=skip")
    splits = load_splits(config.dataset, data_dir=None, seed=0)
    run = tmp_path / "run"
    splits.write_files(run, seed=0)
    record = splits.record(run)
    assert record.params == {"dataset.class_names": "cats,dogs", "dataset.skipped_images": 1}
    assert record.artifacts == [run / "classes.json"] and record.sizes == {}  # streamed: not logged as a dataset input
    assert (record.name, record.origin, record.digest) == (config.dataset.name, str(root), splits.fingerprint)
    written = json.loads((run / "classes.json").read_text())  # still written for people, with the same values
    assert written == {"class_names": ["cats", "dogs"], "skipped_images": [str(broken)]}


def test_arrays_record_their_sizes_origin_and_raw_example(tmp_path: Path) -> None:
    from expkit.data import load_splits

    config = compose("dataset.max_train_samples=100", "tracking=none", root=tmp_path)  # digits: scikit-learn's bundled table
    splits = load_splits(config.dataset, data_dir=None, seed=config.seed)
    record = splits.record(tmp_path)
    assert record.sizes == {"train": 80, "validation": 20, "test": 360}
    assert record.origin == "scikit-learn's bundled digits" and record.params == {} and record.artifacts == []
    assert record.raw_example.shape == (5, 64) and record.raw_example.max() == 16  # raw, before dataset.preprocess.x scales
