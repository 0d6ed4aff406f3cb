"""Import TensorFlow once, without the start-up noise its C++ side writes straight to stderr.

TF prints an INFO line about oneDNN custom ops (and absl's "before InitializeLog" warning) at
import time, past `TF_CPP_MIN_LOG_LEVEL`. Turning oneDNN off would hide it but costs a lot of
speed, so the import's stderr is captured at the file-descriptor level and replayed without
those lines; anything else TF writes there (real warnings, errors) still reaches the user.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

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
