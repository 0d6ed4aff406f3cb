"""`expkit reproduce`: run book presets as tracked runs under one parent run, compare each with its band, write RESULTS.md.

A target in `experiments/targets.yaml` is all a preset needs to join: the preset name (the target's key unless
`preset:` says otherwise), the metric, the book's figure, the `accept` band, the data files it `needs` and whether it
is `quick` (part of the CI set). Each run is a plain `expkit train +experiment=PRESET seed=S ...` subprocess.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from expkit.config.locate import PACKAGE_DIR
from expkit.errors import ExpkitError
from expkit.reproduce_margin import apply_margins
from expkit.reproduce_report import render_markdown, render_table
from expkit.reproduce_stats import Attempt, TargetResult
from expkit.reproduce_targets import Target, load_targets, missing_data, select_targets, targets_file

if TYPE_CHECKING:
    from expkit.tracking.parent import ParentRun

EXPERIMENT = "reproduction"
BASE_SEED = 42
TAIL_LINES = 15


# --------------------------------------------------------------------------- running


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments: target names, and Hydra overrides (anything with `=`, or starting with + or ~)."""
    overrides = [a for a in args if "=" in a or a.startswith(("+", "~"))]
    return [a for a in args if a not in overrides], overrides


def base_seed(overrides: list[str]) -> tuple[int, list[str]]:
    """A `seed=N` override sets the first repeat's seed (the others follow it); it is not passed on twice."""
    seeds = [o for o in overrides if o.startswith("seed=")]
    if not seeds:
        return BASE_SEED, overrides
    try:
        return int(seeds[-1].split("=", 1)[1]), [o for o in overrides if o not in seeds]
    except ValueError:
        raise ExpkitError(f"seed must be an integer, got {seeds[-1]!r}", key="seed") from None


def train_command(target: Target, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "expkit.cli",
        "train",
        f"+experiment={target.preset_name}",
        f"seed={seed}",
        f"tracking.experiment_name={EXPERIMENT}",
        f"hydra.run.dir='{run_dir}'",
        *target.overrides,
        *overrides,
    ]


def read_metric(run_dir: Path, metric: str, uri: str | None) -> tuple[float | None, str | None]:
    """The run's value of `metric` (MLflow if the run was tracked, else metrics.json) and its run id."""
    import json

    run_id = (run_dir / "run_id").read_text().strip() if (run_dir / "run_id").is_file() else None
    if run_id and uri:
        import mlflow

        metrics = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
        if metric in metrics:
            return float(metrics[metric]), run_id
    summary = run_dir / "metrics.json"
    if summary.is_file():
        stored = json.loads(summary.read_text())
        value = stored.get("test", {}).get(metric, stored.get("final", {}).get(metric))
        if value is not None:
            return float(value), run_id
    return None, run_id


def run_once(
    target: Target, seed: int, run_dir: Path, overrides: list[str], env: dict[str, str], uri: str | None, timeout: float
) -> Attempt:
    """One `expkit train` subprocess; its output goes to run_dir/reproduce.log."""
    command = train_command(target, seed, run_dir, overrides)
    attempt = Attempt(seed)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f} s", -1
    attempt.wall_s = time.perf_counter() - started
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "reproduce.log").write_text(f"$ {shlex.join(command)}\n{output}")
    if code != 0:
        last = [line for line in output.strip().splitlines() if line.strip()][-TAIL_LINES:]
        print("\n".join(f"    | {line}" for line in last), file=sys.stderr)
        attempt.error = f"expkit train exited {code} (log: {run_dir / 'reproduce.log'})"
        return attempt
    attempt.value, attempt.run_id = read_metric(run_dir, target.metric, uri)
    if attempt.value is None or not math.isfinite(attempt.value):
        attempt.error = f"the run recorded no finite {target.metric}"
    return attempt


def open_parent(uri: str, root: Path, command: str) -> ParentRun:
    """The "reproduction" parent run; each `expkit train` child finds it through the variable sweeps use."""
    from expkit.tracking.parent import ParentRun
    from expkit.tracking.store import ensure_experiment

    experiment_id = ensure_experiment(uri, EXPERIMENT, str(root / "mlartifacts"))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    return ParentRun.create(uri, experiment_id, f"reproduction {stamp}", {"expkit.reproduce": "parent", "command": command})


def record_child(parent: ParentRun, attempt: Attempt, target: Target, repeat: int) -> None:
    """Name and tag the run an `expkit train` child created under `parent`."""
    if attempt.run_id:
        tags = {"mlflow.runName": f"{target.name} seed={attempt.seed}", "reproduce.target": target.name, "reproduce.repeat": str(repeat)}
        parent.tag(tags, attempt.run_id)


def finish_parent(parent: ParentRun, results: list[TargetResult], report: Path | None, status: str) -> None:
    """Each target's verdict (a tag) and mean and std (metrics), the report as an artifact; then the status."""
    for result in results:
        parent.tag({f"verdict.{result.target.name}": result.verdict[:250]})
        if result.mean is not None:
            parent.log_metrics({f"{result.target.name}.mean": result.mean, f"{result.target.name}.std": result.std})
    if report is not None and report.is_file():
        parent.log_artifact(report)
    parent.end(status)


