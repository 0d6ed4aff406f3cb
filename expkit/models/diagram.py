"""The architecture diagram: keras.utils.plot_model when pydot and Graphviz are installed, else expkit's own drawing.

The fallback draws the same graph with matplotlib (a dependency already): one box per layer (name, type,
output shape), layers placed in rows by their depth from the inputs, arrows from each layer to the layers it
feeds. So every run gets `model.png`, and no run prints a note about missing Graphviz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_architecture(model: Any, path: Path) -> Path | None:
    """Draw `model` to `path` (Graphviz if it is there, matplotlib otherwise); returns the file, or None if none was written."""
    import keras

    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, expand_nested=False)
    except (ImportError, OSError):
        draw_layers(layer_graph(model), path)
    return path if path.exists() else None


def layer_graph(model: Any) -> list[tuple[str, str, str, list[str]]]:
    """(name, type, output shape, names of the layers it reads) per layer, inputs included, in the model's order."""
    if hasattr(model, "operations"):  # functional: the real graph, with several inputs and outputs
        nodes = []
        for op in model.operations:
            parents = [p.operation.name for node in op._inbound_nodes for p in node.parent_nodes]
            nodes.append((op.name, type(op).__name__, _shape(op), list(dict.fromkeys(parents))))
        return nodes
    previous = "input"
    shape = str(tuple(model.inputs[0].shape)) if getattr(model, "inputs", None) else ""
    nodes = [(previous, "InputLayer", shape, [])]
    for layer in model.layers:  # Sequential: a chain
        nodes.append((layer.name, type(layer).__name__, _shape(layer), [previous]))
        previous = layer.name
    return nodes


def _shape(layer: Any) -> str:
    try:
        return str(tuple(layer.output.shape))
    except (AttributeError, ValueError):
        return ""


def draw_layers(nodes: list[tuple[str, str, str, list[str]]], path: Path) -> None:
    """A top-down box-and-arrow drawing of `nodes` (see `layer_graph`), written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth: dict[str, int] = {}
    for name, _, _, parents in nodes:  # the model's order is topological: parents come first
        depth[name] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
    rows: dict[int, list[str]] = {}
    for name, *_ in nodes:
        rows.setdefault(depth[name], []).append(name)
    width = max(len(r) for r in rows.values())
    where = {name: ((i + 0.5) * width / len(row), -d) for d, row in rows.items() for i, name in enumerate(row)}
    fig, ax = plt.subplots(figsize=(max(3.6, 3.2 * width), max(1.6, 1.1 * len(rows))))
    box = {"boxstyle": "round,pad=0.4", "facecolor": "#eef3fb", "edgecolor": "#4a6fa5"}
    for name, kind, shape, parents in nodes:
        x, y = where[name]
        ax.text(x, y, f"{name} ({kind})\n{shape}", ha="center", va="center", fontsize=8, bbox=box)
        for parent in parents:
            if parent in where:
                ax.annotate("", xy=(x, y + 0.28), xytext=(where[parent][0], where[parent][1] - 0.28), arrowprops={"arrowstyle": "->"})
    ax.set_xlim(0, width)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
