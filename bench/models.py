"""The two SavedModels the benchmark serves, built here rather than downloaded.

Both are what ``python -m scoring_tools.prepare_model resnet50`` writes, from its own code
(``write_savedmodel``): a 1-D ``tf.string`` tensor of encoded images, decoded, resized to 224x224
and caffe-preprocessed inside the graph, and ``[N, K]`` probabilities from a ``serving_default``
signature, so the numbers describe what users deploy. Weights are random (seeded: each build the
same, so a test comparing the twin's scores repeats itself): speed does not depend
on them.

- ``resnet50``: ``tf.keras.applications.ResNet50(weights=None)``, the compute-bound case.
- ``tiny``: the same front end and a head of a few thousand parameters, so that decoding and
  the server's own overhead dominate, as they do once a GPU does the maths.

Each model is also written a second time from the same network object, so with the same
weights, as the graph that decodes every pixel of a JPEG (``write_savedmodel(...,
scaled_decode=False)``: the graph before its DCT-scaled decode): the benchmark's full-decode
yardstick (``full_decode_dir``), measured in process and never served.

A built model is cached under a directory keyed by a hash of this file and of the prepare
command's, so editing either can never serve a stale model.
"""
import hashlib
from pathlib import Path

MODEL_NAMES = ("resnet50", "tiny")
IMAGE_SIZE = 224
TINY_CLASSES = 10


def cached_dir(name: str, cache_dir: Path) -> Path:
    """Where the model ``name`` lives in ``cache_dir`` for this version of the builders."""
    from scoring_tools import prepare_model
    builders = Path(__file__).read_bytes() + Path(prepare_model.__file__).read_bytes()
    fingerprint = hashlib.sha256(builders).hexdigest()[:12]
    return cache_dir / f"{name}-{fingerprint}"


def full_decode_dir(name: str, cache_dir: Path) -> Path:
    """Where the full-decode twin of model ``name`` lives (written by ``ensure``): a folder
    of its own, so that ``cache_dir`` holds the served models alone."""
    prepared = cached_dir(name, cache_dir)
    return cache_dir / "full-decode" / prepared.name


def ensure(name: str, cache_dir: Path) -> Path:
    """Return the SavedModel directory of ``name``, building it and its full-decode twin
    first if either is not cached (both from one network: the same weights)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    target, twin = cached_dir(name, cache_dir), full_decode_dir(name, cache_dir)
    if not all((directory / "saved_model.pb").exists() for directory in (target, twin)):
        network = _build_network(name)
        # each staged and renamed: never half a model there
        _save(network, twin, scaled_decode=False)
        _save(network, target, scaled_decode=True)
    return target


def _build_network(name: str):
    """The Keras network behind the front end: image batch [N,224,224,3] -> scores [N,K]."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)  # the same weights each build: a test's scores are repeatable
    if name == "resnet50":
        return tf.keras.applications.ResNet50(weights=None)
    inputs = tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    pooled = tf.keras.layers.AveragePooling2D(pool_size=16)(inputs)
    scores = tf.keras.layers.Dense(TINY_CLASSES, activation="softmax")(tf.keras.layers.Flatten()(pooled))
    return tf.keras.Model(inputs, scores, name="tiny")


def _save(network, directory: Path, scaled_decode: bool) -> None:
    """``network`` behind the prepared models' string-input front end (ResNet50's caffe
    preprocessing for both), with stand-in class names."""
    from scoring_tools import prepare_model
    names = [f"class {i}" for i in range(network.output_shape[-1])]
    prepare_model.write_savedmodel(network, "resnet50", names, directory, scaled_decode=scaled_decode)
