"""Run a Python script or module and record when its first training step finished.

    python benchmarks/first_step.py OUT_FILE script.py [args]       # or: OUT_FILE -m module [args]

Writes the wall-clock time (time.time()) at the end of the first `fit()` batch to OUT_FILE. It
hooks Keras' CallbackList when Keras is imported, so it changes nothing in the measured program
before that (import order, threads, start-up overlap all stay as they are).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import runpy
import sys
import time
from pathlib import Path
from typing import Any

TARGET = "keras.src.callbacks.callback_list"


class _Hook(importlib.abc.MetaPathFinder):
    def __init__(self, out: Path) -> None:
        self.out = out

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader, out = spec.loader, self.out
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            original = module.CallbackList.on_train_batch_end

            def on_train_batch_end(self: Any, batch: int, logs: Any = None) -> None:
                if not out.exists():
                    out.write_text(f"{time.time()}\n")
                return original(self, batch, logs)

            module.CallbackList.on_train_batch_end = on_train_batch_end

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main() -> None:
    out, rest = Path(sys.argv[1]), sys.argv[2:]
    sys.meta_path.insert(0, _Hook(out))
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        sys.path.insert(0, str(Path(rest[0]).resolve().parent))
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
