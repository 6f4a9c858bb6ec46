"""The model, in stages: load -> preprocess -> predict -> postprocess.

``load`` inspects the SavedModel's ``serving_default`` signature and refuses
what it cannot serve (``UnsupportedModel``). ``preprocess`` runs in the
request's thread or greenlet, ``predict`` one call at a time, from the batcher
(its inference loop, or a quiet server's lone request: TensorFlow does not
promise signatures are thread-safe; Var.MODEL_CALLS above 1, the default
on a CPU, allows more), ``postprocess`` back in the request's.
Under gevent, batched ``predict`` calls and image decodes run in native
threads (``offload``). TensorFlow is imported in
``load``, never at module import, so the gunicorn master (which imports this
package's config) never loads it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .. import offload
from ..contract import Var
from ..errors import BadImage, UnsupportedModel
from ..settings import Config
from . import images, precision
from .interface import Prediction

log = logging.getLogger(__name__)

ENCODED = "encoded"   # 1-D tf.string of encoded images
TENSOR = "tensor"     # uint8/float32 [N, H, W, 3]

SUPPORTED = ("serving_default with exactly one input, either a 1-D tf.string "
             "tensor of encoded images or a uint8/float32 [N, H, W, 3] image "
             "tensor with known H and W; and one [N, K] float output (or "
             f"{Var.OUTPUT} naming it)")


TIMED_ROUNDS = 3  # of timed calls at every batch size, at warm-up
#: The scores output chosen by name among several: what TensorFlow's official ImageNet
#: SavedModels (TF1 estimator exports) and scoring_tools.prepare_model call it.
PROBABILITIES = "probabilities"
#: TF-slim's and the official TF1 ImageNet models score 1001 classes, index 0 "background";
#: given the 1000 ImageNet names, the loader puts that class in front.
BACKGROUND = "background"
IMAGENET_CLASSES = 1000


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def batch_sizes(max_batch: int) -> list[int]:
    """The fixed batch shapes: powers of two below ``max_batch``, then it."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch]


@dataclasses.dataclass(frozen=True)
class Signature:
    """What ``load`` found: enough to build batches and read scores."""
    input_name: str
    kind: str
    dtype: str
    image_size: tuple[int, int] | None
    output_name: str
    num_classes: int | None


def inspect_signature(inputs: dict[str, Any], outputs: dict[str, Any],
                      output_name: str = "") -> Signature:
    """Pick input kind and scores output from TensorSpecs, or explain why not."""
    def describe(specs):
        return "{" + ", ".join(f"{k}: {specs[k].dtype.name}{specs[k].shape}"
                               for k in sorted(specs)) + "}"
    found = f"inputs {describe(inputs)}, outputs {describe(outputs)}"
    if len(inputs) != 1:
        raise UnsupportedModel(f"found {found}; supported: {SUPPORTED}")
    (input_name, spec), = inputs.items()
    shape = spec.shape
    if spec.dtype.name == "string" and shape.rank == 1:
        kind, size = ENCODED, None
    elif (spec.dtype.name in ("uint8", "float32") and shape.rank == 4
          and shape[3] == 3 and shape[1] is not None and shape[2] is not None):
        kind, size = TENSOR, (int(shape[1]), int(shape[2]))
    else:
        raise UnsupportedModel(f"found {found}; supported: {SUPPORTED}")

    scores = {name: s for name, s in outputs.items()
              if s.dtype.is_floating and s.shape.rank == 2}
    if output_name:
        if output_name not in scores:
            raise UnsupportedModel(
                f"{Var.OUTPUT}={output_name!r} is not a [N, K] float output; found {found}")
    elif len(scores) == 1:
        output_name = next(iter(scores))
    elif PROBABILITIES in scores:
        output_name = PROBABILITIES
    else:
        raise UnsupportedModel(
            f"found {found}; need exactly one [N, K] float output, one named "
            f"{PROBABILITIES!r}, or {Var.OUTPUT} naming one of: {', '.join(scores) or 'none'}")
    k = scores[output_name].shape[1]
    return Signature(input_name, kind, spec.dtype.name, size, output_name,
                     None if k is None else int(k))


#: What Var.PREPROCESS is for Keras's applications, named where a model is refused.
KERAS_PREPROCESS = ("caffe for ResNet50/101/152 and VGG16/19; tf for ResNet50V2, InceptionV3, "
                    "Xception and MobileNet/V2; torch for DenseNet; none for EfficientNet, "
                    "ConvNeXt and MobileNetV3 (they scale in the network)")


