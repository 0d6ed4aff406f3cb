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


#: Characters of a run name per title line (a title line takes about 9 px a character at 100 dpi: a 6-inch figure
#: holds about 66), and lines at most.
TITLE_WIDTH = 60
TITLE_LINES = 2
#: The x-axis label of learning curves: epochs count from 0, as MLflow's step does (the Keras epoch index).
EPOCH_AXIS = "epoch (from 0, as MLflow's step)"


def title_lines(run_name: str, width: int = TITLE_WIDTH, most: int = TITLE_LINES) -> str:
    """A run name wrapped to title lines that fit the figure: at most `most` lines, the last cut with '...' if needed."""
    import textwrap

    lines = textwrap.wrap(run_name, width, break_long_words=True, break_on_hyphens=False)
    if len(lines) > most:
        lines = [*lines[: most - 1], textwrap.shorten(" ".join(lines[most - 1 :]), width, placeholder=" ...")]
    return "\n".join(lines)


def epoch_ticks(ax: Any, epochs: int) -> None:
    """Whole-epoch ticks: every epoch when there are few (one epoch included), else at most ~10 integer ticks."""
    from matplotlib.ticker import MaxNLocator

    if epochs <= 12:
        ax.set_xticks(range(epochs))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def draw_curve(ax: Any, history: dict[str, list[float]], name: str, smoothing: float = 0.0, run_name: str = "") -> str:
    """Draw metric `name` (training, and validation if recorded) by epoch on `ax`; returns the title it set.

    Epochs count from 0, like the step of the same metric in MLflow, so the PNG and MLflow's charts agree."""
    drawn = []
    longest = 0
    for key, label, style in ((name, "training", "o-"), (f"val_{name}", "validation", "s-")):
        values = history.get(key)
        if not values:
            continue
        drawn.append(label)
        longest = max(longest, len(values))
        epochs = np.arange(len(values))
        if smoothing > 0:
            ax.plot(epochs, values, style, alpha=0.25, markersize=3)
            ax.plot(epochs, ema(values, smoothing), style[1:], label=f"{label} (EMA {smoothing})")
        else:
            ax.plot(epochs, values, style, label=label, markersize=4)
    title = f"{name}: {' and '.join(drawn)}" + (f"\n{title_lines(run_name)}" if run_name else "")
    ax.set(xlabel=EPOCH_AXIS, ylabel=name)
    ax.set_title(title, fontsize="medium")
    epoch_ticks(ax, longest)
    ax.legend()
    ax.grid(alpha=0.3)
    return title


def learning_curves(history: dict[str, list[float]], out_dir: Path, smoothing: float = 0.0, run_name: str = "") -> list[Path]:
    """One PNG per metric (loss, accuracy, and per output head of a multi-output model): training [and validation] by epoch.

    Epoch ticks are whole epochs counted from 0 (MLflow's step); the title names the run, wrapped to fit, and says only
    what is plotted (also stored as the PNG's Title).
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
    title = f"test confusion matrix (accuracy {accuracy:.4f})" + (f"\n{title_lines(run_name, int(size * 100 / 9))}" if run_name else "")
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize="medium")
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
