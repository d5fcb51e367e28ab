"""Shared fixtures: one tiny LLaVA per test session (imports and building cost seconds, not the tests)."""

from __future__ import annotations

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
