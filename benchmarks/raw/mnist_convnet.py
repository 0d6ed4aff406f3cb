"""The book's MNIST convnet (W ch. 4), one epoch, as a notebook would write it: the raw-Keras baseline."""

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

data = np.load(os.path.join(os.environ.get("EXPKIT_DATA_DIR", "/work/shared/datasets"), "mnist.npz"))
x_train = data["x_train"].reshape((60000, 28, 28, 1)).astype("float32") / 255
x_test = data["x_test"].reshape((10000, 28, 28, 1)).astype("float32") / 255
y_train, y_test = keras.utils.to_categorical(data["y_train"], 10), keras.utils.to_categorical(data["y_test"], 10)

keras.utils.set_random_seed(42)
model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax", dtype=out_dtype),
    ]
)
model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"], steps_per_execution=args.steps_per_execution)
model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test_accuracy: {accuracy:.4f}", file=sys.stdout)
