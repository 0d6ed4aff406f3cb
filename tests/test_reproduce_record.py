"""RESULTS.md keeps what a reproduction did not rerun: `expkit reproduce TARGET` no longer wipes the other targets' record."""

from __future__ import annotations

from datetime import UTC, datetime

from expkit.reproduce_report import render_markdown
from expkit.reproduce_stats import Attempt, TargetResult
from expkit.reproduce_targets import Band, Target


def report(name: str, value: float, previous: str | None) -> str:
    result = TargetResult(Target(name=name, metric="test_accuracy", accept=Band(min=0.5)), [Attempt(42, value, run_id="abcdef0123")])
    return render_markdown([result], command=f"expkit reproduce {name}", started=datetime.now(UTC), data_dir=None, previous=previous)


def test_a_partial_reproduction_carries_the_other_targets_over() -> None:
    first = report("a", 0.61, None)
    assert "Earlier results" not in first
    second = report("b", 0.72, first)
    head, earlier = second.split("\n## Earlier results: `expkit reproduce a`, ")
    assert "| b | test_accuracy | - | 0.7200 |" in head and "| a |" not in head
    assert "| a | test_accuracy | - | 0.6100 | ≥ 0.5 | pass |" in earlier and "- **a** (`+experiment=a`" in earlier
    assert earlier.split("\n", 1)[0].endswith(" UTC, git " + head.split("; git ")[1].split("\n")[0])  # names its commit
    third = report("a", 0.63, second)  # a rerun replaces the carried row; b is carried in its own section
    head, earlier = third.split("\n## Earlier results: `expkit reproduce b`, ")
    assert "| a | test_accuracy | - | 0.6300 |" in head and "0.6100" not in third
    assert "| b | test_accuracy | - | 0.7200 |" in earlier and third.count("## Earlier results") == 1
    fourth = report("c", 0.9, third)  # two older sections, newest first, each target once
    assert fourth.index("`expkit reproduce a`") < fourth.index("`expkit reproduce b`")
    assert fourth.count("| a | test_accuracy") == 1 and fourth.count("| b | test_accuracy") == 1
    assert report("c", 0.9, "some other file\n| x | y |").count("Earlier") == 0  # not a RESULTS.md: nothing carried
