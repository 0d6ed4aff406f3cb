"""The whole benchmark suite: expkit side by side with hand-written Keras scripts. Writes benchmarks/RESULTS.md.

    python benchmarks/run_all.py              # everything, 3 repeats (2 for the sweep): about 20 minutes on 2 quiet cores
    python benchmarks/run_all.py --quick      # one repeat, fewer variants (about 6 minutes)
    python benchmarks/run_all.py --only overhead cli
    python benchmarks/run_all.py --smoke      # proves the code runs: one tiny pass, written to a temp folder, not results/

Every figure is a whole process (`python ...`), timed by this script and by `/usr/bin/time -v`
(CPU time, peak RSS). Variants are interleaved (A B A B ...), rotating the order each repeat,
so a busy machine slows every side alike; the table gives the median and the minimum. The raw
scripts live in benchmarks/raw/ and do what a notebook does: load the same files, build the same
model, fit with the same epochs and batch size, `verbose=0`, and evaluate on the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RAW = HERE / "raw"
SECTIONS = ("overhead", "phases", "cli", "sweep")
# A run's test metric line; a sweep job's is prefixed with its label ("[#0 model.units=16] test_accuracy: ...").
METRIC = re.compile(r"^(?:\[[^\]]*\] )?test_(accuracy|loss|mae)\s*:\s*([0-9.]+)", re.M)
# The raw scripts with expkit's speed settings (same batch size; steps_per_execution as expkit's default): the fair CPU baseline.
SAME_SETTINGS = ["--steps-per-execution=16"]
RAW_SAME = "raw Keras, steps_per_execution=16"
# Issue 29's targets.
TARGET_CPU, TARGET_WALL, TARGET_SWEEP, TARGET_IMDB_MB = 1.05, 1.0, 1.8, 1536

# (name, expkit arguments, raw script, what) for the runner-overhead comparison.
MODELS = [
    ("mnist_dense", ["+experiment=mnist_dense"], "mnist_dense.py", "W ch. 2 MLP, 5 epochs, batch 128"),
    (
        "mnist_convnet",
        ["--config-dir", str(HERE / "conf"), "+experiment=bench_mnist_convnet"],
        "mnist_convnet.py",
        "W ch. 4 convnet, 1 epoch, batch 64",
    ),
    ("imdb_dense", ["+experiment=imdb_dense"], "imdb_dense.py", "W ch. 3 MLP, 25,000 x 10,000 multi-hot, 4 epochs, batch 256"),
]
# Speed settings, each beside the default, on the models they are meant for.
SPEED = {
    "mnist_dense": [("jit_compile", ["trainer.jit_compile=true"]), ("steps_per_execution=1", ["trainer.steps_per_execution=1"])],
    "mnist_convnet": [("jit_compile", ["trainer.jit_compile=true"])],
}
# The measurements before this work (tracking on / off), for "what moved".
BEFORE = {"mnist_dense": {"on": 34.6, "off": 32.2, "raw": 19.2}, "mnist_convnet": {"off": 47.5, "raw": 18.9}}
BOOK_IMDB_PEAK_GB = 8.2


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run one whole process under /usr/bin/time -v; wall time, CPU, peak RSS, first-step time, test metric."""
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "first_step"
        full = ["/usr/bin/time", "-v", sys.executable, str(HERE / "first_step.py"), str(first), *cmd]
        started = time.time()
        done = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.time() - started
        first_step = float(first.read_text()) - started if first.exists() else None
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    sweep = re.search(r"(\d+) job\(s\), (\d+) finished", done.stderr)
    if sweep and sweep.group(1) != sweep.group(2):  # a sweep that times failing jobs measures nothing
        raise SystemExit(f"sweep jobs failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    grab = lambda label: float(re.search(rf"{label}: ([0-9.]+)", done.stderr).group(1))  # noqa: E731
    found = [(m.group(1), float(m.group(2))) for m in METRIC.finditer(done.stdout)]
    metrics = dict(found)
    return {
        "wall": wall,
        "cpu": grab(r"User time \(seconds\)") + grab(r"System time \(seconds\)"),
        "sys": grab(r"System time \(seconds\)"),
        "rss_mb": grab(r"Maximum resident set size \(kbytes\)") / 1024,
        "first_step": first_step,
        "accuracy": metrics.get("accuracy"),
        "accuracies": [v for k, v in found if k == "accuracy"],  # every job's, for a sweep
    }


def interleave(variants: dict[str, tuple[list[str], Path]], env: dict[str, str], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Run every variant `repeats` times, A B C A B C ..., rotating the starting variant each round."""
    names = list(variants)
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            cmd, cwd = variants[name]
            out[name].append(measure(cmd, env, cwd))
            print(f"  {name}: {out[name][-1]['wall']:.1f} s (load {load()})", flush=True)
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall"] for r in runs]
    firsts = [r["first_step"] for r in runs if r["first_step"] is not None]
    accs = [r["accuracy"] for r in runs if r["accuracy"] is not None]
    return {
        "median": statistics.median(walls),
        "min": min(walls),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "sys": statistics.median(r["sys"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "first_step": statistics.median(firsts) if firsts else None,
        "accuracy": statistics.median(accs) if accs else None,
        "accuracies": runs[0].get("accuracies", []),
        "n": len(runs),
        "walls": [round(w, 3) for w in walls],  # in round order: run r of every variant ran in the same round
    }


def paired_ratio(variant: dict[str, Any], raw: dict[str, Any]) -> float | None:
    """The median over rounds of (this variant's wall time / the raw script's in the same round): drift-robust."""
    a, b = variant.get("walls"), raw.get("walls")
    if not a or not b or len(a) != len(b):
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def write_imdb(path: Path, n: int = 25_000, seed: int = 0) -> None:
    """Real-size IMDB in Keras' layout, with labels the words predict (so test accuracy means something)."""
    sys.path.insert(0, str(HERE))
    import numpy as np
    from imdb_memory import write_real_size_imdb

    write_real_size_imdb(path, n=n, seed=seed)
    with np.load(path, allow_pickle=True) as data:
        arrays = {k: data[k] for k in data.files}
    for part in ("train", "test"):
        # Positive when the review uses more words of rank = 0 mod 3 than 1 mod 3: learnable from multi-hot input.
        x = arrays[f"x_{part}"]
        arrays[f"y_{part}"] = np.array([int(np.sum(np.asarray(s) % 3 == 0) > np.sum(np.asarray(s) % 3 == 1)) for s in x])
    np.savez(path, **arrays)


def expkit_cmd(args: list[str]) -> list[str]:
    return ["-m", "expkit.cli", "train", *args, "trainer.verbose=0"]


def overhead(env: dict[str, str], work: Path, repeats: int, quick: bool, models: list[str], smoke: bool = False) -> dict[str, Any]:
    results = {}
    for name, args, script, what in [m for m in MODELS if m[0] in models]:
        print(f"overhead: {name}", flush=True)
        variants = {
            "raw Keras": ([str(RAW / script)], work),
            RAW_SAME: ([str(RAW / script), *SAME_SETTINGS], work),
            "expkit, tracking on": (expkit_cmd(args), work),
            "expkit, tracking=none": (expkit_cmd([*args, "tracking=none"]), work),
        }
        for label, extra in SPEED.get(name, [])[: 0 if smoke else 1 if quick else None]:
            variants[f"expkit, {label}"] = (expkit_cmd([*args, *extra]), work)
        runs = interleave(variants, env, repeats)
        results[name] = {"what": what, "variants": {k: summary(v) for k, v in runs.items()}, "load_after": load()}
        save({"overhead": {name: results[name]}})  # kept even if a later model is interrupted
    return results


def phases(env: dict[str, str], work: Path) -> dict[str, Any]:
    print("phases: mnist_dense", flush=True)
    cmd = [sys.executable, str(HERE / "profile_run.py"), "+experiment=mnist_dense", "trainer.verbose=0"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"profile failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout[done.stdout.index("{\n") :])
    out["load_after"] = load()
    return out


def fill_store(uri: str, runs: int = 200) -> None:
    """A store holding `runs` finished runs with params and metrics, written with MlflowClient directly."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("filled")
    now = int(time.time() * 1000)
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"run {i}")
        params = [Param(f"p{j}", str(i * j)) for j in range(20)]
        metrics = [Metric(k, 1.0 / (i + 1), now, e) for k in ("loss", "val_loss", "accuracy") for e in range(5)]
        metrics += [Metric("test_accuracy", 0.9 + i / 10_000, now, 0), Metric("test_loss", 0.1, now, 0)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)


def cli(env: dict[str, str], work: Path, repeats: int) -> dict[str, Any]:
    print("cli latency", flush=True)
    store = work / "store200"
    store.mkdir(exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    fill_store(uri)
    cases = {
        "expkit --help": (["--help"], 0.3),
        "expkit show +experiment=mnist_dense": (["show", "+experiment=mnist_dense"], 1.5),
        "expkit validate +experiment=mnist_dense": (["validate", "+experiment=mnist_dense"], 1.5),
        "expkit list": (["list"], 1.5),
        "expkit runs list (200-run store)": (["runs", "list", "--uri", uri, "--limit", "200"], 2.5),
    }
    out = {}
    for name, (args, target) in cases.items():
        times, cpu = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            cmd = ["/usr/bin/time", "-f", "CPU %U %S", sys.executable, "-m", "expkit.cli", *args]
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
            user, system = re.findall(r"CPU ([0-9.]+) ([0-9.]+)", done.stderr)[-1]
            cpu.append(float(user) + float(system))
        out[name] = {"median": statistics.median(times), "min": min(times), "cpu": statistics.median(cpu), "target": target}
    out["load_after"] = load()  # type: ignore[assignment]
    return out


def sweep(env: dict[str, str], work: Path, repeats: int, smoke: bool = False) -> dict[str, Any]:
    print("sweep throughput", flush=True)
    # The book's 10,000-image validation holdout: a sweep chooses on validation data, so jobs without it fail.
    trials = ["+experiment=mnist_dense", "dataset.validation.holdout=10000", "trainer.epochs=20", "model.units=16,32,64,128"]
    if smoke:
        trials = ["+experiment=mnist_dense", "dataset.validation.holdout=10000", "trainer.epochs=1", "model.units=16,32"]
    base = ["-m", "expkit.cli", "train", "-m", *trials, "trainer.verbose=0"]
    variants = {
        "sequential (basic launcher)": (base, work),
        "joblib n_jobs=2": ([*base, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], work),
    }
    runs = interleave(variants, env, repeats)
    out: dict[str, Any] = {k: summary(v) for k, v in runs.items()}
    out["load_after"] = load()
    out["trials"] = " ".join(trials)
    return out


RESULTS_JSON = HERE / "results" / "run_all.json"


def save(results: dict[str, Any]) -> dict[str, Any]:
    """Merge `results` into results/run_all.json (per section, and per model for the overhead); returns the merged figures.

    A partial run (--only, --models) keeps the figures of the sections and models it did not run.
    """
    path = RESULTS_JSON
    path.parent.mkdir(exist_ok=True)
    merged = json.loads(path.read_text()) if path.exists() else {}
    for section, figures in results.items():
        merged[section] = {**merged.get(section, {}), **figures} if section == "overhead" else figures
    path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def versions() -> str:
    packages = "('tensorflow-cpu', 'keras', 'mlflow', 'hydra-core', 'numpy')"
    code = f"import importlib.metadata as m; print(' '.join(f'{{p}} {{m.version(p)}}' for p in {packages}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "?")
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0")
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) / 1024**2:.0f} GB RAM, Python {platform.python_version()}"


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def verdict(value: float | None, limit: float, at_most: bool = True) -> str:
    if value is None:
        return "not measured"
    return "**met**" if (value <= limit if at_most else value >= limit) else "**not met**"


def targets(results: dict[str, Any]) -> list[str]:
    """Issue 29's targets, one row each, with the figure, the limit, the test metric beside it and met / not met."""
    rows = []
    over = results.get("overhead", {})
    for name, res in over.items():
        v = res["variants"]
        ours, raw, same = v.get("expkit, tracking on"), v.get("raw Keras"), v.get(RAW_SAME)
        if ours is None:
            continue
        acc = f"expkit {fmt(ours['accuracy'], 4)}"
        cpu = ours["cpu"] / same["cpu"] if same else None
        cpu_figure = f"{cpu:.2f}x ({ours['cpu']:.1f} s / {same['cpu']:.1f} s)" if same and cpu is not None else "–"
        rows.append(
            f"| CPU (user + sys) of `expkit train`, tracking on, over the raw script with steps_per_execution=16 | {name}"
            f" | {cpu_figure} | ≤ {TARGET_CPU}x"
            f" | {acc}, raw same settings {fmt(same and same['accuracy'], 4)} | {verdict(cpu, TARGET_CPU)} |"
        )
        wall = ours["median"] / raw["median"] if raw else None
        paired = paired_ratio(ours, raw) if raw else None
        rows.append(
            f"| wall time over the plain raw script | {name} | {f'{wall:.2f}x (paired {fmt(paired, 2)}x)' if wall else '–'}"
            f" | ≤ {TARGET_WALL}x"
            f" | {acc}, raw {fmt(raw and raw['accuracy'], 4)} | {verdict(wall, TARGET_WALL)} |"
        )
    imdb = over.get("imdb_dense", {}).get("variants", {}).get("expkit, tracking on")
    rows.append(
        f"| peak RSS, real-size imdb_dense, tracking on | imdb_dense | {fmt(imdb and imdb['rss_mb'], 0)} MB | ≤ {TARGET_IMDB_MB} MB"
        f" | expkit {fmt(imdb and imdb['accuracy'], 4)} | {verdict(imdb and imdb['rss_mb'], TARGET_IMDB_MB)} |"
    )
    alone = HERE / "results" / "imdb_memory.json"
    if alone.exists():  # benchmarks/imdb_memory.py, run on its own (often later than the tables)
        m = json.loads(alone.read_text())
        acc = m.get("test_metrics", {}).get("test_accuracy")
        rows.append(
            f"| peak RSS, real-size imdb_dense, `imdb_memory.py` ({m.get('date', '?')}; tracking on, no model logging, random labels)"
            f" | imdb_dense | {m['peak_rss_mb']} MB | ≤ {TARGET_IMDB_MB} MB | expkit {fmt(acc, 4)} (chance: random labels)"
            f" | {verdict(m['peak_rss_mb'], TARGET_IMDB_MB)} |"
        )
    sw = results.get("sweep")
    if sw:
        seq, par = sw["sequential (basic launcher)"], sw["joblib n_jobs=2"]
        speedup = seq["median"] / par["median"]
        accs = seq.get("accuracies", [])
        same = sorted(accs) == sorted(par.get("accuracies", []))
        trials = ", ".join(f"{a:.4f}" for a in accs) + (" (the same in both launchers)" if same else " (DIFFER between launchers)")
        rows.append(
            f"| sweep, joblib n_jobs=2 over sequential | mnist_dense, {len(accs) or 'the'} trials | {speedup:.2f}x"
            f" (paired {fmt(paired_ratio(seq, par), 2)}x) | ≥ {TARGET_SWEEP}x"
            f" | {f'trials {trials}' if accs else 'not recorded in this run'}"
            f" | {verdict(speedup, TARGET_SWEEP, at_most=False)} |"
        )
    else:
        rows.append(f"| sweep, joblib n_jobs=2 over sequential | mnist_dense | – | ≥ {TARGET_SWEEP}x | – | not measured |")
    rows.append(
        "| GPU: mnist_convnet and imdb_dense, expkit and raw, float32 and mixed_float16 (`benchmarks/gpu.sh`) | – | – | – | – |"
        " not measured: no GPU was available (see below) |"
    )
    return [
        "## Targets (issue 29)",
        "",
        "Each target with its figure and the test metric of the same runs. The CPU target compares with the raw script given"
        " expkit's speed setting (`steps_per_execution=16` in `compile`, same batch size); the wall target with the plain raw script."
        " The rows built from the tables below come from the runs that made those tables (see the date above).",
        "",
        "| target | work | figure | limit | test accuracy | |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def report(results: dict[str, Any], args: argparse.Namespace, started: float, load_before: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python benchmarks/run_all.py{' --smoke' if args.smoke else ' --quick' if args.quick else ''}`"
        f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (
            " (report rewritten from `results/run_all.json`, whose sections may come from separate runs)."
            if args.report_only
            else f" in {(time.time() - started) / 60:.1f} min."
        ),
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        f"- Load average (1/5/15 min) at the start: {load_before}; at the end of each section: see the tables.",
        f"- Repeats: {args.repeats} per variant, interleaved; wall times are whole processes; ratio = expkit median / raw median.",
        "",
    ]
    if float(load_before.split(" / ")[0]) > 2 * (os.cpu_count() or 1):
        lines += [
            f"**The machine was busy** (load average {load_before} on {os.cpu_count()} cores): each process got a small, varying"
            " share of a core, so wall times and their ratios mostly measure the other processes. CPU seconds are the"
            " comparable figure here; re-run on a quiet machine for wall-time ratios.",
            "",
        ]
    lines += targets(results)
    if "overhead" in results:
        lines += [
            "## Runner overhead against raw Keras",
            "",
            "Target: expkit (tracking on, defaults) at most 1.05x the raw script's wall time; time to the first training step"
            " at most 1.10x. `first step` is seconds from process start to the end of the first `fit()` batch.",
            "",
            "CPU is user + system seconds of the whole process (median): on a busy machine it is the figure least"
            " distorted by other processes, so its ratio is given too. `paired` is the median, over rounds, of the"
            " variant's wall time over the raw script's in the same round: a slow spell of the machine hits both.",
            "",
            "| model | variant | median s | min s | ratio | paired | first step s | ratio | CPU s (sys) | CPU ratio"
            " | peak RSS MB | test acc |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, res in results["overhead"].items():
            raw = res["variants"]["raw Keras"]
            for variant, s in res["variants"].items():
                ratio = s["median"] / raw["median"]
                first = s["first_step"] / raw["first_step"] if s["first_step"] and raw["first_step"] else None
                lines.append(
                    f"| {name} | {variant} | {s['median']:.1f} | {s['min']:.1f} | {ratio:.2f}x | {fmt(paired_ratio(s, raw), 2)}x"
                    f" | {fmt(s['first_step'])} | {fmt(first, 2)}x"
                    f" | {s['cpu']:.1f} ({s['sys']:.1f}) | {s['cpu'] / raw['cpu']:.2f}x | {s['rss_mb']:.0f} | {fmt(s['accuracy'], 4)} |"
                )
            lines.append(f"| {name} | *load after* | {res['load_after']} | | | | | | | | | |")
        lines += ["", "Models: " + "; ".join(f"{n}: {r['what']}" for n, r in results["overhead"].items()) + ".", ""]
        if "imdb_dense" in results["overhead"]:
            v = results["overhead"]["imdb_dense"]["variants"]
            lines += [
                "## Memory",
                "",
                f"Peak RSS of a real-size imdb_dense run (25,000 x 10,000 multi-hot, tracking on): "
                f"**{v['expkit, tracking on']['rss_mb'] / 1024:.2f} GB**, against {v['raw Keras']['rss_mb'] / 1024:.2f} GB for the book's"
                f" listing (float64 `vectorize_sequences`) here and {BOOK_IMDB_PEAK_GB} GB measured for it in the issue.",
                "",
            ]
    if "phases" in results:
        p = results["phases"]
        lines += [
            "## Per-phase profile of one run",
            "",
            f"`python benchmarks/profile_run.py +experiment=mnist_dense trainer.verbose=0`: one in-process run with timers around"
            f" each phase (TF and MLflow are imported first so their classes can be wrapped, so the run is set up in this"
            f" process; in a normal run a separate process creates it while TensorFlow is imported, and MLflow's import"
            f" and the warm-up happen in threads during the fit). Nested rows (the tracking steps inside `all results after fit`) are"
            f" also counted in their parent row. Whole run {p['wall_s']:.1f} s; first training step at"
            f" {p['marks'].get('first training step done (s since start)', 0):.1f} s; load after: {p['load_after']}.",
            "",
            "| phase | seconds | calls |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {k} | {v['s']:.3f} | {v['calls']} |" for k, v in p["phases"].items()]
        lines.append("")
    if "cli" in results:
        c = dict(results["cli"])
        after = c.pop("load_after")
        lines += [
            "## CLI latency",
            "",
            "CPU is user + system seconds (median); on a busy machine it bounds what the wall time would be on an idle one.",
            "",
            "| command | median s | min s | CPU s | target s | |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{k}` | {v['median']:.2f} | {v['min']:.2f} | {fmt(v.get('cpu'), 2)} | {v['target']} |"
            f" {'ok' if v['median'] <= v['target'] else 'over'} |"
            for k, v in c.items()
        ]
        lines += ["", f"Load after: {after}.", ""]
    if "sweep" in results:
        s = dict(results["sweep"])
        after, trials = s.pop("load_after"), s.pop("trials")
        seq, par = s["sequential (basic launcher)"], s["joblib n_jobs=2"]
        lines += [
            "## Sweep throughput",
            "",
            f"4 trials, tracking on, one whole `expkit train -m {trials} trainer.verbose=0` process per launcher.",
            "",
            "| launcher | median s | min s | CPU s |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {k} | {v['median']:.1f} | {v['min']:.1f} | {v['cpu']:.0f} |" for k, v in s.items()]
        paired = paired_ratio(seq, par)  # per round: sequential wall over joblib wall
        lines += [
            "",
            f"Speed-up: **{seq['median'] / par['median']:.2f}x** (ratio of medians; target at least 1.5x)"
            + (f", paired {paired:.2f}x (median over rounds of the same round's ratio)" if paired else "")
            + f", {seq['n']} rounds. Load after: {after}.",
            "",
        ]
    lines += [Path(HERE / "CHANGES.md").read_text()] if (HERE / "CHANGES.md").exists() else []
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer variants, no tracking-off sweep repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 3, 1 with --quick)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--models", nargs="+", choices=[m[0] for m in MODELS], default=[m[0] for m in MODELS])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--fresh", action="store_true", help="forget figures saved by earlier (partial) runs")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results/run_all.json")
    parser.add_argument(
        "--smoke", action="store_true", help="prove the code runs: mnist_dense once, a 2-trial 1-epoch sweep; figures to a temp folder"
    )
    args = parser.parse_args()
    if args.smoke:
        global RESULTS_JSON
        smoke_dir = Path(tempfile.mkdtemp(prefix="run_all-smoke-"))
        RESULTS_JSON = smoke_dir / "run_all.json"
        args.out = smoke_dir / "RESULTS.md" if args.out == HERE / "RESULTS.md" else args.out
        args.quick, args.only, args.models = True, ["overhead", "sweep"], ["mnist_dense"]
    args.repeats = args.repeats or (1 if args.quick else 3)
    started, load_before = time.time(), load()
    if args.report_only:
        saved = save({})
        args.out.write_text(report(saved, args, started, saved.get("load_start", load_before)))
        return
    if args.fresh or (set(args.only) == set(SECTIONS) and len(args.models) == len(MODELS)):
        RESULTS_JSON.unlink(missing_ok=True)
    shared = Path(os.environ.get("EXPKIT_SHARED_DATA", REPO.parent / "shared" / "datasets"))
    with tempfile.TemporaryDirectory(prefix="expkit-bench-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        shutil.copy(shared / "mnist.npz", data / "mnist.npz")
        if "overhead" in args.only and "imdb_dense" in args.models:
            print("writing real-size imdb.npz", flush=True)
            write_imdb(data / "imdb.npz")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EXPKIT_", "HYDRA_"))}
        env.update(
            EXPKIT_DATA_DIR=str(data),
            EXPKIT_ROOT=str(work),
            PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        # The store exists already, as it does for anyone past their first run.
        subprocess.run(
            [sys.executable, "-c", f"import mlflow; mlflow.MlflowClient('sqlite:///{work}/mlflow.db').search_experiments()"], env=env
        )
        results: dict[str, Any] = {"load_start": load_before}
        if "overhead" in args.only:
            results["overhead"] = overhead(env, work, args.repeats, args.quick, args.models, args.smoke)
        if "phases" in args.only:
            results["phases"] = phases(env, work)
        if "cli" in args.only:
            results["cli"] = cli(env, work, 3 if args.quick else 5)
        if "sweep" in args.only:
            results["sweep"] = sweep(env, work, args.repeats, args.smoke)
    results = save(results)
    args.out.write_text(report(results, args, started, load_before))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
