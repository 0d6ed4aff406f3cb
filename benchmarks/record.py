"""Where the single-figure benchmark scripts keep their results: benchmarks/results/<name>.json, stamped with the machine."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(name: str, result: dict[str, Any]) -> Path:
    """Add the machine and the date to `result`, write it to results/<name>.json and print it."""
    stamped = {
        **result,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(stamped, indent=2) + "\n")
    print(json.dumps(stamped, indent=2))
    return out
