"""The request body: one deterministic, photo-like JPEG.

Random noise would compress badly and make decode the whole cost; a smooth random field with
mild grain gives sizes and decode times close to a real photograph of the same resolution.
"""
import io

import numpy as np
from PIL import Image


def make_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """Encode a ``width`` x ``height`` RGB image that looks statistically like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