def check_preprocess(sig: Signature, preprocess: str) -> None:
    """An image-tensor model is served only with a preprocessing someone chose: the server
    cannot tell from the graph what its pixels should be, and a wrong guess gives wrong
    scores without an error."""
    height, width = sig.image_size or (None, None)
    described = f"input {sig.input_name!r}: {sig.dtype} [N, {height}, {width}, 3]"
    if sig.dtype == "uint8" and preprocess not in ("", "none"):
        raise UnsupportedModel(f"{Var.PREPROCESS}={preprocess} needs a float32 input; this "
                               f"model's {described} takes uint8 pixels (use none)")
    if preprocess:
        return
    if sig.dtype == "uint8":
        usual = "none: uint8 pixels are passed as they are (the only value for this input)"
    else:
        usual = f"none (0..255 as decoded), caffe, tf or torch; Keras's applications: {KERAS_PREPROCESS}"
    raise UnsupportedModel(
        f"{Var.PREPROCESS} is not set, and this model's {described} takes image pixels: "
        f"set it to how they are prepared (the stack's preprocess key, or "
        f"deployments.<name>.preprocess): {usual}. Or serve encoded images instead: "
        "python -m scoring_tools.prepare_model (docs/resnet50.md)")


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def find_labels(model_dir: Path, labels_file: str) -> list[str] | None:
    """Var.LABELS_FILE, else ``assets/labels.txt`` or the only ``.txt`` asset."""
    if labels_file:
        return read_labels(Path(labels_file))
    assets = sorted((model_dir / "assets").glob("*.txt"))
    named = [p for p in assets if p.name == "labels.txt"]
    if named or len(assets) == 1:
        return read_labels((named or assets)[0])
    return None


def with_background(labels: list[str] | None, num_classes: int | None) -> list[str] | None:
    """The 1000 ImageNet names for a 1001-class model: index 0 is its background class."""
    if labels is not None and len(labels) == IMAGENET_CLASSES and num_classes == IMAGENET_CLASSES + 1:
        log.info("%d labels for %d classes: class 0 is %r (a TF1 ImageNet model's)",
                 len(labels), num_classes, BACKGROUND)
        return [BACKGROUND, *labels]
    return labels


