"""The TensorFlow Playground problems (gauss, circle, xor, spiral), generated as the Playground defines them.

Each problem draws `num_samples` labelled points in [-6, 6]², adds `noise` (the Playground's 0-50 % slider as
0-0.5), shuffles them and keeps the first `train_fraction` for training (the Playground's "ratio of training to
test data"). Labels are 1 for the Playground's positive (blue) class and 0 for the negative one. Inputs are the
chosen `features` of each point: x1, x2, x1², x2², x1·x2, sin(x1), sin(x2), as in the Playground's input column.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import numpy as np

from expkit.config.schema import Playground, PlaygroundFeature
from expkit.registry import Registry

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Generator = Callable[[int, float, np.random.Generator], tuple[np.ndarray, np.ndarray]]

PROBLEMS = Registry("playground problem")
FEATURES: tuple[str, ...] = typing.get_args(PlaygroundFeature)
DOMAIN = (-6.0, 6.0)  # the Playground's plotted square
FEATURE_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "x1": lambda x1, x2: x1,
    "x2": lambda x1, x2: x2,
    "x1_squared": lambda x1, x2: x1 * x1,
    "x2_squared": lambda x1, x2: x2 * x2,
    "x1_x2": lambda x1, x2: x1 * x2,
    "sin_x1": lambda x1, x2: np.sin(x1),
    "sin_x2": lambda x1, x2: np.sin(x2),
}


def gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters at (2, 2) (positive) and (-2, -2); variance grows linearly from 0.5 (noise 0) to 4 (noise 0.5)."""
    std = np.sqrt(0.5 + noise / 0.5 * 3.5)
    half = n // 2
    points = np.concatenate([rng.normal(2.0, std, (half, 2)), rng.normal(-2.0, std, (n - half, 2))])
    return points, np.concatenate([np.ones(half), np.zeros(n - half)])


def circle(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A disc of radius 2.5 (positive) inside a ring from 3.5 to 5; the label is taken after jittering the point by noise·U(-5, 5)."""
    radius, half = 5.0, n // 2
    r = np.concatenate([rng.uniform(0, radius * 0.5, half), rng.uniform(radius * 0.7, radius, n - half)])
    angle = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    jittered = points + rng.uniform(-radius, radius, (n, 2)) * noise
    return points, (np.hypot(jittered[:, 0], jittered[:, 1]) < radius * 0.5).astype(np.float64)


def xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points in [-5, 5]² pushed 0.3 away from the axes; positive where x1·x2 ≥ 0 after a noise·U(-5, 5) jitter."""
    points = rng.uniform(-5, 5, (n, 2))
    points += np.where(points > 0, 0.3, -0.3)
    jittered = points + rng.uniform(-5, 5, (n, 2)) * noise
    return points, (jittered[:, 0] * jittered[:, 1] >= 0).astype(np.float64)


def spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, 1.75 turns out to radius 5, the negative one rotated by π; noise·U(-1, 1) added to each coordinate."""
    half = n // 2
    parts = []
    for count, delta in ((half, 0.0), (n - half, np.pi)):
        i = np.arange(count) / count
        r, t = i * 5, 1.75 * i * 2 * np.pi + delta
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1) + rng.uniform(-1, 1, (count, 2)) * noise)
    return np.concatenate(parts), np.concatenate([np.ones(half), np.zeros(n - half)])


GENERATORS: dict[str, Generator] = {"gauss": gauss, "circle": circle, "xor": xor, "spiral": spiral}


def features(points: np.ndarray, names: list[str]) -> np.ndarray:
    """The model inputs for raw (x1, x2) points: one float32 column per feature name."""
    x1, x2 = points[:, 0], points[:, 1]
    return np.stack([FEATURE_FUNCTIONS[name](x1, x2) for name in names], axis=1).astype(np.float32)


def raw_points(problem: str, options: Playground, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train points, labels), (test points, labels)) in raw (x1, x2) coordinates."""
    PROBLEMS.get(problem, key="dataset.name")  # an unknown name fails here, with a suggestion
    generate = GENERATORS[problem]
    rng = np.random.default_rng(options.seed if options.seed is not None else seed)
    points, labels = generate(options.num_samples, options.noise, rng)
    order = rng.permutation(len(points))
    points, labels = points[order], labels[order].astype(np.int64)
    cut = int(len(points) * options.train_fraction)
    return (points[:cut], labels[:cut]), (points[cut:], labels[cut:])


def loader(problem: str) -> Callable[..., Arrays]:
    """The dataset-source loader for one problem: features of the generated points, labels 0/1."""

    def load(seed: int = 0, playground: Playground | None = None, **_: Any) -> Arrays:
        options = playground or Playground()
        (train, y_train), (test, y_test) = raw_points(problem, options, seed)
        return (features(train, options.features), y_train), (features(test, options.features), y_test)

    return load


for _name in GENERATORS:
    PROBLEMS.register(_name)(loader(_name))


def model_inputs(dataset: Any, seed: int, points: np.ndarray) -> np.ndarray:
    """What the run's model sees for raw points: their features, then the run's x preprocessing (fitted on its training data)."""
    from expkit.data.preprocess import apply_steps

    options = dataset.playground or Playground()
    (train, _), _ = raw_points(dataset.name, options, seed)
    if dataset.max_train_samples:
        train = train[: dataset.max_train_samples]
    _, (inputs,) = apply_steps(
        dataset.preprocess.x, features(train, options.features), [features(points, options.features)], "dataset.preprocess.x"
    )
    return inputs


def grid(resolution: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, xx, yy): a resolution × resolution grid over the Playground's square, points in row order."""
    axis = np.linspace(*DOMAIN, resolution)
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx.ravel(), yy.ravel()], axis=1), xx, yy
