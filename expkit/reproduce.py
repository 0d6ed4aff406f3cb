"""`expkit reproduce`: run book presets as tracked runs under one parent run, compare each with its band, write RESULTS.md.

A target in `experiments/targets.yaml` is all a preset needs to join: the preset name (the target's key unless
`preset:` says otherwise), the metric, the book's figure, the `accept` band, the data files it `needs` and whether it
is `quick` (part of the CI set). Each run is a plain `expkit train +experiment=PRESET seed=S ...` subprocess.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expkit.config.locate import PACKAGE_DIR
from expkit.errors import ExpkitError, suggestion
from expkit.reproduce_margin import Beats, apply_margins, band_text, check_references, with_compared
from expkit.reproduce_record import carried_over

EXPERIMENT = "reproduction"
BASE_SEED = 42
TAIL_LINES = 15


class Band(BaseModel):
    """The interval a result must land in; either end may be open."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g}–{self.max:g}"
        return f"≥ {self.min:g}" if self.min is not None else f"≤ {self.max:g}"


class Target(BaseModel):
    """One entry of targets.yaml. Keys not listed here (free-text notes) are kept and ignored."""

    model_config = ConfigDict(extra="allow")
    name: str = ""
    preset: str | None = None
    overrides: list[str] = []
    metric: str
    book: float | str | None = None
    accept: Band
    needs: list[str] = []
    quick: bool = False
    # at least this many seeds, whatever --repeats says (a claim about every seed needs several)
    repeats: int = Field(default=1, ge=1)
    # the mean must beat another target's mean by a margin (expkit/reproduce_margin.py)
    beats: Beats | None = None
    band: str | None = None  # how the band was chosen
    source: str | None = None
    data: str | None = None

    @property
    def preset_name(self) -> str:
        return self.preset or self.name


@dataclass
class Attempt:
    """One run of a target."""

    seed: int
    value: float | None = None
    run_id: str | None = None
    wall_s: float = 0.0
    error: str | None = None