def signature_callers(fn: Any, input_name: str) -> tuple[Callable, Callable]:
    """Two ways to call signature ``fn`` on one input tensor: ``(direct, public)``.

    ``public`` is the documented call, ``fn(**{input_name: tensor})``. It first
    binds the keyword to the signature's structured inputs in Python (inspect's
    ``bind`` and a cast per input), a sizeable share of a tiny model's batch-1
    call (docs/performance.md). ``direct``
    skips that binding: it is the call the public one ends in
    (``ConcreteFunction._call_flat``: a private name, so ``warm_up`` uses it
    only once it has given the same scores as the public call, and falls back
    to ``public`` where a TensorFlow version lacks it). Both return the
    signature's output dict."""
    def public(tensor):
        return fn(**{input_name: tensor})

    call_flat = getattr(fn, "_call_flat", None)
    captured = getattr(fn, "captured_inputs", None)
    if call_flat is None or captured is None:
        return public, public

    def direct(tensor):
        return call_flat([tensor], captured)

    return direct, public


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def warmup_image() -> bytes:
    """A valid JPEG at the usual model input size: what warm-up feeds (and times)
    at every batch size."""
    out = io.BytesIO()
    Image.new("RGB", (224, 224), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


class ScoringModel:
    """One SavedModel behind the stages of ``interface.Model``."""

    def __init__(self, config: Config):
        self.config = config
        self.signature: Signature | None = None
        self.labels: list[str] | None = None
        self.sizes = batch_sizes(config.max_batch_size)
        self.call_seconds: dict[int, float] = {}
        # TensorFlow's objects (untyped): the module, and the signature's calls
        self._tf: Any = None
        self._call: Any = None      # the signature's call that predict makes
        self._direct: Any = None    # signature_callers; warm_up picks
        self._public: Any = None
        self._support: precision.Support | None = None  # for Var.PRECISION=mixed
        self._validation: list[tuple[str, bytes]] = []  # Var.VALIDATION_DIR's images
        #: what warm-up chose to serve in, and what the guard measured (``precision.Report``)
        self.precision: precision.Report | None = None
        #: where TensorFlow runs the model, known at load: "gpu" or "cpu"
        self.device: str | None = None

    # -- load --------------------------------------------------------------
    def load(self) -> float:
        """Load and check the model; returns the seconds it took."""
        started = time.perf_counter()
        import tensorflow as tf  # heavy: only in workers, only here
        self._tf = tf
        self.device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        model_dir = Path(self.config.model_dir)
        try:
            loaded = tf.saved_model.load(str(model_dir))
        except Exception as exc:  # corrupt files raise OSError, ValueError,
            # IndexError or tf's DataLossError: each must stop the worker naming the path
            raise UnsupportedModel(f"cannot load a SavedModel from {model_dir}: "
                                   f"{type(exc).__name__}: {exc}") from None
        fn = loaded.signatures.get("serving_default")
        if fn is None:
            raise UnsupportedModel(
                f"found signatures {sorted(loaded.signatures)}; supported: {SUPPORTED}")
        self.signature = inspect_signature(
            fn.structured_input_signature[1], fn.structured_outputs, self.config.output)
        if self.signature.kind == TENSOR:
            check_preprocess(self.signature, self.config.preprocess)
        k = self.signature.num_classes
        self.labels = with_background(find_labels(model_dir, self.config.labels_file), k)
        if self.labels is not None and k is not None and len(self.labels) != k:
            raise UnsupportedModel(f"{len(self.labels)} labels for {k} model classes")
        self._loaded = loaded  # keep it alive: fn needs its variables
        self._direct, self._public = signature_callers(fn, self.signature.input_name)
        self._call = self._public
        if self.config.precision == precision.MIXED:
            self._prepare_mixed(tf)
        log.info("model %s loaded: %s", model_dir, self.signature)
        return time.perf_counter() - started

    @property
    def num_classes(self) -> int | None:
        return None if self.signature is None else self.signature.num_classes

    @property
    def _sig(self) -> Signature:
        """The signature ``load`` found (every stage after it runs on a loaded model)."""
        if self.signature is None:
            raise RuntimeError("the model is not loaded")
        return self.signature

    # -- preprocess (the request's thread or greenlet) ---------------------
    def preprocess(self, data: bytes) -> Any:
        """Validate/convert one image; raises BadImage/TooManyPixels (400)."""
        sig = self._sig
        if sig.kind == ENCODED:
            return images.check_encoded(data, self.config.max_image_pixels)
        # PIL's decode and resize take milliseconds: a native thread's work.
        pixels = offload.call(images.decode_rgb, data, sig.image_size, self.config.max_image_pixels)
        if sig.dtype == "uint8":
            return pixels
        return images.preprocess(pixels, self.config.preprocess)

    # -- predict (the batcher's model threads only) ------------------------
    def bucket(self, n: int) -> int:
        return next(size for size in self.sizes if size >= n)

    def predict(self, items: list[Any]) -> np.ndarray:
        """Score a batch: pad to a fixed size, call once, return ``[n, K]``."""
        n, sig = len(items), self._sig
        padded = items + [items[-1]] * (self.bucket(n) - n)
        if sig.kind == ENCODED:
            batch = np.array(padded, dtype=object)
        else:
            batch = np.stack(padded)
        tf = self._tf
        try:
            out = self._call(tf.constant(batch, dtype=sig.dtype))
        except tf.errors.InvalidArgumentError as exc:
            if sig.kind == ENCODED:
                raise BadImage("the model could not decode this image: "
                               f"{exc.message.splitlines()[0]}") from None
            raise
        scores = out[sig.output_name].numpy()[:n]
        return softmax(scores) if self.config.apply_softmax else scores

    def _prepare_mixed(self, tf: Any) -> None:
        """At load: what ``mixed`` means here (or why it cannot be), and the
        validation images read, so that a bad directory stops the worker at boot."""
        support = self._support = precision.detect(tf)
        if support.option is None:
            log.warning("%s=mixed: serving fp32 on %s: %s", Var.PRECISION,
                        support.device, support.why_not)
            return
        if self.config.validation_dir:
            try:
                files = precision.validation_files(self.config.validation_dir)
                self._validation = [(str(p), p.read_bytes()) for p in files]
            except (OSError, ValueError) as exc:
                raise UnsupportedModel(f"the precision guard's images: {exc}") from None

    def warm_up(self) -> float:
        """Pick the signature's call (``_adopt_direct_call``); choose the precision
        (``_choose_precision``: the guard); call every batch
        size once, so no request pays for tracing/autotune; then time each, in
        ``TIMED_ROUNDS`` rounds over all sizes, keeping each size's best (a busy
        moment then spoils one round, not one size's figure) into
        ``call_seconds``, from which the batcher picks its batch sizes and waits:
        timed in the precision that serves."""
        started = time.perf_counter()
        item = self.preprocess(warmup_image())
        self._adopt_direct_call(item)
        self.precision = self._choose_precision(item)
        for size in self.sizes:
            self.predict([item] * size)
        for _ in range(TIMED_ROUNDS):
            for size in self.sizes:
                seconds = _timed(self.predict, [item] * size)
                self.call_seconds[size] = min(seconds, self.call_seconds.get(size, seconds))
        return time.perf_counter() - started

    def _choose_precision(self, warmup_item: Any) -> precision.Report:
        """fp32, or ``mixed`` once the guard has compared it with fp32 on the
        warm-up image and the validation images; past a threshold, fp32 again
        (``fallback``) or an error that keeps the worker from going ready (``refuse``)."""
        config, support = self.config, self._support
        if config.precision == precision.FP32:
            return precision.Report(precision.FP32, precision.FP32, "", f"{Var.PRECISION}=fp32")
        if support is None:
            raise RuntimeError("load did not detect the device's mixed precision")
        if support.option is None:
            return precision.Report(precision.MIXED, precision.FP32, support.device, support.why_not)
        items = [("the warm-up image", warmup_item)]
        for name, data in self._validation:
            try:
                items.append((name, self.preprocess(data)))
            except Exception as exc:  # BadImage, TooManyPixels: name the file
                raise UnsupportedModel(f"the precision guard cannot read {name}: {exc}") from None
        tf, option = self._tf, support.option
        precision.set_rewrite(tf, option, False)
        reference = self._score_all([item for _, item in items])
        precision.set_rewrite(tf, option, True)
        agreement = precision.compare(reference, self._score_all([item for _, item in items]))
        measured = (f"on {agreement.images} validation images, top-1 agreement "
                    f"{agreement.top1_agreement:.1%} (at least {config.guard_min_top1:.1%}), largest "
                    f"score change {agreement.max_deviation:.4g} (at most {config.guard_max_deviation:g})")
        if agreement.within(config.guard_min_top1, config.guard_max_deviation):
            log.info("%s=mixed: serving %s on %s; %s", Var.PRECISION, support.kind, support.device, measured)
            return precision.Report(precision.MIXED, support.kind, support.device, "guard passed", agreement)
        precision.set_rewrite(tf, option, False)
        if config.guard_action == "refuse":
            self.precision = precision.Report(precision.MIXED, "none", support.device, "guard refused",
                                              agreement)
            raise UnsupportedModel(f"{Var.PRECISION}=mixed failed its guard ({measured}) and "
                                   f"{Var.GUARD_ACTION}=refuse: this worker will not go ready")
        log.warning("%s=mixed: %s failed the guard, serving fp32; %s", Var.PRECISION, support.kind, measured)
        return precision.Report(precision.MIXED, precision.FP32, support.device, "guard failed", agreement)

    def _score_all(self, items: list[Any]) -> np.ndarray:
        """Scores of any number of items, in calls of at most the largest batch size."""
        step = self.sizes[-1]
        return np.concatenate([self.predict(items[i:i + step]) for i in range(0, len(items), step)])

    @property
    def calls_directly(self) -> bool:
        """Whether ``predict`` skips the signature's keyword binding (``signature_callers``)."""
        return self._call is self._direct and self._direct is not self._public

    def _adopt_direct_call(self, item: Any) -> None:
        """Call the model directly from now on (``signature_callers``) if that
        gives the public call's scores for ``item``; otherwise keep the public call."""
        if self._direct is self._public:
            return
        self._call = self._public
        expected = self.predict([item])
        self._call = self._direct
        try:
            if np.allclose(self.predict([item]), expected, rtol=1e-5, atol=1e-6):
                return
            why = "it gave other scores"
        except Exception as exc:  # any failure: keep the documented call
            why = f"{type(exc).__name__}: {exc}"
        log.warning("calling the signature directly failed (%s); using its public call", why)
        self._call = self._public

    # -- postprocess (the request's thread or greenlet) --------------------
    def postprocess(self, scores: np.ndarray, top_k: int) -> list[Prediction]:
        """The ``top_k`` classes of one row, best first."""
        k = min(top_k, scores.shape[0])
        top = scores.argpartition(-k)[-k:]  # the k best, in no order
        best_first = (-scores[top]).argsort(kind="stable")
        top = top[best_first]
        labels = self.labels
        return [{"label": labels[i] if labels else str(i), "index": i, "score": score}
                for i, score in zip(top.tolist(), scores[top].tolist())]
