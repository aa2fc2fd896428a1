"""The classic Keras MNIST script, the baseline of the time-to-accuracy benchmark.

Same net as ``mnist_cnn`` (Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10),
Adam with Keras' defaults, 5 epochs, batch 64, NumPy arrays in memory, as in the
TensorFlow/Keras CNN tutorial. Reads MNIST from $KERASCNN_DATA_DIR/mnist.npz
when set (offline), else keras.datasets. Prints one JSON line.
"""

import json
import os
import time

start = time.perf_counter()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

data_dir = os.environ.get("KERASCNN_DATA_DIR")
if data_dir and os.path.exists(os.path.join(data_dir, "mnist.npz")):
    with np.load(os.path.join(data_dir, "mnist.npz"), allow_pickle=False) as f:
        (x_train, y_train), (x_test, y_test) = (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
else:
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train.reshape((60000, 28, 28, 1)).astype("float32") / 255
x_test = x_test.reshape((10000, 28, 28, 1)).astype("float32") / 255

model = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
fit_start = time.perf_counter()
model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=int(os.environ.get("VERBOSE", "2")))
fit_seconds = time.perf_counter() - fit_start
test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print(
    json.dumps(
        {
            "script": "classic",
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "fit_seconds": fit_seconds,
            "wall_seconds": time.perf_counter() - start,
        }
    )
)
