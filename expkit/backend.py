"""Import TensorFlow once, without the start-up noise its C++ side writes to stderr or the extras Keras loads.

TF prints an INFO line about oneDNN custom ops (and absl's "before InitializeLog" warning) at
import time, past `TF_CPP_MIN_LOG_LEVEL`. Turning oneDNN off would hide it but costs a lot of
speed, so the import's stderr is captured at the file-descriptor level and replayed without
those lines; anything else TF writes there (real warnings, errors) still reaches the user.

Keras also imports scikit-learn, pandas and pyplot when they are installed (MLflow installs them),
only to offer integrations expkit never uses: scikit-learn wrappers, DataFrame inputs and an image
gallery. That is about 1.3 s of every run's start-up, so they are hidden while Keras is imported;
they import normally afterwards (MLflow and expkit's plots load what they need, off the critical path).
The objects the import leaves are then frozen (`gc.freeze`), so garbage collections skip them.
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

NOISE = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()")
#: Modules Keras imports only for optional integrations expkit does not use (see the module docstring).
KERAS_EXTRAS = ("sklearn", "pandas", "matplotlib.pyplot")


class _Hidden(importlib.abc.MetaPathFinder):
    """Makes `modules` (and their submodules) look absent to imports made by one thread."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if threading.get_ident() == self.thread and any(name == m or name.startswith(m + ".") for m in self.modules):
            raise ModuleNotFoundError(f"{name} is not loaded while Keras is imported (expkit.backend)", name=name)


@contextmanager
def hidden(modules: Sequence[str] = KERAS_EXTRAS) -> Iterator[None]:
    """Within the block, this thread's imports of `modules` fail as if they were not installed."""
    finder = _Hidden(modules)
    # New lists rather than insert/remove: another thread part-way through sys.meta_path keeps its own list.
    sys.meta_path = [finder, *sys.meta_path]
    try:
        yield
    finally:
        sys.meta_path = [f for f in sys.meta_path if f is not finder]


def import_tensorflow() -> Any:
    """`import tensorflow` without Keras' unused extras, replaying its stderr output minus the known INFO noise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with hidden(), ctrl_c_after():
        tensorflow = _import_with_quiet_stderr()
    # The import leaves ~400,000 objects that live as long as the process. Frozen, no later garbage collection walks them:
    # a joblib worker's collection between jobs and Keras' clear_session took 0.2-0.6 s each with them.
    gc.freeze()
    return tensorflow


@contextmanager
def ctrl_c_after() -> Iterator[None]:
    """A Ctrl-C (SIGINT) during the block is raised as KeyboardInterrupt when the block ends, not inside it.

    TensorFlow's import runs third-party module code, some of it under a bare `except:`, which would swallow a
    KeyboardInterrupt raised there: the import would go on and the job would train although the user pressed Ctrl-C.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # another handler (a StopRequest, a host application) decides what Ctrl-C does
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


def _import_with_quiet_stderr() -> Any:
    with quiet_stderr():
        import tensorflow
    return tensorflow


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Within the block, what is written to file descriptor 2 is held back, then replayed minus the `NOISE` lines."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (pytest capture, notebooks): no noise to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            captured.seek(0)
            kept = [
                line for line in captured.read().decode(errors="replace").splitlines(keepends=True) if not any(n in line for n in NOISE)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader:
    """Wraps TensorFlow's loader: its module runs inside `quiet_stderr`, with Keras' extras hidden."""

    def __init__(self, loader: Any, finder: _QuietFirstImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        sys.meta_path = [f for f in sys.meta_path if f is not self.finder]  # once: later imports find TensorFlow loaded
        module.__loader__ = self.loader  # the module keeps its real loader (resources, reloads)
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with hidden(), quiet_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Sees TensorFlow's first import, wherever it comes from (`import keras`, MLflow loading a model), and quiets it.

    A mere lookup (`importlib.util.find_spec("tensorflow")`, as libraries probe for it) imports nothing and leaves
    the finder in place; it steps aside when TensorFlow's module actually runs.
    """

    def __init__(self) -> None:
        self.busy = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow" or self.busy:
            return None
        self.busy = True  # the real finders answer the lookup below
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


def quiet_tensorflow_import() -> None:
    """Make TensorFlow's first import in this process, by any code path, as quiet as `import_tensorflow`.

    The CLI calls it at start-up, so `predict`, `evaluate`, `resume` and `validate --build` (which reach
    TensorFlow through Keras or MLflow) print no oneDNN or absl lines either.
    """
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path = [_QuietFirstImport(), *sys.meta_path]
