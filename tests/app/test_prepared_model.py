"""scoring_tools.prepare_model: the prepared ResNet50 served by the real server gives the
answer Keras's own model gives in process, with the class names from its labels asset.

Tolerance: Keras's reference path (``load_img`` with Pillow's bilinear resize) rounds the
resized pixels to whole grey levels, while the graph keeps them as floats; JPEGs too small for a
DCT scaling are decoded identically (both libjpeg's accurate integer DCT). So the model's inputs
differ by under one grey level per pixel (asserted below), which on these images moves a
probability by under 1e-3.
``SCORE_ATOL`` is five times that. Every served score is checked against the reference's score
for the same class; the best class must be the reference's (which leads by more than twice the
tolerance: asserted), and no class left out may beat the last one served by more than that.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from bench.images import make_jpeg
from scoring_tools import prepare_model
from tests.app.conftest import Server

SCORE_ATOL = 5e-3
TOP_K = 5


def _photo(width: int, height: int, seed: int) -> Image.Image:
    return Image.open(io.BytesIO(make_jpeg(width, height, seed=seed))).convert("RGB")


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


#: A photo-like JPEG larger than the input but decoded at full scale (under twice it), and a
#: PNG of another one, smaller on one side.
IMAGES = {"jpeg": ("image/jpeg", _encode(_photo(440, 330, seed=3), "JPEG")),
          "png": ("image/png", _encode(_photo(300, 200, seed=5), "PNG"))}


def _keras_pixels(data: bytes, tmp_path, name: str) -> np.ndarray:
    """The image as a Keras user reads it: load_img at the input size, bilinear, as floats."""
    import tensorflow as tf
    path = tmp_path / name
    path.write_bytes(data)
    image = tf.keras.utils.load_img(path, target_size=(224, 224), interpolation="bilinear")
    return tf.keras.utils.img_to_array(image)


def _keras_scores(network, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf
    batch = tf.keras.applications.resnet50.preprocess_input(pixels[None].copy())
    return network.predict(batch, verbose=0)[0]


@pytest.fixture(scope="module")
def resnet_server(prepared_resnet50, secret_dir, tmp_path_factory):
    """The real server on the prepared model; no SCORING_PREPROCESS (a string-input model)."""
    srv = Server({"SCORING_MODEL_DIR": str(prepared_resnet50.dir), "SCORING_MODEL_NAME": "resnet50",
                  "SCORING_API_KEYS_DIR": str(secret_dir.path), "SCORING_WORKERS": "1",
                  "SCORING_MAX_BATCH_SIZE": "2", "SCORING_PREPROCESS": "",
                  "TMPDIR": str(tmp_path_factory.mktemp("resnet-server"))})
    try:
        yield srv.wait_ready(timeout=300)
    finally:
        srv.stop()


def test_the_prepared_signature_takes_encoded_images_and_gives_probabilities(prepared_resnet50):
    import tensorflow as tf
    fn = tf.saved_model.load(str(prepared_resnet50.dir)).signatures["serving_default"]
    (name, spec), = fn.structured_input_signature[1].items()
    assert (name, spec.dtype, spec.shape.as_list()) == ("image_bytes", tf.string, [None])
    assert {k: v.shape.as_list() for k, v in fn.structured_outputs.items()} == {
        "probabilities": [None, 1000]}
    labels = (prepared_resnet50.dir / "assets" / "labels.txt").read_text(encoding="utf-8")
    assert labels.splitlines() == prepared_resnet50.labels


@pytest.mark.parametrize("kind", IMAGES)
def test_the_graph_sees_keras_pixels_within_a_grey_level(kind, tmp_path):
    import tensorflow as tf
    data = IMAGES[kind][1]
    graph = prepare_model.decode_resize(tf.constant(data), (224, 224)).numpy()
    assert np.abs(graph - _keras_pixels(data, tmp_path, kind)).max() < 1.0


@pytest.mark.parametrize("kind", IMAGES)
def test_served_answer_is_keras_predict(kind, resnet_server, prepared_resnet50, secret_dir, tmp_path):
    content_type, data = IMAGES[kind]
    expected = _keras_scores(prepared_resnet50.network, _keras_pixels(data, tmp_path, kind))
    first, second = np.sort(expected)[::-1][:2]
    assert first - second > 2 * SCORE_ATOL, "the reference's best class must lead clearly"
    response = requests.post(f"{resnet_server.url}/score?top_k={TOP_K}", data=data, timeout=60,
                             headers={"Authorization": "Bearer primary-key-1",
                                      "Content-Type": content_type})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["name"] == "resnet50"
    predictions = answer["predictions"]
    served = np.array([p["index"] for p in predictions])
    assert len(served) == TOP_K and served[0] == expected.argmax()
    assert [p["label"] for p in predictions] == [prepared_resnet50.labels[i] for i in served]
    scores = np.array([p["score"] for p in predictions])
    np.testing.assert_allclose(scores, expected[served], atol=SCORE_ATOL)
    assert (np.diff(scores) <= 0).all()
    assert np.delete(expected, served).max() <= scores[-1] + 2 * SCORE_ATOL


def test_bad_arguments_get_one_line_and_write_nothing(tmp_path, capsys):
    short = tmp_path / "labels.txt"
    short.write_text("tench\ngoldfish\n")
    cases = [
        (["--labels", str(short)], "--labels " + str(short) + ": 2 class names; the model has 1000"),
        (["--weights", str(tmp_path / "none.h5"), "--labels", str(short)], None),
        # arguments are checked before anything is downloaded (here: the class names)
        (["--weights", str(tmp_path / "none.h5")], "none.h5: no such file"),
    ]
    out = tmp_path / "model"
    for args, message in cases:
        assert prepare_model.main(["resnet50", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("prepare_model: ")
        if message:
            assert message in err
        assert not out.exists()
    out.mkdir()
    (out / "keep").write_text("x")
    assert prepare_model.main(["resnet50", str(out), "--labels", str(short)]) == 2
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert (out / "keep").read_text() == "x"


@pytest.mark.parametrize("height, width", [(224, 224), (447, 1000), (446, 1000), (448, 448),
                                           (895, 900), (896, 900), (1792, 1792), (3024, 4032),
                                           (1791, 5000)])
def test_jpeg_is_decoded_at_the_largest_dct_scale_that_covers_the_input(height, width):
    """libjpeg's scaled output is ceil(side / ratio): the chosen ratio covers 224 x 224 on both
    sides, and the next larger one would not (unless it is already 1/8)."""
    import tensorflow as tf
    data = tf.constant(_encode(Image.new("RGB", (width, height), (90, 120, 150)), "JPEG"))
    ratio = int(prepare_model.dct_ratio(height, width, (224, 224)))
    decoded = prepare_model.decode_jpeg_scaled(data, (224, 224)).shape
    assert decoded[:2] == (-(-height // ratio), -(-width // ratio))
    assert min(decoded[:2]) >= 224
    if ratio < 8:
        assert min(-(-height // (2 * ratio)), -(-width // (2 * ratio))) < 224


@pytest.mark.parametrize("width, height", [(1920, 1080), (4032, 3024)])
def test_dct_scaled_decode_stays_close_to_the_full_decode(width, height, prepared_resnet50):
    """A large photo-like JPEG decoded at 1/4 or 1/8 and resized, against every pixel decoded
    and resized: on average within 1.5 grey levels, and the same best class."""
    import tensorflow as tf
    data = tf.constant(make_jpeg(width, height, seed=width))
    full = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    full = tf.image.resize(full, (224, 224), method="bilinear", antialias=True).numpy()
    scaled = prepare_model.decode_resize(data, (224, 224)).numpy()
    assert np.abs(scaled - full).mean() < 1.5
    first, second = (_keras_scores(prepared_resnet50.network, pixels) for pixels in (full, scaled))
    assert first.argmax() == second.argmax()
