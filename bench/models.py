"""The two SavedModels the benchmark serves, built here rather than downloaded.

Both take what the 2019 sample's ResNet50 took: a 1-D ``tf.string`` tensor of encoded images,
decoded, resized to 224x224 and caffe-preprocessed inside the graph, and give ``[N, K]`` float
scores from a ``serving_default`` signature. Weights are random: speed does not depend on them.

- ``resnet50``: ``tf.keras.applications.ResNet50(weights=None)``, the compute-bound case.
- ``tiny``: the same front end and a head of a few thousand parameters, so that decoding and
  the server's own overhead dominate, as they do once a GPU does the maths.

A built model is cached under a directory keyed by a hash of this file, so editing a builder
can never serve a stale model.
"""
import hashlib
import shutil
from pathlib import Path

MODEL_NAMES = ("resnet50", "tiny")
IMAGE_SIZE = 224
TINY_CLASSES = 10


def cached_dir(name: str, cache_dir: Path) -> Path:
    """Where the model ``name`` lives in ``cache_dir`` for this version of the builders."""
    fingerprint = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return cache_dir / f"{name}-{fingerprint}"


def ensure(name: str, cache_dir: Path) -> Path:
    """Return the SavedModel directory of ``name``, building it first if it is not cached."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    target = cached_dir(name, cache_dir)
    if not (target / "saved_model.pb").exists():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _save(_build_network(name), staging)
        staging.rename(target)  # atomic: an interrupted build leaves no half model behind
    return target


def _build_network(name: str):
    """The Keras network behind the front end: image batch [N,224,224,3] -> scores [N,K]."""
    import tensorflow as tf

    if name == "resnet50":
        return tf.keras.applications.ResNet50(weights=None)
    inputs = tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    pooled = tf.keras.layers.AveragePooling2D(pool_size=16)(inputs)
    scores = tf.keras.layers.Dense(TINY_CLASSES, activation="softmax")(tf.keras.layers.Flatten()(pooled))
    return tf.keras.Model(inputs, scores, name="tiny")


def _save(network, directory: Path) -> None:
    """Wrap ``network`` in the string-input front end and save it with a serving signature."""
    import tensorflow as tf

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])

    class Scorer(tf.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            pixels = tf.map_fn(
                decode, images, fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
            )
            pixels = tf.keras.applications.resnet50.preprocess_input(pixels)  # "caffe": BGR, mean-centred
            return {"scores": self.network(pixels, training=False)}

    scorer = Scorer()
    tf.saved_model.save(scorer, str(directory), signatures={"serving_default": scorer.serve})
