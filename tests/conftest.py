"""Shared fixtures: one tiny LLaVA per test session (imports and building cost seconds, not the tests)."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image, ImageDraw


@pytest.fixture(scope="session")
def tiny_bundle():
    from llava_model.checkpoint import load_bundle

    return load_bundle("tiny", device="cpu", dtype="float32", seed=0)


def shape_image(width: int, height: int, seed: int) -> Image.Image:
    """A small drawn image, different for every seed."""
    img = Image.new("RGB", (width, height), (255 - 20 * seed % 255, 255, 240))
    draw = ImageDraw.Draw(img)
    colour = ((70 * seed) % 256, (130 + 40 * seed) % 256, (200 - 30 * seed) % 256)
    draw.ellipse((width // 5, height // 5, width // 2 + seed, height // 2 + seed), fill=colour)
    draw.rectangle((width // 2, height // 3, width - 5, height - 5), fill=colour[::-1])
    return img


@pytest.fixture
def make_image():
    return shape_image


def png_of_size(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size; 20000x20000 takes ~50 KB: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows, packer = bytes(1 + (width + 7) // 8) * 1000, zlib.compressobj(9)  # filter byte + packed bits, per row
    idat = b"".join(packer.compress(rows) for _ in range(height // 1000))
    idat += packer.compress(rows[:len(rows) // 1000 * (height % 1000)]) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def bomb_png():
    return png_of_size


@pytest.fixture
def no_big_pixels(monkeypatch):
    """Fail the test on any decode, canvas or resize of over 10M pixels (an AssertionError, which load_image
    does not turn into an ImageError), so a refused image is known to be refused before its pixels exist."""
    from PIL import ImageFile

    def check(size) -> None:
        assert size[0] * size[1] <= 10_000_000, f"allocated an image of {size[0]}x{size[1]} pixels"

    real_load, real_new, real_resize = ImageFile.ImageFile.load, Image.new, Image.Image.resize

    def load(self):
        check(self.size)
        return real_load(self)

    def new(mode, size, *args, **kwargs):
        check(size)
        return real_new(mode, size, *args, **kwargs)

    def resize(self, size, *args, **kwargs):
        check(size)
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(Image, "new", new)
    monkeypatch.setattr(Image.Image, "resize", resize)
