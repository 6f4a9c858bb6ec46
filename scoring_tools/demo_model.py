"""A tiny demo model that tells something real and checkable: an image's
dominant colour. Trained in a few seconds on synthetic images, exported as a
SavedModel of either input kind the service supports:

- ``tensor``: ``uint8 [N, 32, 32, 3]`` pixels (the app decodes and resizes);
- ``encoded``: ``string [N]`` of encoded images, decoded inside the model
  (as the 2019 ResNet50 sample did).

Labels ship among the SavedModel's assets (``assets/labels.txt``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

COLOURS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "red": (220, 20, 20),
    "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (240, 220, 20),
}
LABELS = list(COLOURS)
SIZE = 32


def synthetic_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose dominant colour is known: a base colour with noise and a
    smaller patch of another colour, so the model must weigh area, not corners."""
    rng = np.random.default_rng(seed)
    base = np.array(list(COLOURS.values()), dtype=np.float32)
    y = rng.integers(0, len(base), count)
    x = base[y][:, None, None, :] + rng.normal(0, 25, (count, SIZE, SIZE, 3))
    for i in range(count):
        h, w = rng.integers(4, SIZE // 2, 2)
        top, left = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
        x[i, top:top + h, left:left + w] = base[rng.integers(0, len(base))]
    return np.clip(x, 0, 255).astype(np.uint8), y


def train(count: int = 4000, seed: int = 0):
    """A Keras classifier on uint8 pixels; a few seconds on one CPU core."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    x, y = synthetic_images(count, seed)
    model = tf.keras.Sequential([
        tf.keras.Input((SIZE, SIZE, 3), dtype="uint8"),
        tf.keras.layers.Rescaling(1 / 255),
        tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(len(LABELS), activation="softmax", name="scores"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


def _module(model, kind: str, labels_path: Path):
    """A tf.Module carrying the model, its labels asset and one signature."""
    import tensorflow as tf

    module = tf.Module()
    module.model = model
    module.labels = tf.saved_model.Asset(str(labels_path))
    if kind == "tensor":
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8)])
        def serve(images):
            return {"scores": model(images, training=False)}
    else:
        def decode(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image = tf.image.resize(image, (SIZE, SIZE))
            return tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(image_bytes):
            images = tf.map_fn(decode, image_bytes,
                               fn_output_signature=tf.TensorSpec([SIZE, SIZE, 3], tf.uint8))
            return {"scores": model(images, training=False)}
    module.serve = serve
    return module


def export(model, directory: Path, kind: str) -> Path:
    """Write a SavedModel of ``kind`` (``tensor`` or ``encoded``) to ``directory``."""
    import tensorflow as tf

    directory = Path(directory)
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    labels = staging / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    module = _module(model, kind, labels)
    tf.saved_model.save(module, str(staging / "model"),
                        signatures={"serving_default": module.serve})
    shutil.rmtree(directory, ignore_errors=True)
    (staging / "model").rename(directory)
    shutil.rmtree(staging)
    return directory
