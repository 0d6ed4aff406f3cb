"""The book's IMDB multi-hot MLP (W ch. 3), final model, as a notebook would write it: the raw-Keras baseline.

Reads imdb.npz (Keras layout) from $EXPKIT_DATA_DIR; the benchmark writes a generated real-size one there.
"""

import argparse
import os
import sys

import keras
import numpy as np

# Benchmark knobs (run_all.py, gpu.sh): the same script with expkit's speed setting, or under mixed precision.
cli = argparse.ArgumentParser()
cli.add_argument("--steps-per-execution", type=int, default=1)
cli.add_argument("--mixed-precision", action="store_true", help="the mixed_float16 policy; the output layer stays float32")
args = cli.parse_args()
if args.mixed_precision:
    keras.config.set_dtype_policy("mixed_float16")
out_dtype = "float32" if args.mixed_precision else None

with np.load(os.path.join(os.environ["EXPKIT_DATA_DIR"], "imdb.npz"), allow_pickle=True) as data:
    train_data, train_labels, test_data, test_labels = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
train_data = [[w for w in s if w < 10000] for s in train_data]  # keras.datasets.imdb.load_data(num_words=10000)
test_data = [[w for w in s if w < 10000] for s in test_data]


def vectorize_sequences(sequences, dimension=10000):
    results = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        for j in sequence:
            results[i, j] = 1.0
    return results


x_train, x_test = vectorize_sequences(train_data), vectorize_sequences(test_data)
y_train, y_test = np.asarray(train_labels).astype("float32"), np.asarray(test_labels).astype("float32")

keras.utils.set_random_seed(42)
model = keras.Sequential(
    [
        keras.Input((10000,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid", dtype=out_dtype),
    ]
)
model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"], steps_per_execution=args.steps_per_execution)
model.fit(x_train, y_train, epochs=4, batch_size=256, verbose=0)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test_accuracy: {accuracy:.4f}", file=sys.stdout)
