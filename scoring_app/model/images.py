"""Image checks and decoding with Pillow.

Two paths, picked by the model's input kind:
- ``check_encoded``: for models that decode images themselves. Reads only the
  header, so the bytes pass to the model untouched (and are decoded once, by
  the model). A JPEG's size is read by ``imagesize`` from its frame header;
  ``Image.open`` (lazy too) would also parse its quantization tables in
  Python, which was the largest single cost of a tiny model's request.
  Everything else, and any JPEG ``imagesize`` cannot read, goes to Pillow,
  which gives the precise error.
- ``decode_rgb``: for image-tensor models. One decode, at reduced size where
  the format allows (JPEG draft mode), EXIF orientation applied, then RGB at
  the model's H x W.
"""

from __future__ import annotations

import io
import warnings

import imagesize
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadImage, TooManyPixels

# Per-channel constants of the usual Keras/PyTorch preprocessings.
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_JPEG_START = b"\xff\xd8\xff"  # SOI, then the first marker

# 16-bit and 32-bit integer greyscale modes, scaled down rather than clipped.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily and enforce the pixel limit before anything is decoded."""
    if not data:
        raise BadImage("the body is empty; send the image's bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image this service can read "
                       "(send JPEG, PNG, GIF, BMP or WebP bytes)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise TooManyPixels(f"the image is too large to decode safely: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"the image could not be read: {exc}") from None
    _check_pixels(*image.size, max_pixels)
    return image


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")


def check_encoded(data: bytes, max_pixels: int) -> bytes:
    """Header-only check for models that take the encoded bytes."""
    if data.startswith(_JPEG_START):
        width, height = imagesize.get(io.BytesIO(data), exif_rotation=False)
        if width > 0 and height > 0:
            _check_pixels(width, height, max_pixels)
            return data
    _open(data, max_pixels).close()
    return data


def decode_rgb(data: bytes, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """Decode to a ``uint8 [H, W, 3]`` RGB array at ``size`` = (H, W)."""
    height, width = size
    image = _open(data, max_pixels)
    try:
        with image:
            # JPEG can decode straight at 1/2, 1/4, 1/8 scale: far less work.
            image.draft("RGB", (width, height))
            image = ImageOps.exif_transpose(image)
            if image.mode in _WIDE_MODES:
                image = image.point(lambda v: v * (1 / 256)).convert("L")
            rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage(f"the image could not be decoded: {exc}") from None


def preprocess(pixels: np.ndarray, mode: str) -> np.ndarray:
    """``uint8 RGB [..., 3]`` -> ``float32`` as the model was trained on."""
    x = pixels.astype(np.float32)
    if mode == "caffe":
        return x[..., ::-1] - _CAFFE_MEAN_BGR
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    return x
