"""`dataset.source: text_dir`: labelled documents, one folder per class, vectorized by a Keras `TextVectorization`.

Layout: `DIR/train/CLASS/*.txt` and, optionally, `DIR/test/CLASS/*.txt` (without test/, a seeded, stratified
`test_fraction` of train/ is the test data). Validation is taken from the training data as for every source
(`dataset.validation`: holdout, split or folds). The raw IMDB download (`aclImdb/`) reads as it is.

Which sub-folders are classes: `classes: [neg, pos]` names them (in label order). Otherwise every sub-folder of
train/ is a class (sorted names give the label order), except that, when test/ exists, a folder found in only one
of the two is left out and named on stderr: aclImdb's `train/unsup` (unlabelled reviews) is such a folder. Loose
files beside the class folders (aclImdb's `urls_pos.txt`, `labeledBow.feat`, `README`) are not read; inside a class
folder every `*.txt` file is one document, read as UTF-8.

Documents are held in memory as Python strings, and vectorized once, after the validation split, by a
`TextVectorization` adapted on the training part only (`fit_text`): the seeded array pipeline
(`expkit.training.feeding`) then batches them with the same order per epoch as every array source, and k-fold,
retrain, resume and `evaluate` work unchanged. Memory: the raw text (aclImdb: 25,000 + 25,000 reviews, 66 MB of
files) plus the vectorized splits, which is samples x max_tokens bytes for multi_hot (uint8; IMDB at 10,000
tokens: 250 MB per split, as the pre-tokenized `imdb` preset), 4 bytes per value for count and tf_idf, and
samples x sequence_length int32 for int. A corpus larger than memory needs a streamed source; a labelled corpus of
this kind fits.

The fitted layer then sits in front of the trained model in the logged inference model (expkit/serving/text.py),
so `expkit predict` and `mlflow models serve` take raw strings.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from expkit.config.schema import Strict
from expkit.config.text import TextOptions
from expkit.data.named import NamedArrays, register_source
from expkit.errors import ExpkitError

if TYPE_CHECKING:
    import numpy as np

SUFFIX = ".txt"
VECTORIZE_BATCH = 1024


class TextDirOptions(Strict):
    """The text_dir source's own `dataset.*` keys (beside path, test_fraction, validation, max_*_samples)."""

    # The class folders, in label order; null: every sub-folder of train/ (those also in test/, when it exists).
    classes: Annotated[list[str], Field(min_length=2)] | None = None
    # How documents become model inputs (Keras TextVectorization, adapted on the training part only).
    vectorize: TextOptions = TextOptions()
    # Without a test/ folder: this fraction of each class becomes the test data (seeded). Shared with other sources.
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # The model input and target names the arrays get (graph models route by them).
    input: str = "text"
    target: str = "label"
    # Shared with every source: the dataset's name (the folder below paths.data_dir when dataset.path is unset).
    name: str | None = None


