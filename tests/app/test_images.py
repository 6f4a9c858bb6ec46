"""model/images: header checks, decodes, pixel preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_app.errors import BadImage, TooManyPixels
from scoring_app.model import images
from tests.app import media


@pytest.mark.parametrize("body,error", [
    (b"", BadImage), (b"plain text", BadImage), (media.PDF, BadImage),
    (media.png_header_only(100000, 100000), TooManyPixels),
    (media.png_header_only(3000, 2000), TooManyPixels),
])
def test_check_encoded_rejects(body, error):
    with pytest.raises(error):
        images.check_encoded(body, media.MAX_PIXELS)


def test_check_encoded_passes_bytes_through_untouched():
    body = media.jpeg()
    assert images.check_encoded(body, media.MAX_PIXELS) is body


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) says ``width`` x ``height``."""
    body = bytearray(media.jpeg())
    sof = body.index(b"\xff\xc0")
    body[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(body)


def test_check_encoded_reads_the_jpeg_size_from_its_frame_header():
    images.check_encoded(_jpeg_claiming(2000, 2000), media.MAX_PIXELS)  # at the limit
    with pytest.raises(TooManyPixels, match="2001x2000"):
        images.check_encoded(_jpeg_claiming(2001, 2000), media.MAX_PIXELS)


def test_a_jpeg_start_without_a_frame_header_gets_pillows_error():
    with pytest.raises(BadImage):
        images.check_encoded(b"\xff\xd8\xff\xe0" + b"\x00" * 40, media.MAX_PIXELS)


def test_decode_rejects_truncated_jpeg():
    with pytest.raises(BadImage):
        images.decode_rgb(media.BAD_INPUTS["truncated jpeg"][0], (8, 8), media.MAX_PIXELS)


def test_decode_honours_exif_orientation():
    pixels = images.decode_rgb(media.exif_rotated_jpeg(), (40, 20), media.MAX_PIXELS)
    assert pixels.shape == (40, 20, 3)
    top, bottom = pixels[5, 10], pixels[35, 10]
    assert top[0] > 150 and top[2] < 100, top      # red on top once rotated
    assert bottom[2] > 150 and bottom[0] < 100, bottom


@pytest.mark.parametrize("name,expected", [
    ("cmyk jpeg", media.RED), ("grayscale jpeg", (250, 250, 250)),
    ("16-bit png", (192, 192, 192)), ("animated gif", media.BLUE),
])
def test_decode_converts_modes_to_rgb(name, expected):
    pixels = images.decode_rgb(media.BAD_INPUTS[name][0], (4, 4), media.MAX_PIXELS)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 4, 3)
    assert np.abs(pixels.mean(axis=(0, 1)) - expected).max() < 12


def test_preprocess_modes():
    px = np.array([[[255, 0, 128]]], dtype=np.uint8)
    assert images.preprocess(px, "none").tolist() == [[[255.0, 0.0, 128.0]]]
    np.testing.assert_allclose(images.preprocess(px, "tf"), [[[1.0, -1.0, 128 / 127.5 - 1]]], rtol=1e-4)
    np.testing.assert_allclose(images.preprocess(px, "caffe"),
                               [[[128 - 103.939, 0 - 116.779, 255 - 123.68]]], rtol=1e-5)
    np.testing.assert_allclose(images.preprocess(px, "torch")[0, 0, 0], (1 - 0.485) / 0.229, rtol=1e-5)
