"""Prepare a Keras application as a SavedModel that takes encoded images, as the 2019 sample's did.

    python -m scoring_tools.prepare_model resnet50 models/resnet50

``serving_default`` takes a 1-D ``tf.string`` tensor of encoded images (JPEG, PNG, GIF, BMP:
what ``tf.io.decode_image`` reads), and inside the graph decodes each to RGB, resizes it to the
network's input size (the whole image, no crop, as Keras's ``load_img(target_size=...)`` does;
bilinear with antialiasing, which is what Pillow's bilinear resize does when it shrinks), applies
the application's own ``preprocess_input`` (for ResNet50 "caffe": RGB -> BGR and the ImageNet
mean subtracted), and answers ``probabilities`` ``[N, 1000]``. The ImageNet class names are written
as the SavedModel's ``assets/labels.txt``, which the server reads.

Network access, on the user's machine only: ``--weights imagenet`` (the default) has Keras download
the application's ImageNet weights, and without ``--labels`` Keras's ``imagenet_class_index.json``
is downloaded too; both are cached by Keras under ``~/.keras/models`` (``KERAS_HOME`` moves it), so
a second run downloads nothing. ``--weights PATH`` loads weights already on disk, ``--weights none``
leaves them random (tests); ``--labels PATH`` reads the class names from a file on disk.

    python -m scoring_tools.prepare_model --add-labels models/resnet_v1

writes the same class names into a SavedModel made elsewhere (``assets/labels.txt``), e.g.
TensorFlow's official TF1 ResNet, whose 1001 classes start with a background class that the
server puts in front of the 1000 names itself.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from scoring_app.contract import Var


@dataclass(frozen=True)
class Application:
    """A Keras application: its module under ``keras.applications`` (whose ``preprocess_input``
    the graph calls) and its constructor there. The input size is read from the built network."""
    module: str
    constructor: str
    preprocessing: str  # what the module's preprocess_input does, for the docs and the summary


#: Every application here has ImageNet weights, a fixed input size and a 1000-class softmax head,
#: so the one wrapper serves them all.
APPLICATIONS = {
    "resnet50": Application("resnet50", "ResNet50", "caffe"),
    "resnet101": Application("resnet", "ResNet101", "caffe"),
    "resnet152": Application("resnet", "ResNet152", "caffe"),
    "vgg16": Application("vgg16", "VGG16", "caffe"),
    "vgg19": Application("vgg19", "VGG19", "caffe"),
    "resnet50v2": Application("resnet_v2", "ResNet50V2", "tf"),
    "inception_v3": Application("inception_v3", "InceptionV3", "tf"),
    "xception": Application("xception", "Xception", "tf"),
    "mobilenet_v2": Application("mobilenet_v2", "MobileNetV2", "tf"),
    "densenet121": Application("densenet", "DenseNet121", "torch"),
    "efficientnet_b0": Application("efficientnet", "EfficientNetB0", "in the network"),
    "convnext_tiny": Application("convnext", "ConvNeXtTiny", "in the network"),
}
NUM_CLASSES = 1000
INPUT_NAME = "image_bytes"
OUTPUT_NAME = "probabilities"
LABELS_ASSET = "labels.txt"
#: Keras's own copy of the class names (keras/src/applications/imagenet_utils.py: the URL,
#: file name, cache folder and md5 that ``decode_predictions`` uses), so both share one cache.
CLASS_INDEX_URL = ("https://storage.googleapis.com/download.tensorflow.org/data/"
                   "imagenet_class_index.json")
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


class PrepareError(ValueError):
    """An argument or input file the command cannot use; the message says which and why."""


def read_labels(path: Path) -> list[str]:
    """Class names from Keras's class index JSON (``{"0": ["n01440764", "tench"], ...}``) or
    a text file, one name a line; exactly ``NUM_CLASSES`` of them, in class order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"--labels {path}: cannot read it: {exc}") from None
    if str(path).endswith(".json"):
        try:
            index = json.loads(text)
            names = [str(index[str(i)][1]).strip() for i in range(len(index))]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PrepareError(f"--labels {path}: not a Keras class index "
                               f"({{\"0\": [\"n01440764\", \"tench\"], ...}}): {exc!r}") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != NUM_CLASSES or not all(names):
        raise PrepareError(f"--labels {path}: {len(names)} class names; the model has "
                           f"{NUM_CLASSES} classes")
    return names


