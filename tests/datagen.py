"""Small synthetic dataset files in the exact layouts `keras.datasets` downloads.

Plain functions (no pytest), so tests and scripts can both use them. Labels are learnable:

- IMDB: every review contains a few words from a "positive" or a "negative" word set,
  depending on its label.
- Reuters: every newswire repeats a signature word of its topic.
- Images: every class has its own prototype image; samples are the prototype plus noise.

All word ids are raw frequency ranks >= 1, as in Keras' files (the loaders add
start_char=1 and index_from=3 themselves).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# IMDB: raw ranks of the words that carry the sentiment.
IMDB_POSITIVE_WORDS = tuple(range(10, 20))
IMDB_NEGATIVE_WORDS = tuple(range(20, 30))
# Reuters: topic c is signalled by raw rank REUTERS_FIRST_SIGNATURE + c.
REUTERS_FIRST_SIGNATURE = 10


def _object_array(seqs: list[list[int]]) -> np.ndarray:
    """A 1-d object array of python int lists (np.array would make a 2-d array of equal-length lists)."""
    out = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        out[i] = [int(w) for w in s]
    return out


def _background(rng: np.random.Generator, vocab: int, low: int, high: int) -> np.ndarray:
    """A random-length run of raw word ranks in 1..vocab, frequent (small) ranks more likely."""
    length = int(rng.integers(low, high + 1))
    ranks = np.floor(vocab ** rng.random(length)).astype(np.int64)  # log-uniform over 1..vocab
    return np.clip(ranks, 1, vocab)


def imdb_sequences(n: int, vocab: int, rng: np.random.Generator) -> tuple[list[list[int]], np.ndarray]:
    """`n` reviews and their 0/1 labels; label 1 reviews contain positive words, label 0 negative ones."""
    if vocab < max(IMDB_NEGATIVE_WORDS):
        raise ValueError(f"vocab must be at least {max(IMDB_NEGATIVE_WORDS)}")
    labels = rng.integers(0, 2, n)
    seqs = []
    for label in labels:
        words = _background(rng, vocab, 8, 40)
        # Background words never include the sentiment words, so the label is the only signal.
        words = words[(words < min(IMDB_POSITIVE_WORDS)) | (words > max(IMDB_NEGATIVE_WORDS))]
        marks = rng.choice(IMDB_POSITIVE_WORDS if label == 1 else IMDB_NEGATIVE_WORDS, size=3)
        seq = np.concatenate([words, marks])
        rng.shuffle(seq)
        seqs.append(seq.tolist())
    return seqs, labels.astype(np.int64)


def write_imdb_npz(path: str | Path, n_train: int = 200, n_test: int = 100, vocab: int = 500, seed: int = 0) -> Path:
    """imdb.npz layout: x_train, y_train, x_test, y_test; x object arrays of int lists, y int 0/1."""
    rng = np.random.default_rng(seed)
    x_train, y_train = imdb_sequences(n_train, vocab, rng)
    x_test, y_test = imdb_sequences(n_test, vocab, rng)
    path = Path(path)
    np.savez(path, x_train=_object_array(x_train), y_train=y_train, x_test=_object_array(x_test), y_test=y_test)
    return path


def write_reuters_npz(path: str | Path, n: int = 300, vocab: int = 500, num_classes: int = 46, seed: int = 0) -> Path:
    """reuters.npz layout: x (object array of int lists), y (int topics 0..num_classes-1)."""
    if vocab < REUTERS_FIRST_SIGNATURE + num_classes:
        raise ValueError(f"vocab must be at least {REUTERS_FIRST_SIGNATURE + num_classes}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    seqs = []
    for label in labels:
        words = _background(rng, vocab, 8, 40)
        # Background words never include signature words, so each topic's word appears only in its own newswires.
        words = words[(words < REUTERS_FIRST_SIGNATURE) | (words >= REUTERS_FIRST_SIGNATURE + num_classes)]
        seq = np.concatenate([words, np.full(3, REUTERS_FIRST_SIGNATURE + label)])
        rng.shuffle(seq)
        seqs.append(seq.tolist())
    path = Path(path)
    np.savez(path, x=_object_array(seqs), y=labels)
    return path


def image_arrays(
    n: int, shape: tuple[int, ...], num_classes: int, prototypes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, num_classes, n).astype(np.uint8)
    noise = rng.normal(0, 40, (n, *shape))
    x = np.clip(prototypes[labels].astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return x, labels


def write_image_npz(
    path: str | Path,
    n_train: int = 200,
    n_test: int = 50,
    shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """mnist.npz / fashion_mnist.npz / cifar10.npz layout: x_train, y_train, x_test, y_test, all uint8."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (num_classes, *shape)).astype(np.uint8)
    x_train, y_train = image_arrays(n_train, tuple(shape), num_classes, prototypes, rng)
    x_test, y_test = image_arrays(n_test, tuple(shape), num_classes, prototypes, rng)
    path = Path(path)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
