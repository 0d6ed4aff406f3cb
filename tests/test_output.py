"""What a person reads: terminal output of runs and sweeps, TensorBoard folders with HParams, and plot titles and ticks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import output_dirs, run_expkit
from tests.mnist_sweep import Sweep, mnist_sweep

KERAS_BAR = ("\x08", "\x1b[", "━")


@pytest.fixture(scope="module")
def sweep(shared_data: Path) -> Sweep:
    done = mnist_sweep(shared_data)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# ---------------------------------------------------------------- terminal


@pytest.mark.slow
def test_piped_training_writes_one_short_line_per_epoch(workdir: Path) -> None:
    epochs = 3
    done = run_expkit("train", f"trainer.epochs={epochs}", "tracking.log_model=false", cwd=workdir, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert not [c for c in KERAS_BAR if c in out], out[:500]
    assert len(out.encode()) <= 2048 * epochs, len(out)
    assert [line for line in out.splitlines() if line.startswith("Epoch ")] == [f"Epoch {i}/{epochs}" for i in range(1, epochs + 1)]
    # The final summary: metrics, run id, where to look, the output folder.
    (run_dir,) = output_dirs(workdir)
    run_id = (run_dir / "run_id").read_text().strip()
    assert "test_accuracy: " in out and f"MLflow run: {run_id}" in out
    assert f"#/experiments/1/runs/{run_id}" in out
    assert f"outputs: {run_dir}" in out


@pytest.mark.slow
def test_sweep_labels_each_job_and_ends_with_a_summary(sweep: Sweep) -> None:
    out = sweep.stdout
    assert not [c for c in KERAS_BAR if c in out], out[:500]
    for job, seed in ((0, 1), (1, 2)):
        label = f"[job {job}: seed={seed}]"
        assert [line.split(" - ")[0] for line in out.splitlines() if line.startswith(f"{label} epoch")] == [
            f"{label} epoch 1/2",
            f"{label} epoch 2/2",
        ]
        assert f"{label} test_accuracy: " in out
    parent = sweep.parent()
    summary = out[out.index("sweep summary:") :]
    assert f"2 job(s), parent run {parent.info.run_id}" in summary
    for child in sweep.children():
        row = next(line for line in summary.splitlines() if child.info.run_id in line)
        assert child.info.run_name[:30] in row and "FINISHED" in row
        assert f"{child.data.metrics['test_accuracy']:.4f}" in row


# ---------------------------------------------------------------- TensorBoard


@pytest.mark.slow
def test_tensorboard_folders_carry_run_name_id_and_hparams(sweep: Sweep) -> None:
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    seeds = set()
    for run in sweep.children():
        base = Path(run.data.tags["output_dir"]) / "tensorboard"
        (folder,) = [p for p in base.iterdir() if p.is_dir() and p.name.endswith(run.info.run_id[:8])]
        assert folder.name.startswith(run.info.run_name.split()[0])  # "seed=1..."
        events = EventAccumulator(str(folder))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content.values()]
        hparams = next(d.session_start_info.hparams for d in start if d.HasField("session_start_info"))
        seeds.add(hparams["seed"].number_value)
        assert hparams["optimizer.type"].string_value == "RMSprop"
        assert not [k for k in hparams if k.startswith("paths.")]
        tags = events.Tags()["tensors"]
        assert {"test_accuracy", "final/val_loss"} <= set(tags)
        (test_accuracy,) = events.Tensors("test_accuracy")
        value = float(tf.make_ndarray(test_accuracy.tensor_proto))
        assert value == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
        # Keras' own training curves sit below the same folder.
        assert (folder / "train").is_dir() and (folder / "validation").is_dir()
    assert seeds == {1.0, 2.0}


# ---------------------------------------------------------------- plots


def test_plot_titles_say_what_is_drawn_and_epochs_are_integers(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from expkit.tracking.plots import draw_curve, learning_curves

    history = {"loss": [1.0, 0.6, 0.5], "digit_loss": [0.7, 0.5, 0.4], "val_digit_loss": [0.8, 0.6, 0.5], "learning_rate": [1e-3] * 3}
    paths = learning_curves(history, tmp_path, run_name="seed=1 mnist_dense")
    titles = {p.stem: Image.open(p).text["Title"] for p in paths}
    assert titles == {
        "loss": "loss: training\nseed=1 mnist_dense",  # no validation recorded: the title does not claim any
        "digit_loss": "digit_loss: training and validation\nseed=1 mnist_dense",  # a multi-output model's head
    }
    fig, ax = plt.subplots()
    draw_curve(ax, {"loss": [1.0, 0.5, 0.4]}, "loss")
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    plt.close(fig)
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
