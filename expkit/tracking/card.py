"""The run card: one Markdown page that says what a run was, what it scored, and how to redo or continue it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass
class CardFacts:
    """What the card shows; every field comes from the finished run."""

    run_name: str
    run_id: str
    preset: str
    overrides: list[str]
    output_dir: str
    test_metrics: dict[str, float]
    final_metrics: dict[str, float]
    epochs_run: int
    dataset: str = ""
    plots: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)


def table(rows: Sequence[tuple[str, str]], headers: tuple[str, str]) -> list[str]:
    return [f"| {headers[0]} | {headers[1]} |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def train_command(overrides: list[str]) -> str:
    return " ".join(["expkit", "train", *(shlex.quote(o) for o in overrides)])


def render(facts: CardFacts) -> str:
    """The card as Markdown. Plots link through the MLflow UI's artifact route, so they show in the run's description."""
    lines = [f"# {facts.run_name}", "", f"Run `{facts.run_id}`, preset **{facts.preset}**, {facts.epochs_run} epoch(s)."]
    if facts.dataset:
        lines.append(f"Dataset: {facts.dataset}.")
    lines += ["", "## Changes from the preset", ""]
    shown = [o for o in facts.overrides if not o.startswith(("+experiment=", "experiment="))]
    lines += [f"- `{o}`" for o in shown] or ["- none"]
    lines += ["", "## Key metrics", ""]
    rows = [(k, f"{v:.4f}") for k, v in sorted(facts.test_metrics.items())]
    rows += [(f"final {k}", f"{v:.4f}") for k, v in sorted(facts.final_metrics.items()) if k not in ("learning_rate", "epoch_time_s")]
    lines += table(rows, ("metric", "value"))
    if facts.plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}](get-artifact?path={quote(p)}&run_uuid={facts.run_id})" for p in facts.plots]
    lines += ["", "## Commands", "", "```bash", f"# reproduce\n{train_command(facts.overrides)}"]
    lines += [f"# resume (if stopped)\nexpkit resume {shlex.quote(facts.output_dir)}"]
    lines += [f"# predict on raw inputs\nexpkit predict {facts.run_id} --input FILE --output preds.csv", "```"]
    if facts.models:
        lines += ["", "## Models", ""]
        lines += [f"- {name}: `{uri}`" for name, uri in facts.models.items()]
    return "\n".join(lines) + "\n"
