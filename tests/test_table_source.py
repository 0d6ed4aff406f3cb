"""The table source (CSV / Parquet), typed features with their preprocessing fitted inside the model, raw-row serving,
and bad table input. Real data: the penguins CSV inside the `palmerpenguins` package."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import mlflow_server as ms
from tests.conftest import compose, expkit_env, mlflow_runs, output_dirs, read_metrics, run_inprocess

PENGUINS = "pkg://palmerpenguins/data/penguins.csv"
needs_penguins = pytest.mark.skipif(importlib.util.find_spec("palmerpenguins") is None, reason="pip install palmerpenguins (dev extra)")


def penguins_frame():
    import pandas as pd

    from expkit.data.table import package_file

    return pd.read_csv(package_file(PENGUINS))


def write_table(path: Path, rows: int = 60, seed: int = 0) -> Path:
    """A small learnable table: colour (categorical, with gaps), size (numeric, with gaps), noise; label from colour and size."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], rows)
    size = rng.normal(10, 3, rows).round(2)
    label = np.where((colour == "red") | (size > 11), "big", "small")
    lines = ["colour,size,noise,label"]
    for i in range(rows):
        c = "" if i % 7 == 3 else colour[i]
        s = "" if i % 9 == 4 else f"{size[i]}"
        lines.append(f"{c},{s},{rng.normal():.3f},{label[i]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def table_config(tmp_path: Path, path: Path, *extra: str):
    return compose(
        "+experiment=penguins", f"dataset.path={path}", "dataset.target=label", "~dataset.features",
        "+dataset.features={colour: categorical, size: numeric}", "model.layers.1.units=2", *extra, root=tmp_path,
    )  # fmt: skip


# ---------------------------------------------------------------- loading and fitting (in-process)


@needs_penguins
def test_penguins_loads_raw_typed_columns_and_class_names(tmp_path: Path) -> None:
    from expkit.data.pipeline import load_splits

    config = compose("+experiment=penguins", root=tmp_path)
    splits = load_splits(config.dataset, data_dir=None, seed=42)
    assert splits.class_names == {"species": ["Adelie", "Chinstrap", "Gentoo"]}
    assert set(splits.feature_types) == {"island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}
    assert splits.x_train["island"].dtype == object and splits.x_train["bill_length_mm"].dtype == np.float32
    x_all = {k: np.concatenate([splits.x_train[k], splits.x_val[k], splits.x_test[k]]) for k in splits.x_train}
    assert np.isnan(x_all["bill_length_mm"]).sum() == 2 and (x_all["sex"] == "").sum() == 11  # missing kept raw for the model
    assert sum(splits.sizes.values()) == 344 and splits.sizes["test"] == 69
    # Stratified: each class's share of the test split is within one row of its share of the file.
    counts = penguins_frame()["species"].value_counts()
    for i, name in enumerate(splits.class_names["species"]):
        assert abs((splits.y_test["species"] == i).sum() - counts[name] * 69 / 344) <= 1


@needs_penguins
def test_preprocessing_layers_hold_training_split_statistics_only(tmp_path: Path) -> None:
    from expkit.data.pipeline import load_splits
    from expkit.training.runner import build_configured_model, name_splits

    config = compose("+experiment=penguins", root=tmp_path)
    splits = load_splits(config.dataset, data_dir=None, seed=42)
    model = build_configured_model(config, name_splits(config.model, splits))
    train = splits.x_train["bill_length_mm"].astype(np.float64)
    mean = np.nanmean(train)
    norm = model.get_layer("bill_length_mm_normalize")
    assert float(np.asarray(norm.mean).ravel()[0]) == pytest.approx(mean, rel=1e-6)
    everything = np.concatenate([train, splits.x_test["bill_length_mm"], splits.x_val["bill_length_mm"]])
    assert abs(np.nanmean(everything) - mean) > 1e-3  # the test: the statistics differ when other splits leak in
    assert model.get_layer("bill_length_mm_impute").fill_value == pytest.approx(mean, rel=1e-6)
    vocab = model.get_layer("island_lookup").get_vocabulary()
    assert vocab[0] == "[UNK]" and set(vocab[1:]) == set(splits.x_train["island"])
    # Inputs are the raw named columns; the first Dense sees the concatenated encodings (4 numbers + 3 islands + sexes + OOV).
    assert set(model.input) == set(splits.feature_types)
    widths = 4 + (len(vocab)) + len(model.get_layer("sex_lookup").get_vocabulary())
    assert model.get_layer("features").output.shape[-1] == widths


def test_kfold_fits_each_folds_statistics_on_its_training_part(tmp_path: Path) -> None:
    from expkit.data.pipeline import load_splits
    from expkit.training.runner import build_configured_model, name_splits

    path = write_table(tmp_path / "t.csv", rows=80)
    config = table_config(tmp_path, path, "dataset.validation.holdout=null", "dataset.validation.folds=2")
    means = []
    for fold in (0, 1):
        splits = load_splits(config.dataset, data_dir=None, seed=42, fold=fold)
        model = build_configured_model(config, name_splits(config.model, splits))
        means.append(float(np.asarray(model.get_layer("size_normalize").mean).ravel()[0]))
        assert means[-1] == pytest.approx(np.nanmean(splits.x_train["size"].astype(np.float64)), rel=1e-6)
    assert means[0] != means[1]


def test_parquet_and_a_separate_test_file(tmp_path: Path) -> None:
    import pandas as pd

    from expkit.data.pipeline import load_splits

    write_table(tmp_path / "train.csv", rows=50, seed=1)
    write_table(tmp_path / "test.csv", rows=20, seed=2)
    pd.read_csv(tmp_path / "train.csv").to_parquet(tmp_path / "train.parquet")
    config = table_config(tmp_path, tmp_path / "train.parquet", f"+dataset.test_path={tmp_path / 'test.csv'}")
    splits = load_splits(config.dataset, data_dir=None, seed=42)
    assert splits.sizes["test"] == 20 and splits.sizes["train"] + splits.sizes["validation"] == 50
    assert splits.class_names == {"label": ["big", "small"]}


def test_served_outputs_equal_trained_outputs_on_raw_rows(tmp_path: Path) -> None:
    """Acceptance 7 (table): the logged inference model, given the CSV's raw rows (strings, gaps), answers what the
    trained model answers on the arrays it trained from, to 1e-5."""
    import keras
    import pandas as pd

    from expkit.data.pipeline import load_splits
    from expkit.serving.inference import InferenceModel, model_outputs
    from expkit.serving.table import write_table_inference
    from expkit.training.runner import build_configured_model, compile_configured, name_splits

    path = write_table(tmp_path / "t.csv", rows=120)
    config = table_config(tmp_path, path, "dataset.test_fraction=0.5")
    splits = name_splits(config.model, load_splits(config.dataset, data_dir=None, seed=42))
    keras.utils.set_random_seed(0)
    model = build_configured_model(config, splits)
    compile_configured(model, config)
    model.fit(splits.x_train, splits.y_train, epochs=3, batch_size=16, verbose=0)
    folder = write_table_inference(model, splits, config.model.loss, tmp_path / "inference")
    served = InferenceModel(folder)
    rows = pd.read_csv(path)  # the user's rows, as a file holds them
    trained = model_outputs(model, {k: v for k, v in load_all(config, path).items()})
    assert trained.shape == (120, 2)
    np.testing.assert_allclose(served.probabilities(rows.drop(columns=["label"])), trained, atol=1e-5)
    # JSON records with nulls, as `mlflow models serve` receives them.
    records = json.loads(rows.drop(columns=["label"]).to_json(orient="records"))
    assert any(r["colour"] is None for r in records) and any(r["size"] is None for r in records)
    np.testing.assert_allclose(served.probabilities(records), trained, atol=1e-5)
    assert set(served.predict(records)) <= {"big", "small"}


def load_all(config, path: Path) -> dict[str, np.ndarray]:
    """Every row of `path` as the training arrays (the loader's own reading)."""
    from expkit.data.catalog import SOURCES, source_options
    from expkit.data.table import load_file

    x, _, _ = load_file(path, source_options(SOURCES["table"], config.dataset), ["colour", "size"])
    return x


def test_unseen_category_uses_the_oov_bucket_or_is_refused(tmp_path: Path) -> None:
    import keras

    from expkit.data.pipeline import load_splits
    from expkit.errors import ExpkitError
    from expkit.serving.inference import InferenceModel
    from expkit.serving.table import write_table_inference
    from expkit.training.runner import build_configured_model, name_splits

    path = write_table(tmp_path / "t.csv")
    rows = [{"colour": "purple", "size": 10.0}, {"colour": "red", "size": None}]
    for unseen in ("oov", "error"):
        keras.utils.clear_session()
        config = table_config(tmp_path, path, "~dataset.features", f"+dataset.features={{colour: {{type: categorical, unseen: {unseen}}}}}")
        splits = name_splits(config.model, load_splits(config.dataset, data_dir=None, seed=42))
        model = build_configured_model(config, splits)
        served = InferenceModel(write_table_inference(model, splits, config.model.loss, tmp_path / unseen))
        if unseen == "oov":
            assert served.probabilities(rows).shape == (2, 2)
        else:
            with pytest.raises(ExpkitError, match=r"row 1: column 'colour' has 'purple', a category the model never saw"):
                served.probabilities(rows)
    with pytest.raises(ExpkitError, match=r"no column 'colour'(.|\n)*did you mean 'color'"):
        served.probabilities([{"color": "red", "size": 1.0}])


# ---------------------------------------------------------------- bad input: exit 2, one message, no run


def bad_file(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    """(file, extra overrides) for one bad-input case."""
    good = write_table(tmp_path / "good.csv").read_text().splitlines()
    path = tmp_path / f"{case}.csv"
    extra: list[str] = []
    if case == "missing_column":
        extra = ["~dataset.features", "+dataset.features={colour: categorical, sise: numeric}"]
        path.write_text("\n".join(good) + "\n")
    elif case == "one_class":
        path.write_text("\n".join([good[0], *(line.rsplit(",", 1)[0] + ",big" for line in good[1:])]) + "\n")
    elif case == "categorical_numbers":
        extra = ["~dataset.features", "+dataset.features={colour: categorical, size: categorical}"]
        path.write_text("\n".join(good) + "\n")
    elif case == "text_in_numeric":
        lines = list(good)
        lines[5] = "red,tall,0.1,big"
        path.write_text("\n".join(lines) + "\n")
    elif case == "empty":
        path.write_text("")
    elif case == "ragged":
        lines = list(good)
        lines[7] = lines[7] + ",extra"
        path.write_text("\n".join(lines) + "\n")
    elif case == "not_utf8":
        lines = list(good)
        lines[9] = "gr\xfcn," + lines[9].split(",", 1)[1]
        path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    return path, extra


BAD_INPUT = {
    "missing_column": r"dataset\.features\.sise: .*has no column 'sise'.*did you mean 'size'",
    "one_class": r"the target column 'label' has only 'big': a classifier needs at least two classes",
    "categorical_numbers": r"column 'size' is declared categorical but holds numbers such as .*declare it numeric",
    "text_in_numeric": r"line 6: column 'size' is numeric but holds 'tall'",
    "empty": r"empty\.csv is empty",
    "ragged": r"ragged\.csv, line 8: 5 fields where the header has 4",
    "not_utf8": r"not_utf8\.csv is not utf-8 text",
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_table_is_one_message_exit_2_and_no_run(tmp_path: Path, case: str) -> None:
    path, extra = bad_file(tmp_path, case)
    features = "+dataset.features={colour: categorical, size: numeric}"
    overrides = [f"dataset.path={path}", "dataset.target=label", "~dataset.features", features]
    result = run_inprocess("train", "+experiment=penguins", *overrides, *extra, "model.layers.1.units=2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    import re

    assert re.search(BAD_INPUT[case], result.stderr, re.S), result.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists() and not output_dirs(tmp_path)  # found before any run or run folder


def test_predict_names_a_missing_column(tmp_path: Path) -> None:
    from expkit.errors import ExpkitError
    from expkit.serving.table import table_inputs

    spec = {"columns": {"bill_length_mm": {"type": "numeric", "dtype": "float32"}, "island": {"type": "categorical", "dtype": "string"}}}
    with pytest.raises(ExpkitError, match=r"the input has no column 'bill_length_mm'(.|\n)*did you mean 'bill_lenght_mm'"):
        table_inputs([{"bill_lenght_mm": 1.0, "island": "Dream"}], spec)
    with pytest.raises(ExpkitError, match=r"row 2: column 'bill_length_mm' is numeric but holds 'long'"):
        table_inputs([{"bill_length_mm": 1.0, "island": "Dream"}, {"bill_length_mm": "long", "island": None}], spec)


def test_every_source_is_listed_and_hinted(tmp_path: Path) -> None:
    listed = run_inprocess("list", cwd=tmp_path)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("dataset sources"))
    for name in ("keras", "sklearn", "playground", "image_dir", "npz", "random", "table"):
        assert name in line
    bad = run_inprocess("train", "dataset.source=csv", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown dataset source 'csv'" in bad.stderr
    assert all(n in bad.stderr for n in ("npz", "random", "table", "keras"))
    assert not (tmp_path / "mlflow.db").exists()


# ---------------------------------------------------------------- end to end on the real file (CLI, served)


@pytest.mark.slow
@needs_penguins
def test_penguins_trains_predicts_raw_rows_and_serves_json_records(tmp_path: Path) -> None:
    result = run_inprocess("train", "+experiment=penguins", "trainer.verbose=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = output_dirs(tmp_path)
    assert read_metrics(run_dir)["test"]["test_accuracy"] >= 0.9
    (run,) = mlflow_runs(tmp_path, "penguins")
    frame = penguins_frame()
    rows = frame.drop(columns=["species"]).iloc[[0, 3, 100, 200, 300]].copy()
    rows.iloc[0, rows.columns.get_loc("sex")] = None
    rows.iloc[2, rows.columns.get_loc("bill_depth_mm")] = None
    rows.to_csv(tmp_path / "rows.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    predicted = run_inprocess("predict", run.info.run_id, "--input", "rows.csv", "--uri", uri, "--probabilities", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    import pandas as pd

    out = pd.read_csv(tmp_path / "predictions.csv")
    assert set(out["class"]) <= {"Adelie", "Chinstrap", "Gentoo"} and len(out) == 5
    truth = list(frame["species"].iloc[[100, 200, 300]])
    assert sum(p == t for p, t in zip(out["class"][2:], truth, strict=True)) >= 2, (list(out["class"]), truth)

    port = ms.free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", run.data.tags["inference_model_uri"], "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = ms.start_process(
        command, url=f"http://127.0.0.1:{port}", log=tmp_path / "serve.log", cwd=tmp_path, env=expkit_env(MLFLOW_TRACKING_URI=uri)
    )
    try:
        ms.wait_ping(server)
        records = json.loads(rows.to_json(orient="records"))
        assert records[0]["sex"] is None and records[2]["bill_depth_mm"] is None
        answer = ms.rest(server.url, "invocations", {"dataframe_records": records})
        assert answer["predictions"] == list(out["class"])
        probabilities = ms.rest(server.url, "invocations", {"dataframe_records": records[:2], "params": {"output": "probabilities"}})
        np.testing.assert_allclose(np.asarray(probabilities["predictions"]), out[["p_Adelie", "p_Chinstrap", "p_Gentoo"]][:2], atol=1e-5)
    finally:
        ms.stop(server)


# ---------------------------------------------------------------- a streamed table (dataset.stream: true)


@pytest.mark.parametrize("reader", ["pyarrow", "csvdataset"])
def test_streamed_table_fits_on_its_training_rows_and_feeds_each_part_once(tmp_path: Path, reader: str) -> None:
    import pandas as pd

    from expkit.data.pipeline import load_splits
    from expkit.data.table_stream import TRAIN, TableStream
    from expkit.training.runner import build_configured_model

    path = write_table(tmp_path / "t.csv", rows=300)
    config = table_config(tmp_path, path, "+dataset.stream=true", f"+dataset.stream_reader={reader}")
    stream = load_splits(config.dataset, data_dir=None, seed=42)
    assert isinstance(stream, TableStream)
    assert stream.count("train") + stream.count("validation") + stream.count("test") == 300
    assert stream.count("test") == 60 and stream.count("validation") == 48  # test_fraction 0.2, then holdout 0.2
    frame = pd.read_csv(path)
    train = frame[stream.parts == TRAIN]
    assert stream.statistics["size"].mean == pytest.approx(train["size"].mean(), rel=1e-6)  # the training rows only (read as float32)
    assert set(stream.statistics["colour"].vocabulary()) == set(train["colour"].fillna("").astype(str))
    seen, labels = 0, []
    for x, y in stream.batches("train", 32, train=True, shuffle=True, seed=1, epochs=1):
        seen += len(y)
        labels += list(y.numpy())
        assert set(x) == {"colour", "size"}
    assert seen == stream.count("train") and sorted(labels) == sorted(stream.y_train.tolist())
    model = build_configured_model(config, stream)
    assert model(stream.sample("test", 4)).shape == (4, 2)


def test_text_feature_and_a_graph_model_on_named_features(tmp_path: Path) -> None:
    """A `text` column (TextVectorization fitted on the training rows) and a graph model routing named features;
    the saved model answers the same on raw rows."""
    import pandas as pd

    from expkit.data.pipeline import load_splits
    from expkit.serving.inference import InferenceModel, model_outputs
    from expkit.serving.table import write_table_inference
    from expkit.training.runner import build_configured_model, name_splits

    rng = np.random.default_rng(0)
    words = np.asarray(["good", "fine", "bad", "awful", "plain"], dtype=object)
    notes = [" ".join(rng.choice(words, 4)) if i % 6 else "" for i in range(80)]
    frame = pd.DataFrame({"note": notes, "size": rng.normal(size=80).round(3)})
    frame["label"] = np.where(frame["note"].str.contains("good"), "pos", "neg")
    frame.to_csv(tmp_path / "notes.csv", index=False)
    graph = (
        "+model.inputs={note: {}, size: {}}",
        "+model.nodes=[{name: joined, type: Concatenate, in: [note, size]}, {name: hidden, type: Dense, units: 8, activation: relu}]",
        "+model.outputs={label: {type: Dense, units: 2, activation: softmax, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}",
        "~model.layers", "~model.loss", "~model.metrics",
    )  # fmt: skip
    features = "+dataset.features={note: {type: text, max_tokens: 20}, size: numeric}"
    config = compose(
        "+experiment=penguins", f"dataset.path={tmp_path / 'notes.csv'}", "dataset.target=label", "~dataset.features", features, *graph,
        root=tmp_path,
    )  # fmt: skip
    splits = name_splits(config.model, load_splits(config.dataset, data_dir=None, seed=42))
    assert set(splits.y_train) == {"label"}
    model = build_configured_model(config, splits)
    vocabulary = model.get_layer("note_vectorize").get_vocabulary()
    assert "good" in vocabulary and len(vocabulary) <= 20
    served = InferenceModel(write_table_inference(model, splits, "sparse_categorical_crossentropy", tmp_path / "inference"))
    records = json.loads(frame.drop(columns=["label"]).to_json(orient="records"))
    trained = model_outputs(model, {"note": np.asarray(frame["note"].fillna(""), dtype=object), "size": frame["size"].to_numpy(np.float32)})
    np.testing.assert_allclose(served.probabilities(records), trained["label"], atol=1e-5)


@pytest.mark.slow
@needs_penguins
def test_streamed_penguins_train_and_predict_raw_rows(tmp_path: Path) -> None:
    """The streamed path end to end through the CLI: trained, tested, logged, and its inference model predicts raw rows."""
    result = run_inprocess("train", "+experiment=penguins", "+dataset.stream=true", "trainer.verbose=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = output_dirs(tmp_path)
    assert read_metrics(run_dir)["test"]["test_accuracy"] >= 0.8
    assert json.loads((run_dir / "classes.json").read_text())["class_names"] == ["Adelie", "Chinstrap", "Gentoo"]
    (run,) = mlflow_runs(tmp_path, "penguins")
    penguins_frame().drop(columns=["species"]).iloc[[0, 3, 200]].to_csv(tmp_path / "rows.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    predicted = run_inprocess("predict", run.info.run_id, "--input", "rows.csv", "--uri", uri, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    classes = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    assert len(classes) == 3 and all(line.split(",")[1] in {"Adelie", "Chinstrap", "Gentoo"} for line in classes)