@dataclass
class Result:
    target: Target
    attempts: list[Attempt] = field(default_factory=list)
    skipped: str | None = None  # "needs mnist.npz"
    margin_failure: str | None = None  # set by apply_margins when `beats` is not met

    @property
    def values(self) -> list[float]:
        return [a.value for a in self.attempts if a.value is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def verdict(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        errors = [a.error for a in self.attempts if a.error]
        if errors:
            return f"error: {errors[0]}"
        if self.margin_failure:
            return f"FAIL: {self.margin_failure}"
        return "pass" if self.mean is not None and self.target.accept.contains(self.mean) else "FAIL"

    @property
    def failed(self) -> bool:
        return not self.skipped and self.verdict != "pass"

    def result_text(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.4f}" + (f" ± {self.std:.4f} (n={len(self.values)})" if len(self.values) > 1 else "")

    def wall_text(self) -> str:
        walls = [a.wall_s for a in self.attempts]
        return f"{statistics.fmean(walls):.0f} s" + (f" × {len(walls)}" if len(walls) > 1 else "") if walls else "-"


# --------------------------------------------------------------------------- targets


def targets_file() -> Path:
    """experiments/targets.yaml of a source checkout, else the copy shipped inside the package."""
    for candidate in (PACKAGE_DIR.parent / "experiments" / "targets.yaml", PACKAGE_DIR / "experiments" / "targets.yaml"):
        if candidate.is_file():
            return candidate
    raise ExpkitError("experiments/targets.yaml not found", hint="pass --targets PATH")


def load_targets(path: Path) -> dict[str, Target]:
    """Every target in `path`, checked; a bad entry is an error naming it."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExpkitError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ExpkitError(f"{path} must map target names to entries")
    targets = {}
    for name, entry in raw.items():
        try:
            target = Target.model_validate({**(entry or {}), "name": str(name)})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ExpkitError(f"{path}: target {name}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if target.accept.min is None and target.accept.max is None:
            raise ExpkitError(f"{path}: target {name}: accept needs min, max or both")
        targets[str(name)] = target
    check_references(targets, path)
    return targets


def select_targets(targets: dict[str, Target], names: list[str], quick: bool) -> list[Target]:
    """The named targets (all, or the quick ones, when none is named)."""
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise ExpkitError(f"no reproduction target '{unknown[0]}'", hint=suggestion(unknown[0], targets, noun="targets"))
    chosen = [targets[n] for n in names] if names else list(targets.values())
    return with_compared([t for t in chosen if t.quick] if quick else chosen, targets)


def missing_data(target: Target, data_dir: Path | None) -> list[str]:
    """The entries of `needs` found neither in `data_dir` nor in the Keras cache."""
    keras_cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"
    places = [p for p in (data_dir, keras_cache) if p is not None]
    return [need for need in target.needs if not any((place / need).exists() for place in places)]


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


class ParentRun:
    """The "reproduction" parent run; children find it through the same variable sweeps use."""

    def __init__(self, uri: str, root: Path, command: str) -> None:
        import mlflow

        from expkit.tracking.store import ensure_experiment

        experiment_id = ensure_experiment(uri, EXPERIMENT, str(root / "mlartifacts"))
        self.client = mlflow.MlflowClient(uri)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        run = self.client.create_run(
            experiment_id, run_name=f"reproduction {stamp}", tags={"expkit.reproduce": "parent", "command": command}
        )
        self.run_id = run.info.run_id

    def record_child(self, attempt: Attempt, target: Target, repeat: int) -> None:
        if attempt.run_id:
            for key, value in {
                "mlflow.runName": f"{target.name} seed={attempt.seed}",
                "reproduce.target": target.name,
                "reproduce.repeat": str(repeat),
            }.items():
                self.client.set_tag(attempt.run_id, key, value)

    def finish(self, results: list[Result], report: Path | None, status: str) -> None:
        for result in results:
            self.client.set_tag(self.run_id, f"verdict.{result.target.name}", result.verdict[:250])
            if result.mean is not None:
                self.client.log_metric(self.run_id, f"{result.target.name}.mean", result.mean)
                self.client.log_metric(self.run_id, f"{result.target.name}.std", result.std)
        if report is not None and report.is_file():
            self.client.log_artifact(self.run_id, str(report))
        self.client.set_terminated(self.run_id, status)


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
    from expkit.tracking.store import PARENT_RUN_ENV, tracking_uri

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
    parent = ParentRun(uri, root, command) if uri else None
    if parent:
        env[PARENT_RUN_ENV] = parent.run_id
        print(f"reproduction parent run {parent.run_id} in {uri}", file=sys.stderr)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
    started = datetime.now(UTC)
    results: list[Result] = []
    status = "FAILED"
    try:
        todo = [(t, r) for t in selected for r in range(max(repeats, t.repeats))]
        done = 0
        for target in selected:
            result = Result(target)
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
                    parent.record_child(attempt, target, repeat)
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
            parent.finish(results, report, status)
    failed = [r for r in results if r.failed or (require_data and r.skipped)]
    for result in failed:
        print(f"reproduce: {result.target.name}: {result.verdict}" + _band_note(result), file=sys.stderr)
    return 1 if failed else 0


def _band_note(result: Result) -> str:
    if result.mean is None or result.skipped:
        return ""
    return f" ({result.target.metric} {result.mean:.4f}, band {result.target.accept})"


def default_results_path(targets: Path) -> Path:
    """RESULTS.md beside targets.yaml in a source checkout; in the current folder for an installed package."""
    return targets.with_name("RESULTS.md") if targets.parent != PACKAGE_DIR / "experiments" else Path.cwd() / "RESULTS.md"


# --------------------------------------------------------------------------- reporting

COLUMNS = ("preset", "metric", "book", "result", "band", "verdict", "wall time")


def rows(results: list[Result]) -> list[tuple[str, ...]]:
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


def render_table(results: list[Result]) -> str:
    """A plain-text table for the terminal."""
    body = rows(results)
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *(line(row) for row in body)])


def versions() -> dict[str, str]:
    from expkit import __version__

    found = {"python": platform.python_version(), "expkit": __version__}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "mlflow", "numpy", "hydra-core"):
        try:
            found.setdefault("tensorflow" if dist.startswith("tensorflow") else dist, metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}; load average at the end {load}"


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5)
        return done.stdout.strip() or "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def render_markdown(
    results: list[Result], *, command: str, started: datetime, data_dir: Path | None, interrupted: bool = False, previous: str | None = None
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
