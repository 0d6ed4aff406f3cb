"""Mutation check: plant known bugs one at a time in a throwaway copy of the repo and run the tests that must catch them.

    python tests/mutations.py                 # every mutation
    python tests/mutations.py shuffle-seed-only optimizer-case-sensitive
    python tests/mutations.py --list

Each mutation replaces one exact piece of source text (it must occur exactly once, so a refactor that removes it is
reported instead of silently testing nothing), then runs its tests in the copy with PYTHONPATH pointing there.
A mutation is "caught" when pytest reports failing tests (exit code 1). The script exits 0 only if every mutation is caught.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".ci-venv", ".venv", "venv", "outputs", "multirun", "mlruns", "mlartifacts", "mlflow.db*", "__pycache__", ".*_cache",
    ".hypothesis",
)  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    file: str
    original: str
    mutant: str
    tests: tuple[str, ...]


# What each k-fold fold trains on: its training rows and validation rows are disjoint and together the training data.
KFOLD_GUARDS = (
    "tests/test_selection_guards.py::test_each_fold_trains_on_exactly_the_rows_it_does_not_validate_on",
    "tests/test_selection_guards.py::test_folds_of_named_arrays_partition_the_training_rows",
    "tests/test_selection_guards.py::test_kfold_protocol_trains_each_fold_on_its_own_training_rows",
)

MUTATIONS = (
    Mutation(
        "ranking-flipped",
        "`runs` ranking direction flipped (worst run first)",
        "expkit/tracking/ranking.py",
        'reverse=mode == "max"',
        'reverse=mode != "max"',
        (
            "tests/test_tracking_units.py::test_rank_orders_best_first_in_both_directions",
            "tests/test_tracking_units.py::test_compare_and_best_print_the_best_run_first",
        ),
    ),
    Mutation(
        "keras-extras-loaded",
        "TensorFlow is imported without hiding Keras' unused scikit-learn, pandas and pyplot extras",
        "expkit/backend.py",
        "    with hidden(), ctrl_c_after():\n        tensorflow = _import_with_quiet_stderr()",
        "    with ctrl_c_after():\n        tensorflow = _import_with_quiet_stderr()",
        ("tests/test_feeding.py::test_importing_tensorflow_hides_only_the_onednn_notice_and_skips_kerass_extras",),
    ),
    Mutation(
        "dataset-race-fails-run",
        "a run whose dataset or table view another job inserted first fails instead of linking or updating it (no retry)",
        "expkit/tracking/writes.py",
        "            if attempt == attempts - 1 or not any(marker in str(exc) for marker in DUPLICATE_ROW):",
        "            if True:",
        (
            "tests/test_tracking_units.py::test_parallel_runs_logging_one_dataset_all_record_it",
            "tests/test_tracking_units.py::test_parallel_runs_of_a_new_experiment_all_add_their_table_columns",
        ),
    ),
    Mutation(
        "import-not-frozen",
        "the objects TensorFlow's import leaves are not frozen, so every garbage collection walks them again",
        "expkit/backend.py",
        "    gc.freeze()\n",
        "",
        ("tests/test_feeding.py::test_importing_tensorflow_hides_only_the_onednn_notice_and_skips_kerass_extras",),
    ),
    Mutation(
        "tf-data-autotuned",
        "the array pipelines leave tf.data's autotuning on (its model thread stalls each epoch's end)",
        "expkit/training/feeding.py",
        "    options.autotune.enabled = False\n",
        "",
        ("tests/test_feeding.py::test_both_pipelines_run_with_fixed_parallelism_and_no_autotuning",),
    ),
    Mutation(
        "standardize-own-mean",
        "standardize centres each split on its own mean instead of the training mean",
        "expkit/data/preprocess.py",
        "        return ((a - mean) / std).astype(np.float32)",
        "        return ((a - a.astype(np.float64).mean(axis=0)) / std).astype(np.float32)",
        ("tests/test_data.py::test_standardize_uses_training_statistics_only",),
    ),
    Mutation(
        "shuffle-seed-only",
        "training/batches.py shuffles with the seed alone, dropping the epoch (the same order every epoch)",
        "expkit/training/batches.py",
        "np.random.default_rng([self.seed, self.epoch])",
        "np.random.default_rng(self.seed)",
        (
            "tests/test_training_units.py::test_shuffle_order_changes_every_epoch_and_keeps_pairs",
            "tests/test_training_units.py::test_fit_sees_a_new_order_every_epoch_and_a_resumed_fit_the_same_orders",
        ),
    ),
    Mutation(
        "optimizer-case-sensitive",
        "optimizers resolved case-sensitively at run time (`optimizer.type=rmsprop` passes validation, then fails)",
        "expkit/training/compile.py",
        'OPTIMIZERS = Registry("optimizer", _optimizers, ignore_case=True)',
        'OPTIMIZERS = Registry("optimizer", _optimizers)',
        ("tests/test_training_units.py::test_optimizer_names_resolve_case_insensitively_at_run_time",),
    ),
    Mutation(
        "backfill-noop",
        "TrackedRun.backfill does nothing (epochs saved before a crash but never logged stay missing in MLflow)",
        "expkit/tracking/run.py",
        '"""On resume: log the saved epochs MLflow missed (a crash between state save and logging)."""\n',
        '"""On resume: log the saved epochs MLflow missed (a crash between state save and logging)."""\n        return\n',
        (
            "tests/test_tracking_units.py::test_tracked_run_tags_long_params_and_backfill",
            "tests/test_reliability.py::test_kill_9_between_state_save_and_mlflow_log_then_resume_backfills_the_epoch",
        ),
    ),
    Mutation(
        "confusion-transposed",
        "the test confusion matrix counts (predicted, true) instead of (true, predicted): rows and columns swapped",
        "expkit/training/confusion.py",
        "ops.matmul(ops.transpose(ops.one_hot(true, n)), ops.one_hot(predicted, n))",
        "ops.matmul(ops.transpose(ops.one_hot(predicted, n)), ops.one_hot(true, n))",
        ("tests/test_training_units.py::test_confusion_tally_matches_the_predictions",),
    ),
    Mutation(
        "idle-workers-left",
        "a finished joblib sweep leaves its idle workers to tear TensorFlow down with the sweep's output open",
        "expkit/cli.py",
        "            executor.shutdown(wait=True, kill_workers=True)",
        "            pass",
        ("tests/test_cli.py::test_stop_idle_workers_kills_joblib_workers_without_their_teardown",),
    ),
    Mutation(
        "joblib-parent-not-awaited",
        "a joblib job does not wait for the parent run's id the launching process publishes: its run is not in the tree",
        "expkit/tracking/parent.py",
        "        return await_parent(Path(given.parent_file))",
        "        return None",
        ("tests/test_runs.py::test_joblib_sweep_makes_a_parent_with_children",),
    ),
    Mutation(
        "outage-records-dropped",
        "epochs measured while the tracking server is unreachable are dropped instead of kept for its return",
        "expkit/tracking/outage.py",
        "            if server and not reachable(self.uri):\n                self._down()\n",
        "            if server and not reachable(self.uri):\n                self._down()\n                self.pending.clear()\n",
        ("tests/test_reliability.py::test_server_killed_in_epoch_2_and_back_30_s_later_the_run_finishes_complete",),
    ),
    Mutation(
        "text-vocabulary-from-all-splits",
        "text_dir adapts its TextVectorization on the validation and test documents too, not on the training part only",
        "expkit/data/text_dir.py",
        'layer = text_vectorizer(options.vectorize, x_train[name], name="vectorize")',
        "layer = text_vectorizer(options.vectorize, [*x_train[name], *(t for o in others if o is not None for t in o[name])], "
        'name="vectorize")',
        ("tests/test_text_dir.py::test_vocabulary_is_fitted_on_the_training_part_only",),
    ),
    Mutation(
        "kfold-validation-in-training",
        "k-fold: fold k trains on all the training rows, its own validation rows included",
        "expkit/data/pipeline.py",
        "rest = np.r_[0:start, stop:n_train]",
        "rest = np.arange(n_train)",
        KFOLD_GUARDS,
    ),
    Mutation(
        "kfold-fold-edge-leaks",
        "k-fold: an off-by-one at the fold's end puts fold k's last validation row into its training part too",
        "expkit/data/pipeline.py",
        "rest = np.r_[0:start, stop:n_train]",
        "rest = np.r_[0:start, stop - 1:n_train]",
        KFOLD_GUARDS,
    ),
    Mutation(
        "ensemble-weights-fit-on-test",
        "`expkit ensemble --fit-weights` fits the weights on the test predictions and labels",
        "expkit/stored/ensemble.py",
        "        chosen = fit_weights(val, splits.y_val, classifier)",
        "        chosen = fit_weights(test, splits.y_test, classifier)",
        ("tests/test_selection_guards.py::test_ensemble_weights_follow_the_validation_split_only",),
    ),
    Mutation(
        "ensemble-weights-fit-on-train",
        "`expkit ensemble --fit-weights` fits the weights on the training predictions and labels",
        "expkit/stored/ensemble.py",
        "        val = [np.asarray(model.predict(splits.x_val, batch_size=256, verbose=0)) for model in models]\n"
        "        chosen = fit_weights(val, splits.y_val, classifier)",
        "        val = [np.asarray(model.predict(splits.x_train, batch_size=256, verbose=0)) for model in models]\n"
        "        chosen = fit_weights(val, splits.y_train, classifier)",
        ("tests/test_selection_guards.py::test_ensemble_weights_follow_the_validation_split_only",),
    ),
    Mutation(
        "retrain-one-epoch-fewer",
        "retrain trains the 0-based best epoch index as a count: one epoch fewer than the best epoch",
        "expkit/experiment/protocols.py",
        "    best_epochs += 1\n",
        "",
        ("tests/test_selection_guards.py::test_retrain_trains_exactly_the_best_epoch_count",),
    ),
    Mutation(
        "retrain-one-epoch-more",
        "retrain trains the fresh model one epoch more than the best epoch",
        "expkit/experiment/protocols.py",
        "test=False, epochs=best_epochs",
        "test=False, epochs=best_epochs + 1",
        ("tests/test_selection_guards.py::test_retrain_trains_exactly_the_best_epoch_count",),
    ),
)


def run_mutation(mutation: Mutation, *, timeout: float) -> tuple[str, float, str]:
    """('caught' | 'NOT CAUGHT' | 'error'), seconds, pytest's last lines."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=COPY_IGNORE)
        target = copy / mutation.file
        source = target.read_text()
        if source.count(mutation.original) != 1:
            return "error", 0.0, f"{mutation.file} holds {source.count(mutation.original)} copies of the text to mutate (expected 1)"
        target.write_text(source.replace(mutation.original, mutation.mutant))
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *mutation.tests]
        started = time.monotonic()
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
    lines = done.stdout.splitlines()
    tail = "\n".join(line for line in lines if line.startswith(("FAILED", "ERROR")) or " passed" in line or " failed" in line)
    verdict = {0: "NOT CAUGHT", 1: "caught"}.get(done.returncode, "error")
    return verdict, seconds, tail or done.stdout[-2000:] + done.stderr[-2000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per mutation")
    args = parser.parse_args()
    known = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name}: {m.description}\n  {m.file}: {m.original.strip()!r} -> {m.mutant.strip()!r}")
            print("".join(f"  test: {t}\n" for t in m.tests), end="")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutation(s) {', '.join(unknown)}; known: {', '.join(known)}")
    results = []
    for mutation in [known[n] for n in args.names] if args.names else MUTATIONS:
        verdict, seconds, tail = run_mutation(mutation, timeout=args.timeout)
        results.append(verdict)
        print(f"{mutation.name}: {verdict} ({seconds:.0f} s) - {mutation.description}\n  " + tail.replace("\n", "\n  "), flush=True)
    return 0 if all(v == "caught" for v in results) else 1


if __name__ == "__main__":
    sys.exit(main())
