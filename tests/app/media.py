"""Test images, good and bad, made in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

MAX_BODY = 256 * 1024
MAX_PIXELS = 4_000_000

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def solid(colour, size=(48, 40), mode="RGB") -> Image.Image:
    return Image.new("RGB", size, colour).convert(mode)


def jpeg(colour=RED, **kw) -> bytes:
    return encode(solid(colour), "JPEG", **kw)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def png16(colour=GREEN) -> bytes:
    """16-bit greyscale PNG (mode I;16) of a bright grey: scaled, not clipped."""
    value = np.full((40, 48), 0xC000, dtype=np.uint16)
    return encode(Image.fromarray(value), "PNG")


def animated_gif(colours=(BLUE, RED, RED)) -> bytes:
    frames = [solid(c) for c in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def exif_rotated_jpeg() -> bytes:
    """Stored 40 wide x 20 high, left half red, right half blue, with EXIF
    orientation 6 (rotate 90 degrees clockwise to display): shown 20 x 40,
    red on top."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

# name -> (body, content type, expected status by model input kind, expected top label)
# Valid images in unusual forms (CMYK, greyscale, 16-bit, animated: first
# frame, EXIF-rotated) are scored: 200. With the encoded-input model the
# model's own decoder has the last word; the table says what it answers.
BAD_INPUTS = {
    "empty body": (b"", "image/jpeg", {"encoded": 400, "tensor": 400}, None),
    "truncated jpeg": (jpeg(quality=95)[:300], "image/jpeg", {"encoded": 400, "tensor": 400}, None),
    "text": (b"hello, this is not an image\n" * 10, "application/octet-stream",
             {"encoded": 400, "tensor": 400}, None),
    "pdf": (PDF, "application/octet-stream", {"encoded": 400, "tensor": 400}, None),
    "png claiming 100000x100000": (png_header_only(100000, 100000), "image/png",
                                   {"encoded": 400, "tensor": 400}, None),
    "cmyk jpeg": (encode(solid(RED, mode="CMYK"), "JPEG"), "image/jpeg",
                  {"encoded": 200, "tensor": 200}, "red"),
    "grayscale jpeg": (encode(solid((250, 250, 250), mode="L"), "JPEG"), "image/jpeg",
                       {"encoded": 200, "tensor": 200}, "white"),
    "16-bit png": (png16(), "image/png", {"encoded": 200, "tensor": 200}, "white"),
    "animated gif": (animated_gif(), "image/gif", {"encoded": 200, "tensor": 200}, "blue"),
    "exif-rotated jpeg": (exif_rotated_jpeg(), "image/jpeg", {"encoded": 200, "tensor": 200}, None),
    "wrong content type": (jpeg(), "text/plain", {"encoded": 415, "tensor": 415}, None),
    "multipart form": (jpeg(), "multipart/form-data; boundary=x", {"encoded": 415, "tensor": 415}, None),
    "json content type, jpeg body": (jpeg(), "application/json", {"encoded": 400, "tensor": 400}, None),
    "oversized body": (b"\xff" * (MAX_BODY + 1), "image/jpeg", {"encoded": 413, "tensor": 413}, None),
}
