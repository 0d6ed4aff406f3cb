"""The text_dir source (issue 26): labelled documents in class folders, the raw IMDB layout, a TextVectorization fitted on
the training part only, the raw-string inference model (served = trained), the imdb_text preset, and bad folders."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import assert_clean_error, compose, mlflow_runs, output_dirs, read_metrics, run_inprocess
from tests.text_datagen import NEGATIVE, POSITIVE, write_aclimdb, write_text_folder


def load(root: Path, *overrides: str):  # type: ignore[no-untyped-def]
    from expkit.data import load_splits

    config = compose(*overrides, root=root)
    return config, load_splits(config.dataset, data_dir=config.paths.data_dir, seed=config.seed)


# ---------------------------------------------------------------- reading folders


def test_raw_imdb_layout_reads_neg_and_pos_only(tmp_path: Path) -> None:
    """aclImdb as downloaded: train/unsup and the loose files (urls_*.txt, *.feat, README) are not documents."""
    base = write_aclimdb(tmp_path, n_train=60, n_test=40, n_unsup=25)
    _, splits = load(tmp_path, "+experiment=imdb_text", f"dataset.path={base}")
    assert splits.sizes == {"train": 60, "test": 40}
    assert splits.source_fitted.class_names == ["neg", "pos"]
    assert sorted(np.bincount(splits.y_train["label"])) == [30, 30] and sorted(np.bincount(splits.y_test["label"])) == [20, 20]
    assert splits.x_train["text"].dtype == np.uint8 and splits.x_train["text"].shape[0] == 60  # multi-hot, compact
    assert set(np.unique(splits.x_train["text"])) <= {0, 1}
    # Inferred classes: the folders present in both train/ and test/ (unsup is only in train/).
    _, inferred = load(tmp_path, "+experiment=imdb_text", f"dataset.path={base}", "dataset.classes=null")
    assert inferred.source_fitted.class_names == ["neg", "pos"]
    np.testing.assert_array_equal(inferred.y_train["label"], splits.y_train["label"])


def test_labels_follow_the_folders(tmp_path: Path) -> None:
    """Each document's label is its folder's class: positive words only in pos, negative words only in neg."""
    base = write_aclimdb(tmp_path, n_train=40, n_test=20, n_unsup=0)
    _, splits = load(tmp_path, "+experiment=imdb_text", f"dataset.path={base}")
    vocab = splits.source_fitted.vocabulary()
    pos = [vocab.index(w) for w in POSITIVE if w in vocab]
    neg = [vocab.index(w) for w in NEGATIVE if w in vocab]
    x, y = splits.x_train["text"].astype(int), splits.y_train["label"]
    assert x[y == 1][:, neg].sum() == 0 and x[y == 0][:, pos].sum() == 0
    assert x[y == 1][:, pos].sum(axis=1).min() >= 1 and x[y == 0][:, neg].sum(axis=1).min() >= 1


def test_vocabulary_is_fitted_on_the_training_part_only(tmp_path: Path) -> None:
    """Every document carries a word of its own: the vocabulary holds exactly the training part's (not validation's, not test's)."""
    for split, n in (("train", 40), ("test", 10)):
        for label in ("a", "b"):
            folder = tmp_path / "docs" / split / label
            folder.mkdir(parents=True)
            for i in range(n // 2):
                (folder / f"{i}.txt").write_text(f"common {label}word unique{split}{label}{i}")
    _, splits = load(tmp_path, "dataset=text_dir", f"dataset.path={tmp_path / 'docs'}", "dataset.validation.holdout=10")
    own = [t for t in splits.source_fitted.vocabulary() if t.startswith("unique")]
    assert splits.sizes == {"train": 30, "validation": 10, "test": 10}
    assert len(own) == 30 and all(t.startswith("uniquetrain") for t in own)
    # k-fold: each fold's vocabulary comes from its own training part.
    from expkit.data import load_splits

    folds = ("dataset.validation.holdout=null", "dataset.validation.folds=4")
    config = compose("dataset=text_dir", f"dataset.path={tmp_path / 'docs'}", *folds, root=tmp_path)
    for fold in (0, 3):
        part = load_splits(config.dataset, data_dir=None, seed=config.seed, fold=fold)
        assert sum(t.startswith("unique") for t in part.source_fitted.vocabulary()) == len(part.y_train["label"]) == 30


def test_imdb_text_builds_the_books_network_on_a_full_vocabulary(tmp_path: Path) -> None:
    """With more than 10,000 distinct words the vocabulary is full: the book's 160,305 parameters (10,000 -> 16 -> 16 -> 1)."""
    from expkit.training.runner import build_configured_model, name_splits

    for split, n in (("train", 200), ("test", 20)):
        for label in ("neg", "pos"):
            folder = tmp_path / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n // 2):
                (folder / f"{i}_5.txt").write_text(" ".join(f"{split}{label}{i}x{j}" for j in range(60)))
    config, splits = load(tmp_path, "+experiment=imdb_text", f"dataset.path={tmp_path / 'aclImdb'}")
    assert len(splits.source_fitted.vocabulary()) == 10_000
    model = build_configured_model(config, name_splits(config.model, splits))
    assert model.count_params() == 160_305


def test_a_resumed_run_refits_the_vocabulary_it_was_trained_with(tmp_path: Path) -> None:
    """The run folder's vocabulary.txt: refitting on the same documents writes it unchanged; changed documents are an error."""
    from expkit.data.text_dir import write_fitted
    from expkit.errors import ExpkitError

    root = write_text_folder(tmp_path / "docs", n=40, test=True)
    _, splits = load(tmp_path, "dataset=text_dir", f"dataset.path={root}")
    write_fitted(splits.source_fitted, tmp_path / "run")
    _, again = load(tmp_path, "dataset=text_dir", f"dataset.path={root}")
    write_fitted(again.source_fitted, tmp_path / "run")  # a resume on unchanged documents
    for doc in (root / "train" / "good").glob("*.txt"):
        doc.write_text(doc.read_text() + " novelword")
    _, changed = load(tmp_path, "dataset=text_dir", f"dataset.path={root}")
    with pytest.raises(ExpkitError, match=r"the vocabulary fitted now differs from .*vocabulary\.txt"):
        write_fitted(changed.source_fitted, tmp_path / "run")


def test_without_test_folder_a_seeded_stratified_split(tmp_path: Path) -> None:
    root = write_text_folder(tmp_path / "docs", n=100)
    args = ("dataset=text_dir", f"dataset.path={root}", "dataset.test_fraction=0.2", "dataset.validation.holdout=null")
    _, first = load(tmp_path, *args)
    _, again = load(tmp_path, *args)
    _, other = load(tmp_path, *args, "seed=7")
    assert first.sizes == {"train": 80, "test": 20}
    assert list(np.bincount(first.y_test["label"])) == [10, 10]
    np.testing.assert_array_equal(first.x_test["text"], again.x_test["text"])
    assert not np.array_equal(first.x_test["text"], other.x_test["text"])


def test_vectorize_options_reach_the_layer(tmp_path: Path) -> None:
    root = write_text_folder(tmp_path / "docs", n=40, test=True)
    args = ("dataset=text_dir", f"dataset.path={root}")
    _, ints = load(tmp_path, *args, "dataset.vectorize.output_mode=int", "dataset.vectorize.sequence_length=12")
    assert ints.x_train["text"].shape == (32, 12) and ints.x_train["text"].dtype == np.int32
    tf_idf = ("dataset.vectorize.output_mode=tf_idf", "dataset.vectorize.max_tokens=50", "dataset.vectorize.ngrams=2")
    _, tfidf = load(tmp_path, *args, *tf_idf)
    assert tfidf.x_train["text"].shape == (32, 50) and tfidf.x_train["text"].dtype == np.float32
    assert tfidf.source_fitted.vectorizer.get_config()["ngrams"] in (2, (1, 2), [1, 2])


# ---------------------------------------------------------------- bad folders: one message, exit 2, nothing recorded


def bad_folders(root: Path) -> dict[str, tuple[Path, str]]:
    (root / "empty").mkdir(parents=True)
    (root / "flat" / "train").mkdir(parents=True)
    (root / "flat" / "train" / "a.txt").write_text("no class folders here")
    for name in ("a", "b"):
        (root / "hollow" / "train" / name).mkdir(parents=True)
    (root / "hollow" / "train" / "a" / "1.txt").write_text("one document")
    for name in ("a", "b"):
        (root / "latin" / "train" / name).mkdir(parents=True)
        (root / "latin" / "train" / name / "1.txt").write_text("fine")
    (root / "latin" / "train" / "b" / "2.txt").write_bytes("caf\u00e9 in latin-1".encode("latin-1"))
    return {
        "empty": (root / "empty", f"{root / 'empty'} has no train/ folder"),
        "no_class_folders": (root / "flat", f"{root / 'flat' / 'train'} has 0 class folder(s)"),
        "empty_class": (root / "hollow", f"class folder {root / 'hollow' / 'train' / 'b'} holds no .txt files"),
        "not_utf8": (root / "latin", f"{root / 'latin' / 'train' / 'b' / '2.txt'} is not UTF-8 text"),
        "missing": (root / "nope", f"text folder {root / 'nope'} does not exist"),
    }


def test_bad_folders_are_one_error_naming_the_folder_or_file(tmp_path: Path) -> None:
    from expkit.data.catalog import check_source
    from expkit.errors import ExpkitError

    for name, (folder, message) in bad_folders(tmp_path / "bad").items():
        config = compose("dataset=text_dir", f"dataset.path={folder}", root=tmp_path)
        with pytest.raises(ExpkitError) as raised:
            check_source(config.dataset, data_dir=None, seed=0)
        assert message in str(raised.value), name
        assert raised.value.key == "dataset.path"


@pytest.mark.parametrize("case", ["empty", "no_class_folders", "empty_class", "not_utf8"])
def test_bad_folder_exits_2_before_any_run(tmp_path: Path, case: str) -> None:
    folder, message = bad_folders(tmp_path / "bad")[case]
    done = run_inprocess("train", "dataset=text_dir", f"dataset.path={folder}", cwd=tmp_path)
    assert_clean_error(done, message, "hint:")
    assert not (tmp_path / "mlflow.db").exists(), "found before training: no MLflow run"
    assert not output_dirs(tmp_path), "found before training: no run folder"


# ---------------------------------------------------------------- served = trained


EMBEDDING = (
    "~model.units",
    "model.layers=[{type: Embedding, input_dim: 10000, output_dim: 8}, {type: GlobalAveragePooling1D}, "
    "{type: Dense, units: 1, activation: sigmoid}]",
)
VARIANTS = {
    "multi_hot": (),
    "tf_idf_bigrams": ("dataset.vectorize.output_mode=tf_idf", "dataset.vectorize.ngrams=2"),
    "int_embedding": ("dataset.vectorize.output_mode=int", "dataset.vectorize.sequence_length=40", *EMBEDDING),
}


# tf-idf (a vocabulary and idf weights, both fitted) in the quick set; the other output modes in the slow set.
@pytest.mark.parametrize("variant", [v if v == "tf_idf_bigrams" else pytest.param(v, marks=pytest.mark.slow) for v in sorted(VARIANTS)])
def test_inference_model_on_raw_strings_equals_the_training_model(tmp_path: Path, variant: str) -> None:
    """Acceptance 7 (text): Input(string) -> fitted TextVectorization -> trained model gives the training model's outputs."""
    from expkit.data.catalog import SOURCES, source_options
    from expkit.serving.inference import InferenceModel
    from expkit.serving.text import write_text_inference
    from expkit.training.runner import train_and_evaluate

    base = write_aclimdb(tmp_path, n_train=120, n_test=300, n_unsup=0)
    short = ("trainer.epochs=2", "trainer.batch_size=32", "tracking=none", *VARIANTS[variant])
    config, splits = load(tmp_path, "+experiment=imdb_text", f"dataset.path={base}", *short)
    source = SOURCES["text_dir"]
    (_, _), (raw_test, _) = source.load(source_options(source, config.dataset), path=str(base), data_dir=None, seed=config.seed)
    raw = raw_test["text"]
    outcome = train_and_evaluate(config, splits, tmp_path / "run", test=False)
    x_test = outcome.splits.x_test
    trained = np.asarray(outcome.model.predict(x_test.astype(np.float32) if x_test.dtype == np.uint8 else x_test, verbose=0))
    folder = write_text_inference(outcome.model, splits.source_fitted, splits.raw_x_example, config.model.loss, tmp_path / "inference")
    served = InferenceModel(folder)  # loaded back from disk, as the pyfunc wrapper does
    assert served.spec["class_names"] == ["neg", "pos"]
    np.testing.assert_allclose(served.probabilities(raw), trained, atol=1e-5)  # > 256 rows: model.predict
    np.testing.assert_allclose(served.probabilities(raw[:7]), trained[:7], atol=1e-5)  # a request: a direct call
    assert list(served.predict(raw[:7])) == [["neg", "pos"][int(p > 0.5)] for p in trained[:7, 0]]
    # The run folder records what was fitted.
    vocabulary = (tmp_path / "run" / "vocabulary.txt").read_text().splitlines()
    assert vocabulary == splits.source_fitted.vocabulary() and len(vocabulary) <= 10000
    assert json.loads((tmp_path / "run" / "classes.json").read_text())["class_names"] == ["neg", "pos"]


def test_predict_reads_text_inputs_and_names_bad_ones(tmp_path: Path) -> None:
    from expkit.errors import ExpkitError
    from expkit.serving.text import as_texts, read_texts

    folder = write_text_folder(tmp_path / "docs", n=4) / "train"
    texts, names = read_texts(folder)
    files = sorted(folder.rglob("*.txt"))
    assert names == [str(f.relative_to(folder)) for f in files] and [n.split("/")[0] for n in names] == ["bad", "bad", "good", "good"]
    assert list(texts) == [f.read_text() for f in files]
    (tmp_path / "one.txt").write_text("just one document,\nover two lines")
    assert list(read_texts(tmp_path / "one.txt")[0]) == ["just one document,\nover two lines"]
    (tmp_path / "rows.csv").write_text('id,text\n1,"first, with a comma"\n2,second\n')
    assert list(read_texts(tmp_path / "rows.csv")[0]) == ["first, with a comma", "second"]
    assert list(as_texts({"text": ["a", "b"]})) == ["a", "b"] and list(as_texts(np.array([["a"], ["b"]], dtype=object))) == ["a", "b"]
    (tmp_path / "latin.txt").write_bytes("caf\u00e9".encode("latin-1"))
    (tmp_path / "other.csv").write_text("id,review\n1,x\n")
    (tmp_path / "empty").mkdir()
    cases = {
        "latin.txt": f"{tmp_path / 'latin.txt'} is not UTF-8 text",
        "other.csv": "has no column 'text' (columns: id, review)",
        "empty": "no .txt files in",
        "nope": "no such file or folder",
    }
    for name, message in cases.items():
        with pytest.raises(ExpkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_texts(tmp_path / name)
    with pytest.raises(ExpkitError, match="input 1 is NoneType None, not a string"):
        as_texts(["fine", None])


# ---------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_text_folder_learns_clearly_above_the_random_baseline(tmp_path: Path) -> None:
    """Acceptance 4: a two-class folder (no test/: a seeded split) learns the generated signal.

    Observed (2026-12-06, 2 busy cores, seeds 42, 1, 2): test accuracy 0.950, 0.925, 0.988 against logged baselines
    0.480, 0.513, 0.490 (margins 0.41-0.50). A pipeline that mixed up labels and documents would sit near the baseline.
    """
    root = write_text_folder(tmp_path / "docs", n=400)
    done = run_inprocess(
        "train", "name=text_folder", "dataset=text_dir", f"dataset.path={root}", "model.layers.1.units=2", "trainer.epochs=5",
        "tracking.log_model=false", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = output_dirs(tmp_path)
    test = read_metrics(run_dir)["test"]
    assert test["test_accuracy"] >= test["baseline_accuracy"] + 0.3, test
    (run,) = mlflow_runs(tmp_path, "text_folder")
    assert run.data.params["dataset.class_names"] == "bad,good"


@dataclass
class TrainedRun:
    root: Path
    run: Any

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


@pytest.fixture(scope="module")
def imdb_text_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """The imdb_text preset, trained once on generated reviews in the raw IMDB layout (path: <paths.data_dir>/aclImdb)."""
    root = tmp_path_factory.mktemp("imdb_text")
    write_aclimdb(root / "data", n_train=1000, n_test=400, n_unsup=50)
    done = run_inprocess("train", "+experiment=imdb_text", cwd=root, EXPKIT_DATA_DIR=str(root / "data"))
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = mlflow_runs(root, "imdb_text")
    return TrainedRun(root, run)


REVIEWS = ["A wonderful, superb film. Brilliant!", "Awful. <br /><br />Boring and tedious, the worst."]


@pytest.mark.slow
def test_imdb_text_end_to_end_on_generated_reviews(imdb_text_run: TrainedRun) -> None:
    """Acceptance 3: the preset on the raw IMDB layout; the vocabulary is an artifact; the served model takes raw reviews."""
    import mlflow
    import pandas as pd

    root, run = imdb_text_run.root, imdb_text_run.run
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.vectorize.max_tokens"] == "10000" and run.data.params["trainer.batch_size"] == "512"
    assert run.data.params["dataset.class_names"] == "neg,pos"
    client = mlflow.MlflowClient(imdb_text_run.uri)
    vocabulary = Path(client.download_artifacts(run.info.run_id, "vocabulary.txt", str(root))).read_text().splitlines()
    assert vocabulary[0] == "[UNK]" and "wonderful" in vocabulary and "br" in vocabulary
    # Observed (2026-12-06, seeds 42, 1, 2): 0.698, 0.720, 0.723 on 1,000 generated reviews (4 epochs of 2 batches of 512),
    # baselines 0.492, 0.501, 0.502: the margin is 0.21-0.22; shuffled labels would leave about 0.
    assert run.data.metrics["test_accuracy"] > run.data.metrics["baseline_accuracy"] + 0.1

    mlflow.set_tracking_uri(imdb_text_run.uri)
    model = mlflow.pyfunc.load_model(run.data.tags["inference_model_uri"])
    (column,) = model.metadata.signature.inputs.inputs
    assert (column.name, column.type.name) == ("text", "string")
    assert list(model.predict(pd.DataFrame({"text": REVIEWS}))) == ["pos", "neg"]

    # expkit predict on raw strings: a CSV with a text column, and a folder of .txt files.
    with (root / "reviews.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["id", "text"], *[[i, r] for i, r in enumerate(REVIEWS)]])
    out = root / "preds.csv"
    done = run_inprocess("predict", run.info.run_id, "--input", str(root / "reviews.csv"), "--output", str(out), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["class"] for r in csv.DictReader(out.open())] == ["pos", "neg"]
    folder = root / "data" / "aclImdb" / "test" / "pos"
    done = run_inprocess("predict", run.info.run_id, "--input", str(folder), "--output", str(out), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    files = sorted(folder.glob("*.txt"))
    assert [r["sample"] for r in rows] == [f.name for f in files]
    assert [r["class"] for r in rows] == list(model.predict(pd.DataFrame({"text": [f.read_text() for f in files]})))
    missing = run_inprocess("predict", run.info.run_id, "--input", str(root / "reviews.json"), cwd=root)
    assert_clean_error(missing, "no such file or folder")
    # expkit evaluate re-reads the folder and refits the same vocabulary: the run's own test accuracy again.
    done = run_inprocess("evaluate", run.info.run_id, "--split", "test", cwd=root, EXPKIT_DATA_DIR=str(root / "data"))
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = mlflow.MlflowClient(imdb_text_run.uri).get_run(run.info.run_id).data.metrics["eval/aclImdb_test/accuracy"]
    assert evaluated == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="mlflow models serve needs uvicorn")
def test_mlflow_models_serve_answers_raw_review_strings(imdb_text_run: TrainedRun, tmp_path: Path) -> None:
    """`mlflow models serve` on the inference model: JSON payloads of raw strings in, class names or probabilities out."""
    import keras

    from tests import mlflow_server as ms
    from tests.conftest import expkit_env

    run = imdb_text_run.run
    port = ms.free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", run.data.tags["inference_model_uri"], "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = expkit_env(MLFLOW_TRACKING_URI=imdb_text_run.uri)
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=tmp_path / "serve.log", cwd=imdb_text_run.root, env=env)
    try:
        ms.wait_ping(server)
        records = ms.rest(server.url, "invocations", {"dataframe_records": [{"text": r} for r in REVIEWS]})
        assert records["predictions"] == ["pos", "neg"]
        columns = ms.rest(server.url, "invocations", {"inputs": {"text": REVIEWS}, "params": {"output": "probabilities"}})
        served = np.asarray(columns["predictions"], dtype=np.float64).reshape(-1)
        # Served = trained: the training model (final checkpoint) on the strings vectorized by the fitted layer.
        from expkit.data.text_dir import vectorize

        folder = Path(run.data.tags["output_dir"])
        layer = keras.models.load_model(folder / "inference" / "inference.keras").get_layer("vectorize")
        training = keras.models.load_model(folder / "checkpoints" / "final.keras")
        vectors = vectorize(layer, np.asarray(REVIEWS, dtype=object), "multi_hot").astype(np.float32)
        np.testing.assert_allclose(served, np.asarray(training.predict(vectors, verbose=0)).reshape(-1), atol=1e-5)
    finally:
        ms.stop(server)