@dataclass
class Corpus:
    """The documents of one folder tree: file paths and class indices per split, and the class names."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]
    labels: dict[str, list[int]]
    ignored: list[str] = field(default_factory=list)


@dataclass
class TextFitted:
    """What `fit_text` fitted on the training part: the adapted layer, for the raw-string inference model."""

    vectorizer: Any
    class_names: list[str]
    input: str
    options: TextOptions

    def vocabulary(self) -> list[str]:
        from expkit.data.text_vectorize import vocabulary

        return vocabulary(self.vectorizer)

    def write(self, output_dir: Path) -> None:
        """classes.json and vocabulary.txt in the run folder (see `write_fitted`)."""
        write_fitted(self, output_dir)


# --- the folder tree ---------------------------------------------------------------------------------


def data_root(path: str | None, data_dir: str | None, name: str | None = None) -> Path:
    """`dataset.path`, else `<paths.data_dir>/<dataset.name>`."""
    if path:
        return Path(path).expanduser()
    if data_dir and name:
        return Path(data_dir).expanduser() / name
    raise ExpkitError(
        "the text_dir source needs dataset.path: the folder holding train/<class>/*.txt",
        key="dataset.path",
        hint="e.g. dataset.path=/data/aclImdb (or put the folder at <paths.data_dir>/<dataset.name>)",
    )


def _subfolders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def find_classes(root: Path, classes: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """(class names in label order, the splits present, folders left out); a structural problem names the folder."""
    layout = "lay the documents out as train/<class>/*.txt (and test/<class>/*.txt)"
    if not root.is_dir():
        raise ExpkitError(f"text folder {root} does not exist", key="dataset.path", hint=layout)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        found = ", ".join(_subfolders(root)) or "no sub-folders"
        raise ExpkitError(f"{root} has no train/ folder (found: {found})", key="dataset.path", hint=layout)
    splits = ["train", "test"] if test_dir.is_dir() else ["train"]
    present = {s: _subfolders(root / s) for s in splits}
    ignored: list[str] = []
    if classes is None:
        names = present["train"]
        if "test" in present:
            shared = set(present["train"]) & set(present["test"])
            ignored = [f"{s}/{n}" for s in splits for n in present[s] if n not in shared]
            names = [n for n in names if n in shared]
        if len(names) < 2:
            shown = f" ({', '.join(names)})" if names else ""
            raise ExpkitError(
                f"{train_dir} has {len(names)} class folder(s){shown}{' shared with test/' if 'test' in present else ''}; "
                "a classifier needs at least 2",
                key="dataset.path",
                hint="put each class's documents in its own sub-folder, e.g. train/pos/*.txt and train/neg/*.txt",
            )
    else:
        names = list(classes)
        for s in splits:
            missing = [n for n in names if n not in present[s]]
            if missing:
                raise ExpkitError(
                    f"{root / s} has no class folder {', '.join(missing)} (it has: {', '.join(present[s]) or 'none'})",
                    key="dataset.classes",
                    hint="name the class folders exactly, or leave dataset.classes unset to use every class folder",
                )
    return names, splits, ignored


def list_corpus(root: Path, classes: list[str] | None) -> Corpus:
    """The class folders and document files below `root`; an empty class folder is an error naming it."""
    names, splits, ignored = find_classes(root, classes)
    files: dict[str, list[Path]] = {}
    labels: dict[str, list[int]] = {}
    for s in splits:
        files[s], labels[s] = [], []
        for index, name in enumerate(names):
            folder = root / s / name
            docs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == SUFFIX)
            if not docs:
                raise ExpkitError(
                    f"class folder {folder} holds no {SUFFIX} files",
                    key="dataset.path",
                    hint=f"every class needs documents (*{SUFFIX}) in every split; remove the folder or add its documents",
                )
            files[s] += docs
            labels[s] += [index] * len(docs)
    return Corpus(root, names, files, labels, ignored)


def read_documents(files: list[Path]) -> np.ndarray:
    """The files' text (UTF-8, a BOM dropped) as a 1-D object array of str; a file that is not UTF-8 is named."""
    import numpy as np

    out = np.empty(len(files), dtype=object)
    for i, file in enumerate(files):
        try:
            out[i] = file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ExpkitError(
                f"{file} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})",
                key="dataset.path",
                hint=f"convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8 {file.name}), or remove it",
            ) from None
        except OSError as exc:
            raise ExpkitError(f"cannot read {file}: {exc.strerror or exc}", key="dataset.path") from None
    return out


# Documents read by the pre-run check, kept for the loader of the same process (read once, not twice).
_READ: dict[tuple[str, tuple[str, ...] | None], tuple[Corpus, dict[str, np.ndarray], tuple[Any, ...]]] = {}


def _stamp(corpus: Corpus) -> tuple[Any, ...]:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for s in sorted(corpus.files) for p in corpus.files[s])


def read_corpus(root: Path, classes: list[str] | None) -> tuple[Corpus, dict[str, np.ndarray]]:
    """List and read the tree (or reuse what the pre-run check read, if no file changed since)."""
    key = (str(root.resolve()), tuple(classes) if classes else None)
    corpus = list_corpus(root, classes)
    cached = _READ.pop(key, None)
    if cached is not None and cached[0].files == corpus.files and cached[2] == _stamp(corpus):
        return cached[0], cached[1]
    return corpus, {s: read_documents(f) for s, f in corpus.files.items()}


def check_text_dir(options: TextDirOptions, *, path: str | None, data_dir: str | None, **_: Any) -> None:
    """Before any run is recorded: the folder tree, its classes, and that every document is UTF-8."""
    root = data_root(path, data_dir, options.name)
    corpus, texts = read_corpus(root, options.classes)
    _READ[(str(root.resolve()), tuple(options.classes) if options.classes else None)] = (corpus, texts, _stamp(corpus))
    if corpus.ignored:
        print(
            f"text_dir: not classes (found in only one of train/ and test/): {', '.join(corpus.ignored)}; "
            f"classes: {', '.join(corpus.classes)}",
            file=sys.stderr,
        )


# --- the source ------------------------------------------------------------------------------------


