"""The images a served model receives are the protocol's: preprocessed (pad or crop) up to the input size as
LLaVA-1.5 does, so that the CLIP processor on the sent image gives exactly the pixel values the local engine
computes from the original; sent losslessly; each distinct image encoded once."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

from llava_eval.backends import exact_inputs
from llava_eval.backends.exact_inputs import PAD_COLOR, ImageEncoder, data_url, png_bytes, prepare_image
from llava_model.preprocess import clip_image_processor, pad_color, preprocess
from tests.conftest import shape_image

SIZES = [(640, 480), (480, 640), (336, 336), (100, 50), (337, 1000), (1000, 999), (20, 20)]


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_the_pad_colour_is_the_clip_mean():
    from transformers.image_utils import OPENAI_CLIP_MEAN

    assert PAD_COLOR == pad_color(OPENAI_CLIP_MEAN) == (122, 116, 104)


@pytest.mark.parametrize("mode", ["pad", "crop"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_clip_processor_on_the_sent_image_gives_the_local_engines_pixels(mode, size):
    processor = clip_image_processor(336)
    image = shape_image(*size, seed=size[0] % 7)
    sent = prepare_image(image, mode, 336)
    assert sent.size == (336, 336) and sent.mode == "RGB"
    local = preprocess([image], processor, mode)
    served = preprocess([sent], processor, mode)  # what a server's own CLIP preprocessing makes of it
    assert torch.equal(local, served)


def test_a_wide_image_is_padded_with_the_clip_mean_above_and_below():
    sent = prepare_image(Image.new("RGB", (400, 100), (255, 0, 0)), "pad", 336)
    assert sent.getpixel((168, 0)) == PAD_COLOR and sent.getpixel((168, 335)) == PAD_COLOR
    assert sent.getpixel((168, 168)) == (255, 0, 0)


def test_the_png_is_lossless():
    sent = prepare_image(shape_image(500, 300, seed=3), "pad", 336)
    assert decode(data_url(png_bytes(sent))).tobytes() == sent.tobytes()


def test_an_image_is_encoded_once_for_all_its_questions(monkeypatch):
    calls = []
    real = exact_inputs.png_bytes
    monkeypatch.setattr(exact_inputs, "png_bytes", lambda image: calls.append(1) or real(image))
    encoder = ImageEncoder(336)
    first = shape_image(200, 100, seed=1)
    same_pixels = first.copy()
    urls = [encoder.url(im, "pad") for im in (first, same_pixels, first)]
    assert len(set(urls)) == 1 and len(calls) == 1
    assert encoder.url(first, "crop") != urls[0] and len(calls) == 2  # another preprocessing, another image
    assert decode(urls[0]).size == (336, 336)


def test_worker_processes_encode_the_same_bytes_as_this_one():
    images = [Image.new("RGB", (300, 120), (200, 30, 30)), Image.linear_gradient("L").resize((90, 200)),
              Image.new("RGBA", (50, 50), (1, 2, 3, 4)), Image.new("P", (64, 32), 7)]
    here, there = ImageEncoder(), ImageEncoder(processes=1)
    try:
        for image in images:
            for mode in ("pad", "crop"):
                assert there.url(image, mode) == here.url(image, mode)
    finally:
        there.close()
