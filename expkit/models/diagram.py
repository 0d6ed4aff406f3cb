"""The architecture diagram (keras.utils.plot_model), when pydot and Graphviz are installed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_told = False


def plot_architecture(model: Any, path: Path) -> Path | None:
    """Draw `model` to `path`; without pydot/Graphviz say so once per process and return None."""
    global _told
    import keras

    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, expand_nested=False)
    except (ImportError, OSError) as exc:
        if not _told:
            print(f"note: no architecture diagram ({str(exc).splitlines()[0]}); install pydot and Graphviz to get one", file=sys.stderr)
            _told = True
        return None
    return path if path.exists() else None
