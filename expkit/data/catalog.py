"""Every data source, registered: read the source registry through this module.

The registry itself (`expkit.data.named`: `Source`, `register_source`, `SOURCES`) imports no source. Each source module
registers itself on import; this module imports the built-in ones and every `expkit/data/source_*.py`
(`discover_sources`), so that validation, the pre-flight, `expkit list` and `load_splits` see them all. Each source
module imports nothing heavy at module level, so importing this stays light (no numpy).
"""

from __future__ import annotations

from typing import Any

from expkit.data import builtin, image_dir, table_source, text_dir  # noqa: F401  (they register themselves)
from expkit.data.named import (
    SOURCES,
    Source,
    all_source_names,
    check_source,
    dataset_origin,
    discover_sources,
    get_source,
    source_options,
)

discover_sources()


def get_loader(source: str, name: str) -> Any:
    """The loader function for `dataset.source` / `dataset.name` of the keras and sklearn sources."""
    from expkit.data.sources import DATASETS

    get_source(source)  # an unknown source fails with a suggestion
    return DATASETS[source].get(name, key="dataset.name")


__all__ = [
    "SOURCES",
    "Source",
    "all_source_names",
    "check_source",
    "dataset_origin",
    "discover_sources",
    "get_loader",
    "get_source",
    "source_options",
]