def reproduce(
    args: list[str],
    *,
    data_dir: str | None,
    quick: bool,
    repeats: int,
    targets_path: str | None,
    results_path: str | None,
    require_data: bool,
    timeout: float,
) -> int:
    """Run the selected targets, print the table, write RESULTS.md; returns the exit code (1 if any target failed)."""
    from expkit.tracking.parent import SWEEP_ENV, Handoff
    from expkit.tracking.store import tracking_uri

    if repeats < 1:
        raise ExpkitError(f"--repeats must be at least 1, got {repeats}")
    names, overrides = split_args(args)
    seed0, overrides = base_seed(overrides)
    path = Path(targets_path) if targets_path else targets_file()
    selected = select_targets(load_targets(path), names, quick)
    if not selected:
        raise ExpkitError("no targets selected", hint="mark targets `quick: true` in targets.yaml, or name them")
    raw_dir = data_dir or os.environ.get("EXPKIT_DATA_DIR")
    data = Path(raw_dir).expanduser().resolve() if raw_dir else None
    if data is not None and not data.is_dir():
        raise ExpkitError(
            f"data folder {raw_dir} does not exist", key="--data-dir", hint="the folder holding mnist.npz, boston_housing.npz, ..."
        )
    root = Path(os.environ.get("EXPKIT_ROOT") or os.getcwd()).resolve()
    uri_override = next((o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri=")), None)
    tracked = not any(o in ("tracking=none", "tracking.enabled=false", "tracking.enabled=False") for o in overrides)
    uri = tracking_uri(uri_override, str(root)) if tracked else None
    command = shlex.join(["expkit", "reproduce", *sys.argv[2:]]) if len(sys.argv) > 1 else "expkit reproduce"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if data is not None:
        env["EXPKIT_DATA_DIR"] = str(data)
    if os.environ.get("EXPKIT_ROOT"):
        env["EXPKIT_ROOT"] = str(root)
    env.pop("MLFLOW_RUN_ID", None)
    parent = open_parent(uri, root, command) if uri else None
    if parent:
        env[SWEEP_ENV] = Handoff(parent_run_id=parent.run_id).to_json()
        print(f"reproduction parent run {parent.run_id} in {uri}", file=sys.stderr)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
    started = datetime.now(UTC)
    results: list[TargetResult] = []
    status = "FAILED"
    try:
        todo = [(t, r) for t in selected for r in range(max(repeats, t.repeats))]
        done = 0
        for target in selected:
            result = TargetResult(target)
            results.append(result)
            missing = missing_data(target, data)
            if missing:
                result.skipped = f"needs {', '.join(missing)}"
                print(
                    f"{target.name}: skipped, needs {', '.join(missing)} (looked in {data or 'no --data-dir'} and the Keras cache)",
                    file=sys.stderr,
                )
                done += max(repeats, target.repeats)
                continue
            for repeat in range(max(repeats, target.repeats)):
                done += 1
                seed = seed0 + repeat
                run_dir = root / "outputs" / target.preset_name / "runs" / f"{stamp}_reproduce_{target.name}_{repeat}"
                print(f"[{done}/{len(todo)}] {target.name} seed={seed} ...", file=sys.stderr, flush=True)
                attempt = run_once(target, seed, run_dir, overrides, env, uri, timeout)
                result.attempts.append(attempt)
                shown = attempt.error or f"{target.metric} {attempt.value:.4f}"
                print(f"    {shown} ({attempt.wall_s:.0f} s)", file=sys.stderr, flush=True)
                if parent:
                    record_child(parent, attempt, target, repeat)
        apply_margins(results)
        status = "FAILED" if any(r.failed or (require_data and r.skipped) for r in results) else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        report = None
        if results:
            table = render_table(results)
            print(table)
            report = Path(results_path) if results_path else default_results_path(path)
            report.parent.mkdir(parents=True, exist_ok=True)
            previous = report.read_text() if report.is_file() else None
            killed = status == "KILLED"
            report.write_text(
                render_markdown(results, command=command, started=started, data_dir=data, interrupted=killed, previous=previous)
            )
            print(f"wrote {report}", file=sys.stderr)
        if parent:
            finish_parent(parent, results, report, status)
    failed = [r for r in results if r.failed or (require_data and r.skipped)]
    for result in failed:
        print(f"reproduce: {result.target.name}: {result.verdict}" + _band_note(result), file=sys.stderr)
    return 1 if failed else 0


def _band_note(result: TargetResult) -> str:
    if result.mean is None or result.skipped:
        return ""
    return f" ({result.target.metric} {result.mean:.4f}, band {result.target.accept})"


def default_results_path(targets: Path) -> Path:
    """RESULTS.md beside targets.yaml in a source checkout; in the current folder for an installed package."""
    return targets.with_name("RESULTS.md") if targets.parent != PACKAGE_DIR / "experiments" else Path.cwd() / "RESULTS.md"
