"""Generated labelled documents in folder layouts: the raw IMDB download (`aclImdb/`) and a plain text folder.

Plain functions (no pytest). The label is learnable on purpose: every positive document holds a few words of a
positive set, every negative one a few of a negative set, in a background of neutral words drawn from a
Zipf-like vocabulary, with the capitals, punctuation and `<br />` tags of real reviews. Nothing else tells the
classes apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

POSITIVE = ("wonderful", "superb", "brilliant", "delightful", "masterpiece", "moving", "gorgeous", "charming")
NEGATIVE = ("awful", "boring", "dreadful", "tedious", "mess", "clumsy", "pointless", "worst")
NEUTRAL = (*(f"w{i}" for i in range(400)), "the", "a", "and", "of", "film", "movie", "plot", "actor", "scene", "story")


def review(label: int, rng: np.random.Generator) -> str:
    """One document: 10-60 neutral words, three sentiment words of the label's set, capitals, punctuation and tags."""
    length = int(rng.integers(10, 61))
    ranks = np.minimum(np.floor(len(NEUTRAL) ** rng.random(length)).astype(int), len(NEUTRAL) - 1)
    words = [NEUTRAL[r] for r in ranks] + list(rng.choice(POSITIVE if label == 1 else NEGATIVE, size=3))
    rng.shuffle(words)
    words[0] = words[0].capitalize()
    cut = len(words) // 2
    return " ".join(words[:cut]) + ". <br /><br />" + " ".join(words[cut:]) + "!"


def write_reviews(folder: Path, label: int, n: int, rng: np.random.Generator, start: int = 0) -> None:
    """`n` documents as `<id>_<rating>.txt` (aclImdb's naming: ratings 7-10 positive, 1-4 negative)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        rating = int(rng.integers(7, 11)) if label == 1 else int(rng.integers(1, 5))
        (folder / f"{i}_{rating}.txt").write_text(review(label, rng), encoding="utf-8")


def write_aclimdb(root: str | Path, n_train: int = 200, n_test: int = 100, n_unsup: int = 30, seed: int = 0) -> Path:
    """The raw IMDB download's layout below `root/aclImdb`: train/{neg,pos,unsup}, test/{neg,pos}, loose files."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "aclImdb"
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in ((0, "neg"), (1, "pos")):
            write_reviews(base / split / name, label, n // 2, rng)
        (base / split / "labeledBow.feat").write_text("0:9 1:1 2:6\n")
        (base / split / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0000000/usercomments\n")
        (base / split / "urls_neg.txt").write_text("http://www.imdb.com/title/tt0000000/usercomments\n")
    unsup = base / "train" / "unsup"
    unsup.mkdir(parents=True)
    for i in range(n_unsup):
        (unsup / f"{i}_0.txt").write_text(review(int(rng.integers(0, 2)), rng), encoding="utf-8")
    (base / "train" / "unsupBow.feat").write_text("0:1\n")
    (base / "imdb.vocab").write_text("\n".join(POSITIVE + NEGATIVE + NEUTRAL) + "\n")
    (base / "imdbEr.txt").write_text("0.0\n")
    (base / "README").write_text("Large Movie Review Dataset v1.0 (generated stand-in)\n")
    return base


def write_text_folder(root: str | Path, n: int = 200, seed: int = 0, test: bool = False) -> Path:
    """A two-class text folder `root/train/{bad,good}/*.txt` (and test/ when `test`)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in ("train", "test") if test else ("train",):
        for label, name in ((0, "bad"), (1, "good")):
            write_reviews(root / split / name, label, n // 2, rng)
    return root