def imagenet_labels(path: Path | None) -> list[str]:
    """The class names from ``path``, else from Keras's class index (downloaded once, cached)."""
    if path is not None:
        return read_labels(path)
    import tensorflow as tf
    print("prepare_model: fetching Keras's imagenet_class_index.json (cached in "
          "~/.keras/models after the first time)", file=sys.stderr, flush=True)
    try:
        cached = tf.keras.utils.get_file("imagenet_class_index.json", CLASS_INDEX_URL,
                                         cache_subdir="models", file_hash=CLASS_INDEX_MD5)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, a bad hash: one line each
        raise PrepareError(f"cannot download {CLASS_INDEX_URL} ({exc}); pass --labels with a "
                           "copy of it (or a text file, one class name a line)") from None
    return read_labels(Path(cached))


def build_network(name: str, weights: str):
    """The application with ``weights``: ``imagenet`` (Keras downloads and caches them), ``none``
    or a weights file on disk."""
    import tensorflow as tf
    app = APPLICATIONS[name]
    constructor = getattr(getattr(tf.keras.applications, app.module), app.constructor)
    try:
        return constructor(weights=None if weights == "none" else weights)
    except Exception as exc:  # noqa: BLE001 - a download or a weights file that does not fit
        raise PrepareError(f"{name} with --weights {weights}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


#: JPEG's own DCT scalings (libjpeg's scale_denom), as the branches of decode_jpeg_scaled.
DCT_RATIOS = (1, 2, 4, 8)


def dct_scale_index(height, width, size: tuple[int, int]):
    """The index in ``DCT_RATIOS`` of the largest ratio at which libjpeg's scaled output,
    ``ceil(side / ratio)`` per side, still covers ``size`` on both sides: the number of
    ratios above 1 that cover (if one does, every smaller one does). An int32 scalar."""
    import tensorflow as tf
    return tf.add_n([tf.cast(tf.logical_and((height + r - 1) // r >= size[0],
                                            (width + r - 1) // r >= size[1]), tf.int32)
                     for r in DCT_RATIOS[1:]])


def dct_ratio(height, width, size: tuple[int, int]):
    """The ratio ``dct_scale_index`` picks: 1, 2, 4 or 8."""
    import tensorflow as tf
    return tf.gather(DCT_RATIOS, dct_scale_index(height, width, size))


def decode_jpeg_scaled(data, size: tuple[int, int]):
    """A JPEG decoded at the largest DCT scale that still covers ``size``, chosen from its
    header (``extract_jpeg_shape`` reads no pixels). ``ratio`` is an op attribute, not an input,
    so the four decodes are four branches of a ``switch_case``: only the chosen one runs."""
    import tensorflow as tf
    shape = tf.image.extract_jpeg_shape(data)

    def decode(r):
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")
    return tf.switch_case(dct_scale_index(shape[0], shape[1], size),
                          [decode(r) for r in DCT_RATIOS])


def decode_resize(data, size: tuple[int, int], scaled_decode: bool = True):
    """One encoded image -> float32 ``[H, W, 3]`` RGB in 0..255 at the network's size.

    JPEGs are decoded with libjpeg's accurate integer DCT, the one Pillow (and so Keras's
    ``load_img``) uses: the same pixels, where TensorFlow's default fast DCT differs by up to
    4 grey levels; and at the largest DCT scale that still covers the input (a 12 MP photo
    at 1/8), since decoding every pixel only to average them away is most of the work.
    ``scaled_decode=False`` decodes every pixel (ratio 1), as these graphs did before the
    DCT scaling: the benchmark's full-decode yardstick, nothing to deploy.
    Other formats go through ``decode_image`` (first frame of a GIF)."""
    import tensorflow as tf
    image = tf.cond(
        tf.io.is_jpeg(data),
        (lambda: decode_jpeg_scaled(data, size)) if scaled_decode else
        (lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def serving_module(network, module_name: str, labels_file: Path, scaled_decode: bool = True):
    """A tf.Module carrying the network, the labels asset and the string-input signature
    (``scaled_decode``: see ``decode_resize``)."""
    import tensorflow as tf
    preprocess_input = getattr(tf.keras.applications, module_name).preprocess_input
    size = tuple(int(d) for d in network.input_shape[1:3])

    class Prepared(tf.Module):
        def __init__(self):
            super().__init__()
            self.network = network
            self.labels = tf.saved_model.Asset(str(labels_file))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
        def serve(self, image_bytes):
            pixels = tf.map_fn(lambda data: decode_resize(data, size, scaled_decode), image_bytes,
                               fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))
            return {OUTPUT_NAME: self.network(preprocess_input(pixels), training=False)}

    return Prepared()


def prepare(name: str, out_dir: Path, weights: str = "imagenet", labels: Path | None = None,
            force: bool = False) -> Path:
    """Write application ``name`` as a string-input SavedModel at ``out_dir``; returns it.
    Built in a staging directory beside it and renamed into place, so an interrupted run
    leaves no half model where a deploy would find it."""
    if name not in APPLICATIONS:
        raise PrepareError(f"unknown application {name!r}; choose from {', '.join(APPLICATIONS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise PrepareError(f"{out_dir} exists and is not empty; pass --force to replace it")
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise PrepareError(f"--weights {weights}: no such file (or use imagenet or none)")
    names = imagenet_labels(labels)
    network = build_network(name, weights)
    if tuple(network.output_shape) != (None, NUM_CLASSES):
        raise PrepareError(f"{name}: output {network.output_shape}, expected (None, {NUM_CLASSES})")
    return write_savedmodel(network, APPLICATIONS[name].module, names, out_dir)


def write_savedmodel(network, module_name: str, names: list[str], out_dir: Path,
                     scaled_decode: bool = True) -> Path:
    """``network`` (image batch -> scores) behind the string-input signature, preprocessed by
    ``keras.applications.<module_name>.preprocess_input``, with ``names`` as its labels asset.
    Also what the benchmark's models are built with, so its numbers describe this graph;
    ``scaled_decode=False`` is its full-decode yardstick (``decode_resize``)."""
    import tensorflow as tf
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    labels_file = staging / "staged" / LABELS_ASSET
    labels_file.parent.mkdir()
    labels_file.write_text("\n".join(names) + "\n", encoding="utf-8")
    module = serving_module(network, module_name, labels_file, scaled_decode)
    tf.saved_model.save(module, str(staging / "model"), signatures={"serving_default": module.serve})
    shutil.rmtree(out_dir, ignore_errors=True)
    (staging / "model").rename(out_dir)
    shutil.rmtree(staging)
    return out_dir


def add_labels(model_dir: Path, labels: Path | None = None, force: bool = False) -> Path:
    """Write the ImageNet class names as ``assets/labels.txt`` of the SavedModel at ``model_dir``
    (a file beside the graph: a TF1 SavedModel's loader reads only the assets its graph lists)."""
    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise PrepareError(f"--add-labels {model_dir}: no saved_model.pb there")
    target = model_dir / "assets" / LABELS_ASSET
    if target.exists() and not force:
        raise PrepareError(f"{target} exists; pass --force to replace it")
    names = imagenet_labels(labels)
    target.parent.mkdir(exist_ok=True)
    target.write_text("\n".join(names) + "\n", encoding="utf-8")
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("application", nargs="?", choices=sorted(APPLICATIONS),
                        metavar="APPLICATION", help=f"one of: {', '.join(APPLICATIONS)}")
    parser.add_argument("out_dir", nargs="?", type=Path, help="the SavedModel directory to write")
    parser.add_argument("--add-labels", type=Path, metavar="MODEL_DIR",
                        help="instead: write the class names into this SavedModel's assets")
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (Keras downloads them once, cached in ~/.keras/models), "
                             "none (random: tests), or a Keras weights file on disk")
    parser.add_argument("--labels", type=Path,
                        help="class names on disk: Keras's imagenet_class_index.json or a text "
                             "file, one name a line (default: Keras's file, downloaded once)")
    parser.add_argument("--force", action="store_true", help="replace what is there")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if bool(args.add_labels) == bool(args.application and args.out_dir):
        parser.error("give APPLICATION and OUT_DIR, or --add-labels MODEL_DIR")
    try:
        if args.add_labels:
            written = add_labels(args.add_labels, args.labels, args.force)
            print(f"prepare_model: wrote {written}")
            return 0
        out = prepare(args.application, args.out_dir, args.weights, args.labels, args.force)
    except PrepareError as exc:
        print(f"prepare_model: {exc}", file=sys.stderr)
        return 2
    app = APPLICATIONS[args.application]
    print(f"prepare_model: wrote {out}: serving_default takes {INPUT_NAME} (string [N], encoded "
          f"images), decodes, resizes and preprocesses ({app.preprocessing}) in the graph, and "
          f"answers {OUTPUT_NAME} [N, {NUM_CLASSES}]; class names in "
          f"{out / 'assets' / LABELS_ASSET}. Serve it as it is (no {Var.PREPROCESS}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
