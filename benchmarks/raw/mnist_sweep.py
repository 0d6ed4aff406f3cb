"""The benchmark's sweep written by hand: the reference for what two cores give a plain Keras sweep.

The four trials of `run_all.py`'s sweep section (the book's MNIST network with 16, 32, 64 and 128
units, 20 epochs, the 10,000-image validation holdout, batch 128, RMSprop):

    python benchmarks/raw/mnist_sweep.py seq    # one process, the trials in a loop, as a notebook runs them
    python benchmarks/raw/mnist_sweep.py par    # two processes of one thread, two trials each

Not run by `run_all.py` (it would add about six minutes); see CHANGES.md, seventh pass, for figures.
"""

import os
import subprocess
import sys

UNITS = [16, 32, 64, 128]


def run_trials(units: list[int], threads: int | None = None) -> None:
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import numpy as np

    data = np.load(os.path.join(os.environ.get("EXPKIT_DATA_DIR", "/work/shared/datasets"), "mnist.npz"))
    x = data["x_train"].reshape((60000, 784)).astype("float32") / 255
    y = keras.utils.to_categorical(data["y_train"], 10)
    x_test = data["x_test"].reshape((10000, 784)).astype("float32") / 255
    y_test = keras.utils.to_categorical(data["y_test"], 10)
    for n in units:
        keras.utils.clear_session()
        keras.utils.set_random_seed(42)
        layers = [keras.Input((784,)), keras.layers.Dense(n, activation="relu"), keras.layers.Dense(10, activation="softmax")]
        model = keras.Sequential(layers)
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[10000:], y[10000:], validation_data=(x[:10000], y[:10000]), epochs=20, batch_size=128, verbose=0)
        print(f"units={n} test_accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "seq"
    if mode == "seq":
        run_trials(UNITS)
    elif mode == "par":  # the order joblib gives the expkit sweep: worker A runs 16 then 64, worker B 32 then 128
        workers = [subprocess.Popen([sys.executable, __file__, "worker", ",".join(map(str, UNITS[i::2]))]) for i in (0, 1)]
        sys.exit(max(w.wait() for w in workers))
    else:
        run_trials([int(u) for u in sys.argv[2].split(",")], threads=1)
