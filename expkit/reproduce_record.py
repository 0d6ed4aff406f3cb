"""RESULTS.md keeps what a reproduction did not rerun.

`expkit reproduce playground_spiral` rewrites RESULTS.md with its own run at the top; the rows and run lines of the
targets it did not run are carried over from the file it replaces, each under a heading naming the command, date
and commit that produced them. A target rerun later drops out of the older sections.
"""

from __future__ import annotations

import re

EARLIER = "## Earlier results"
_NAME_ROW = re.compile(r"^\| ([^|]+?) \|")
_NAME_RUN = re.compile(r"^- \*\*(.+?)\*\*")


def _blocks(previous: str) -> list[tuple[str, list[str]]]:
    """(heading, lines) per run recorded in a RESULTS.md: the main run first, then each earlier section."""
    main, *earlier = previous.split(f"\n{EARLIER}")
    found = {k: "" for k in ("Command", "Date", "Versions")}
    for line in main.splitlines():
        for key in found:
            if line.startswith(f"- {key}: ") and not found[key]:
                found[key] = line.removeprefix(f"- {key}: ")
    date = found["Date"].split(",")[0]
    commit = found["Versions"].rsplit("; git ", 1)[-1] if "; git " in found["Versions"] else "n/a"
    blocks = [(f"{EARLIER}: {found['Command'] or 'expkit reproduce'}, {date}, git {commit}", main.splitlines())]
    for section in earlier:
        heading, *lines = section.splitlines()
        blocks.append((EARLIER + heading, lines))
    return blocks


def carried_over(previous: str | None, ran: set[str], header: list[str]) -> list[str]:
    """Markdown sections for the targets of `previous` (an earlier RESULTS.md) that are not in `ran`; `header` is the
    table's two header lines."""
    if not previous or not previous.startswith("# Reproduction results"):
        return []
    out: list[str] = []
    taken = set(ran)
    for heading, lines in _blocks(previous):
        rows = [ln for ln in lines if (m := _NAME_ROW.match(ln)) and m.group(1) not in taken | {"preset", "---"}]
        names = {m.group(1) for ln in rows if (m := _NAME_ROW.match(ln))}
        if not names:
            continue
        runs = [ln for ln in lines if (m := _NAME_RUN.match(ln)) and m.group(1) in names]
        out += ["", heading, "", *header, *rows, "", *runs]
        taken |= names
    return out
