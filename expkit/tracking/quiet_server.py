"""`python -m expkit.tracking.quiet_server server ARGS...`: `mlflow server ARGS...` without its start-up notices.

`expkit ui` runs the MLflow UI through this. Dropped: the notice that the server accepts localhost only (expkit ui binds
127.0.0.1 unless told otherwise, and says where to open it), and Starlette's deprecation warning raised by MLflow's own
import. The per-request access log and uvicorn's INFO lines are turned off by `expkit.tracking.ui.ui_command`'s uvicorn options;
warnings and errors still show.
"""

from __future__ import annotations

import os
import sys
from typing import Any

QUIET = ("[MLflow] Security middleware enabled with default settings",)
#: Warning filters (PYTHONWARNINGS syntax) handed to the uvicorn process MLflow starts: its message starts with this text.
WARNINGS = "ignore:starlette.middleware.wsgi is deprecated"


class Dropping:
    """A text stream that passes everything to `stream` except writes containing one of `quiet`."""

    def __init__(self, stream: Any, quiet: tuple[str, ...] = QUIET) -> None:
        self.stream = stream
        self.quiet = quiet

    def write(self, text: Any) -> int:
        if isinstance(text, str) and any(q in text for q in self.quiet):
            return len(text)
        return int(self.stream.write(text) or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main(argv: list[str]) -> None:
    os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), WARNINGS) if w)
    sys.stderr = Dropping(sys.stderr)
    from mlflow.cli import cli

    cli.main(args=argv, prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