def stratified_test(labels: np.ndarray, fraction: float, seed: int, root: Path, classes: list[str]) -> np.ndarray:
    """A boolean mask of the test documents: `fraction` of every class (at least one), chosen with `seed`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for index, name in enumerate(classes):
        members = np.flatnonzero(labels == index)
        if len(members) < 2:
            raise ExpkitError(
                f"class {name} has {len(members)} document in {root / 'train' / name}; without a test/ folder each class "
                "needs at least 2 (one for training, one for the test split)",
                key="dataset.path",
                hint="add documents, or give a test/ folder",
            )
        take = min(len(members) - 1, max(1, round(len(members) * fraction)))
        test[rng.choice(members, size=take, replace=False)] = True
    return test


def load_text_dir(options: TextDirOptions, *, path: str | None, data_dir: str | None, seed: int, **_: Any) -> NamedArrays:
    """Raw documents ({input: str array}) and class indices ({target: int64 array}) for train and test.

    The training documents come in an order shuffled with `seed`, so a holdout (the first N) mixes the classes.
    """
    import numpy as np

    root = data_root(path, data_dir, options.name)
    corpus, texts = read_corpus(root, options.classes)
    train_x, train_y = texts["train"], np.asarray(corpus.labels["train"], dtype=np.int64)
    if "test" in texts:
        test_x, test_y = texts["test"], np.asarray(corpus.labels["test"], dtype=np.int64)
    else:
        mask = stratified_test(train_y, options.test_fraction, seed, root, corpus.classes)
        test_x, test_y, train_x, train_y = train_x[mask], train_y[mask], train_x[~mask], train_y[~mask]
    rng = np.random.default_rng(seed)
    order, test_order = rng.permutation(len(train_x)), rng.permutation(len(test_x))
    return (
        ({options.input: train_x[order]}, {options.target: train_y[order]}),
        ({options.input: test_x[test_order]}, {options.target: test_y[test_order]}),
    )


def vectorize(layer: Any, texts: np.ndarray, output_mode: str) -> np.ndarray:
    """`texts` through the adapted layer in tf.data batches: uint8 for multi_hot, int32 for int, float32 otherwise."""
    import numpy as np
    import tensorflow as tf

    dtype = {"multi_hot": tf.uint8, "int": tf.int32}.get(output_mode, tf.float32)
    data = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), dtype=tf.string)).batch(VECTORIZE_BATCH)
    data = data.map(lambda t: tf.cast(layer(t), dtype), num_parallel_calls=2, deterministic=True).prefetch(1)
    out = None
    start = 0
    for part in data:  # filled batch by batch: the split's matrix is held once, never as a list of parts plus a copy
        values = part.numpy()
        if out is None:
            out = np.empty((len(texts), *values.shape[1:]), dtype=values.dtype)
        out[start : start + len(values)] = values
        start += len(values)
    if out is None:
        return np.zeros((0, int(layer.compute_output_shape((None,))[-1] or 0)), dtype=dtype.as_numpy_dtype)
    return out


def fit_text(
    options: TextDirOptions,
    x_train: dict[str, Any],
    others: list[dict[str, Any] | None],
    *,
    path: str | None,
    data_dir: str | None,
    **_: Any,
) -> Any:
    """Adapt the vectorizer on the training documents only; every split becomes vectors. Returns (x_train, others, TextFitted)."""
    from expkit.data.text_vectorize import text_vectorizer

    name = options.input
    layer = text_vectorizer(options.vectorize, x_train[name], name="vectorize")
    mode = options.vectorize.output_mode

    def apply(x: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if x is None else {**x, name: vectorize(layer, x[name], mode)}

    classes, _splits, _ignored = find_classes(data_root(path, data_dir, options.name), options.classes)
    fitted = TextFitted(layer, classes, name, options.vectorize)
    return apply(x_train), [apply(o) for o in others], fitted


register_source("text_dir", TextDirOptions, check=check_text_dir, fit=fit_text, origin=lambda options, *, path, **_: str(path))(
    load_text_dir
)


def write_fitted(fitted: TextFitted, output_dir: Path) -> None:
    """The run folder's record of what was fitted: classes.json (class names) and vocabulary.txt (one token a line).

    A resumed run refits the vocabulary on the same training documents, which gives the same one; if it does not (the
    documents changed since the run started), the weights it resumes were trained on another encoding: an error.
    """
    import json

    output_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{token}\n" for token in fitted.vocabulary())
    stored = output_dir / "vocabulary.txt"
    if stored.is_file() and stored.read_text() != text:
        raise ExpkitError(
            f"the vocabulary fitted now differs from {stored}, the one this run was trained with",
            key="dataset.path",
            hint="the documents changed since the run started: restore them, or start a new run",
        )
    (output_dir / "classes.json").write_text(json.dumps({"class_names": fitted.class_names, "skipped_images": []}, indent=1) + "\n")
    stored.write_text(text)
