"""The `table` source's registry entry: loaded whole by expkit.data.table, or streamed by expkit.data.table_stream when
the file is large. A module of its own, so that neither of those imports the other's caller (no import circle), and
importing it stays light (numpy and pandas load when a table is read).
"""

from __future__ import annotations

from typing import Any

from expkit.data.named import register_source
from expkit.data.table import TableOptions, check_table, load_table


def stream_table(options: TableOptions, **kwargs: Any) -> Any:
    """The streamed splits of a large file (expkit.data.table_stream), or None to load it into memory."""
    from expkit.data.table_stream import stream_table as stream

    return stream(options, **kwargs)


register_source("table", TableOptions, check=check_table, stream=stream_table)(load_table)
