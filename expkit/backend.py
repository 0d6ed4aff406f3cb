"""Import TensorFlow once, without the start-up noise its C++ side writes straight to stderr.

TF prints an INFO line about oneDNN custom ops (and absl's "before InitializeLog" warning) at
import time, past `TF_CPP_MIN_LOG_LEVEL`. Turning oneDNN off would hide it but costs a lot of
speed, so the import's stderr is captured at the file-descriptor level and replayed without
those lines; anything else TF writes there (real warnings, errors) still reaches the user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import threading
from typing import Any, NoReturn

NOISE = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()")


def import_tensorflow() -> Any:
    """`import tensorflow`, replaying its stderr output minus the known INFO noise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (pytest capture, notebooks): import plainly
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            import tensorflow
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
    return tensorflow


def exit_now(code: object) -> NoReturn:
    """End a process that trained a model as Python would, minus the interpreter's teardown.

    Threads are joined, atexit handlers run and output is flushed; freeing TensorFlow's runtime and
    every module's objects, which takes 1.3-2 s after a run and writes nothing, is skipped.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as the interpreter does first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
