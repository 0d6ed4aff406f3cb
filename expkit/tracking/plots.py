"""Learning-curve and confusion-matrix PNGs, as the books draw them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NOT_CURVES = {"learning_rate", "epoch_time_s"}


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ema(values: list[float], factor: float) -> list[float]:
    """Exponential moving average: each point is factor * previous + (1 - factor) * value."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else out[-1] * factor + v * (1 - factor))
    return out


def curve_groups(history: dict[str, list[float]]) -> list[str]:
    """The training-side metric names to plot (each with its val_ twin if present): loss, accuracy, <head>_loss, ..."""
    return [k for k in history if not k.startswith("val_") and k not in NOT_CURVES]


def draw_curve(ax: Any, history: dict[str, list[float]], name: str, smoothing: float = 0.0, run_name: str = "") -> str:
    """Draw metric `name` (training, and validation if recorded) by epoch on `ax`; returns the title it set."""
    from matplotlib.ticker import MaxNLocator

    drawn = []
    for key, label, style in ((name, "training", "o-"), (f"val_{name}", "validation", "s-")):
        values = history.get(key)
        if not values:
            continue
        drawn.append(label)
        epochs = np.arange(1, len(values) + 1)
        if smoothing > 0:
            ax.plot(epochs, values, style, alpha=0.25, markersize=3)
            ax.plot(epochs, ema(values, smoothing), style[1:], label=f"{label} (EMA {smoothing})")
        else:
            ax.plot(epochs, values, style, label=label, markersize=4)
    title = f"{name}: {' and '.join(drawn)}" + (f"\n{run_name}" if run_name else "")
    ax.set(xlabel="epoch", ylabel=name, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
    return title


def learning_curves(history: dict[str, list[float]], out_dir: Path, smoothing: float = 0.0, run_name: str = "") -> list[Path]:
    """One PNG per metric (loss, accuracy, and per output head of a multi-output model): training [and validation] by epoch.

    Epoch ticks are integers; the title names the run and says only what is plotted (also stored as the PNG's Title).
    EMA-smoothed if smoothing > 0.
    """
    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in curve_groups(history):
        fig, ax = plt.subplots(figsize=(6, 4))
        title = draw_curve(ax, history, name, smoothing, run_name)
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100, metadata={"Title": title})
        plt.close(fig)
        written.append(path)
    return written


def confusion_matrix_png(counts: np.ndarray, path: Path, run_name: str = "") -> Path:
    """Plot a test confusion matrix: counts[i, j] samples of true class i predicted as j."""
    plt = pyplot()

    n = len(counts)
    size = min(4 + 0.35 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    color="white" if counts[i, j] > counts.max() / 2 else "black",
                    fontsize=8,
                )
    if n <= 20:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    title = f"test confusion matrix (accuracy {accuracy:.4f})" + (f"\n{run_name}" if run_name else "")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def decision_boundary_png(
    probability: np.ndarray, xx: np.ndarray, yy: np.ndarray, points: np.ndarray, labels: np.ndarray, path: Path, title: str
) -> Path:
    """Test points over the model's predicted probability of the positive class, as the Playground draws them."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 5))
    field = ax.contourf(xx, yy, probability, levels=np.linspace(0, 1, 11), cmap="RdBu", vmin=0, vmax=1, alpha=0.8)
    ax.contour(xx, yy, probability, levels=[0.5], colors="black", linewidths=1)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu", vmin=0, vmax=1, edgecolors="white", linewidths=0.6, s=18)
    fig.colorbar(field, ax=ax, fraction=0.046, pad=0.04, label="P(positive)")
    ax.set(xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()), xlabel="x1", ylabel="x2", title=title, aspect="equal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
