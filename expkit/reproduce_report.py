"""The report of `expkit reproduce`: the terminal table and RESULTS.md (where, when and with what it ran, and every
run's value), with the targets an earlier RESULTS.md had and this run did not rerun (expkit/reproduce_record.py)."""

from __future__ import annotations

import contextlib
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from expkit.config.locate import PACKAGE_DIR
from expkit.reproduce_margin import band_text
from expkit.reproduce_record import carried_over
from expkit.reproduce_stats import TargetResult
from expkit.tracking.table import render_table as text_table

COLUMNS = ("preset", "metric", "book", "result", "band", "verdict", "wall time")


def rows(results: list[TargetResult]) -> list[tuple[str, ...]]:
    return [
        (
            r.target.name,
            r.target.metric,
            str(r.target.book) if r.target.book is not None else "-",
            r.result_text(),
            band_text(r.target),
            r.verdict,
            r.wall_text(),
        )
        for r in results
    ]


def render_table(results: list[TargetResult]) -> str:
    """A plain-text table for the terminal."""
    return text_table(COLUMNS, rows(results))


def versions() -> dict[str, str]:
    """Python, expkit and the main libraries, as installed (read from package metadata)."""
    from expkit import __version__
    from expkit.tracking.facts import package_version

    found = {"python": platform.python_version(), "expkit": __version__}
    for key, names in (
        ("tensorflow", ("tensorflow-cpu", "tensorflow")),
        ("keras", ("keras",)),
        ("mlflow", ("mlflow",)),
        ("numpy", ("numpy",)),
        ("hydra-core", ("hydra-core",)),
    ):
        version = package_version(*names)
        if version is not None:
            found[key] = version
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}; load average at the end {load}"


def git_commit() -> str:
    """The short commit of the expkit checkout, or n/a outside a git repo."""
    from expkit.tracking.facts import git_state

    return git_state(str(PACKAGE_DIR)).get("git.commit", "")[:7] or "n/a"


def render_markdown(
    results: list[TargetResult],
    *,
    command: str,
    started: datetime,
    data_dir: Path | None,
    interrupted: bool = False,
    previous: str | None = None,
) -> str:
    """RESULTS.md: the table, where and how it was made, and every run's value; then the targets of `previous` (the
    file it replaces) that were not rerun, under their own headings (expkit/reproduce_record.py)."""
    table = [f"| {' | '.join(COLUMNS)} |", f"| {' | '.join('---' for _ in COLUMNS)} |"]
    table += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows(results)]
    lines = [
        "# Reproduction results",
        "",
        "Written by `expkit reproduce`; do not edit by hand. Targets, bands and how each band was chosen: `targets.yaml`.",
        "",
        f"- Command: `{command}`" + (" (interrupted)" if interrupted else ""),
        f"- Date: {started.strftime('%Y-%m-%d %H:%M')} UTC, took {(datetime.now(UTC) - started).total_seconds() / 60:.1f} min",
        f"- Machine: {machine()}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in versions().items())}; git {git_commit()}",
        f"- Data: {data_dir or 'no --data-dir (EXPKIT_DATA_DIR unset)'}",
        "- Result: the mean over repeats (seeds 42, 43, ...) ± their sample standard deviation; a target passes if the mean is in band",
        "  and, where the band names another target (`beats`), the mean beats that target's mean by the margin given.",
        "  Wall time: per run, including process start-up (about 10 s), on a shared machine.",
        "",
        *table,
        "",
        "## Runs",
        "",
    ]
    for result in results:
        target = result.target
        runs = ", ".join(
            f"seed {a.seed}: "
            + (f"{a.value:.4f}" if a.value is not None else a.error or "-")
            + (f" (run {a.run_id[:8]})" if a.run_id else "")
            for a in result.attempts
        )
        preset = target.preset_name + (f" {' '.join(target.overrides)}" if target.overrides else "")
        lines.append(f"- **{target.name}** (`+experiment={preset}`, {target.source or 'no source given'}): {runs or result.verdict}")
    lines += carried_over(previous, {r.target.name for r in results}, table[:2])
    return "\n".join(lines) + "\n"
