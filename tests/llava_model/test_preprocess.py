"""Image loading and LLaVA-1.5 preprocessing: CLIP-mean pad colour, expand-to-square geometry, pad and crop
pixel values computed analytically, and ImageError for unreadable inputs. Reproduces haotian-liu/LLaVA
llava/mm_utils.py expand2square / process_images (image_aspect_ratio "pad") and the plain CLIP processor
call of llava/eval/model_vqa.py (resize shortest edge + centre crop).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from llava_model.errors import ImageError
from llava_model.preprocess import (
    check_image_size,
    clip_image_processor,
    expand_to_square,
    load_image,
    pad_color,
    preprocess,
)

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
PAD = (122, 116, 104)  # int(255 * mean) per channel: int(122.77), int(116.75), int(104.09)
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


def normalized(rgb) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float64) / 255 - MEAN) / STD


@pytest.fixture(scope="module")
def processor():
    return clip_image_processor(336)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def assert_region(arr: np.ndarray, rgb) -> None:
    """arr: [H, W, 3] uint8 region that must be exactly `rgb`."""
    assert arr.size > 0
    assert (arr == np.asarray(rgb, dtype=np.uint8)).all()


def assert_normalized(region: np.ndarray, rgb) -> None:
    """region: [3, H, W] normalized pixels that must all equal the normalized `rgb`."""
    assert region.size > 0
    expected = normalized(rgb)[:, None, None]
    assert np.abs(region.astype(np.float64) - expected).max() < 1e-5


# --- pad colour and expand_to_square -----------------------------------------------------------------


def test_pad_color_of_openai_clip_mean():
    from transformers.image_utils import OPENAI_CLIP_MEAN

    assert pad_color(OPENAI_CLIP_MEAN) == PAD
    assert pad_color(MEAN.tolist()) == PAD
    assert pad_color((0.5, 0.5, 0.5)) == (127, 127, 127)  # truncation, not rounding (127.5 -> 127)


def test_expand_wide_image_pads_top_and_bottom():
    out = expand_to_square(Image.new("RGB", (200, 100), RED), PAD)
    assert out.size == (200, 200)
    arr = pixels(out)
    assert_region(arr[0:50], PAD)
    assert_region(arr[50:150], RED)
    assert_region(arr[150:200], PAD)


def test_expand_tall_image_pads_left_and_right():
    out = expand_to_square(Image.new("RGB", (100, 200), RED), PAD)
    assert out.size == (200, 200)
    arr = pixels(out)
    assert_region(arr[:, 0:50], PAD)
    assert_region(arr[:, 50:150], RED)
    assert_region(arr[:, 150:200], PAD)


def test_expand_odd_difference_puts_the_extra_row_at_the_bottom():
    # side 201, offset (201 - 100) // 2 = 50: 50 pad rows on top, 51 at the bottom.
    arr = pixels(expand_to_square(Image.new("RGB", (201, 100), RED), PAD))
    assert arr.shape == (201, 201, 3)
    assert_region(arr[0:50], PAD)
    assert_region(arr[50:150], RED)
    assert_region(arr[150:201], PAD)


def test_expand_odd_difference_tall():
    arr = pixels(expand_to_square(Image.new("RGB", (100, 201), BLUE), PAD))
    assert arr.shape == (201, 201, 3)
    assert_region(arr[:, 0:50], PAD)
    assert_region(arr[:, 50:150], BLUE)
    assert_region(arr[:, 150:201], PAD)


def test_expand_square_image_unchanged():
    img = Image.new("RGB", (64, 64), GREEN)
    out = expand_to_square(img, PAD)
    assert out.size == (64, 64)
    assert_region(pixels(out), GREEN)


def test_expand_keeps_image_content_in_place():
    img = Image.new("RGB", (4, 2), RED)
    img.putpixel((0, 0), BLUE)
    img.putpixel((3, 1), GREEN)
    arr = pixels(expand_to_square(img, PAD))
    assert arr.shape == (4, 4, 3)
    assert tuple(arr[1, 0]) == BLUE  # (0, 0) moves down by (4 - 2) // 2 = 1 row
    assert tuple(arr[2, 3]) == GREEN
    assert_region(arr[0:1], PAD)
    assert_region(arr[3:4], PAD)


# --- preprocess: pad mode -----------------------------------------------------------------------------


def test_pad_mode_wide_solid_image_values(processor):
    colour = (200, 10, 90)
    out = preprocess([Image.new("RGB", (672, 336), colour)], processor, "pad")
    assert tuple(out.shape) == (1, 3, 336, 336)
    arr = out[0].numpy()
    # 672x672 canvas, image rows 168..503 -> rows 84..251 after the 2x downscale.
    assert_normalized(arr[:, 0:76, :], PAD)
    assert_normalized(arr[:, 100:237, :], colour)
    assert_normalized(arr[:, 260:336, :], PAD)


def test_pad_mode_tall_solid_image_values(processor):
    colour = (20, 220, 40)
    out = preprocess([Image.new("RGB", (336, 672), colour)], processor, "pad")
    assert tuple(out.shape) == (1, 3, 336, 336)
    arr = out[0].numpy()
    assert_normalized(arr[:, :, 0:76], PAD)
    assert_normalized(arr[:, :, 100:237], colour)
    assert_normalized(arr[:, :, 260:336], PAD)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1000, 37), (37, 1000), (336, 336), (100, 100)])
def test_pad_mode_shape_is_always_square(processor, size):
    out = preprocess([Image.new("RGB", size, (1, 2, 3))], processor, "pad")
    assert tuple(out.shape) == (1, 3, 336, 336)


def test_pad_mode_batch(processor):
    images = [Image.new("RGB", (300, 200), RED), Image.new("RGB", (200, 300), BLUE)]
    out = preprocess(images, processor, "pad")
    assert tuple(out.shape) == (2, 3, 336, 336)
    assert_normalized(out[0].numpy()[:, 168:169, 168:169], RED)
    assert_normalized(out[1].numpy()[:, 168:169, 168:169], BLUE)


# --- preprocess: crop mode ----------------------------------------------------------------------------


def test_crop_mode_keeps_centre_columns(processor):
    img = Image.new("RGB", (672, 336), BLUE)  # columns 0..223 blue
    img.paste(RED, (224, 0, 448, 336))  # columns 224..447 red
    img.paste(GREEN, (448, 0, 672, 336))  # columns 448..671 green
    out = preprocess([img], processor, "crop")
    assert tuple(out.shape) == (1, 3, 336, 336)
    arr = out[0].numpy()
    # Shortest edge is already 336 (no resize); centre crop keeps columns 168..503:
    # blue 168..223 -> 0..55, red 224..447 -> 56..279, green 448..503 -> 280..335.
    assert_normalized(arr[:, :, 0:53], BLUE)
    assert_normalized(arr[:, :, 59:277], RED)
    assert_normalized(arr[:, :, 283:336], GREEN)


def test_crop_mode_tall_image_shape(processor):
    out = preprocess([Image.new("RGB", (300, 700), RED)], processor, "crop")
    assert tuple(out.shape) == (1, 3, 336, 336)
    assert_normalized(out[0].numpy(), RED)


def test_unknown_mode_raises(processor):
    with pytest.raises(ValueError, match="unknown image mode"):
        preprocess([Image.new("RGB", (10, 10))], processor, "resize")


# --- load_image ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_load_png_path_returns_rgb(tmp_path, mode):
    colour = {"RGB": (10, 20, 30), "L": 77, "RGBA": (10, 20, 30, 255), "P": 5}[mode]
    path = tmp_path / f"img_{mode}.png"
    Image.new(mode, (8, 6), colour).save(path)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (8, 6)
    img_str = load_image(str(path))
    assert img_str.mode == "RGB"
    if mode == "L":
        assert img.getpixel((0, 0)) == (77, 77, 77)
    if mode in ("RGB", "RGBA"):
        assert img.getpixel((3, 3)) == (10, 20, 30)


def test_load_bytes(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buf, format="PNG")
    img = load_image(buf.getvalue())
    assert img.mode == "RGB" and img.size == (5, 4)
    assert img.getpixel((0, 0)) == (1, 2, 3)
    assert load_image(bytearray(buf.getvalue())).size == (5, 4)


def test_load_pil_image():
    img = load_image(Image.new("RGBA", (3, 3), (9, 8, 7, 128)))
    assert img.mode == "RGB" and img.size == (3, 3)
    rgb = Image.new("RGB", (3, 3), (9, 8, 7))
    assert load_image(rgb).getpixel((1, 1)) == (9, 8, 7)


def test_load_missing_path(tmp_path):
    path = tmp_path / "missing" / "nope.png"
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageError):
        load_image(str(path))


def test_load_directory_raises(tmp_path):
    with pytest.raises(ImageError):
        load_image(tmp_path)


def test_load_garbage_file(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError, match="cannot read image") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_load_garbage_bytes():
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(b"\x00\x01garbage")


def test_load_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # incompressible: IDAT spans the file
    full = tmp_path / "full.png"
    Image.fromarray(noise).save(full)
    data = full.read_bytes()
    cut = tmp_path / "truncated.png"
    cut.write_bytes(data[: len(data) // 2])
    assert load_image(full).size == (64, 64)
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert str(cut) in str(info.value)
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2])


# --- budgets: decompression bombs and extreme aspect ratios, refused from the header ------------------------


def test_load_refuses_a_decompression_bomb_before_decoding(tmp_path, bomb_png, no_big_pixels):
    data = bomb_png(20000, 20000)
    assert len(data) < 100_000  # tiny on disk, 400M pixels decoded
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    # PIL's own check (Image.MAX_IMAGE_PIXELS, at open) meets this one first.
    with pytest.raises(ImageError, match=r"image .*bomb\.png refused as a decompression bomb: .*400000000 pixels"):
        load_image(path)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(data)


def test_load_refuses_the_bomb_when_pil_check_is_off(tmp_path, monkeypatch, bomb_png, no_big_pixels):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's guard is not the one relied on
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(20000, 20000))
    with pytest.raises(ImageError, match=r"image 20000x20000 \(.*bomb\.png\) has 400,000,000 pixels "
                                         r"\(limit 67,108,864\); not decoded"):
        load_image(path)
    with pytest.raises(ImageError, match="400,000,000 pixels"):
        load_image(bomb_png(10000, 40000))


def test_pil_decompression_bomb_error_and_warning_are_image_errors(monkeypatch, bomb_png):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 64x64 = 4096: over PIL's warning, under its error
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb_png(100, 100))  # over 2 x 3000: PIL's DecompressionBombError
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="decompression bomb"):
            load_image(bomb_png(64, 64))


def test_load_refuses_an_extreme_aspect_ratio(tmp_path, no_big_pixels):
    path = tmp_path / "line.png"
    Image.new("L", (1, 30000)).save(path)  # ~200 bytes; its pad canvas would be 30000x30000
    assert path.stat().st_size < 1000
    with pytest.raises(ImageError, match=r"image 1x30000 \(.*line.png\) has an aspect ratio of 30000:1 "
                                         r"\(limit 100:1\)"):
        load_image(path)
    with pytest.raises(ImageError, match="aspect ratio of 30000:1"):
        load_image(path.read_bytes())


def test_load_refuses_a_pil_image_over_budget(no_big_pixels):
    with pytest.raises(ImageError, match=r"image 30000x1 has an aspect ratio of 30000:1"):
        load_image(Image.new("L", (30000, 1)))
    with pytest.raises(ImageError, match="empty"):
        load_image(Image.new("RGB", (0, 5)))


def test_load_refuses_an_image_whose_pad_square_is_too_large(bomb_png, no_big_pixels):
    # 9000x200: 1.8M pixels and 45:1, but pad mode would build a 9000x9000 canvas (81M pixels).
    with pytest.raises(ImageError, match="would be padded to a 9000x9000 square of 81,000,000 pixels"):
        load_image(bomb_png(9000, 200))


@pytest.mark.parametrize("size", [(8192, 8192), (8192, 82), (82, 8192), (100, 1), (1, 100), (4000, 3000)])
def test_sizes_within_budget_pass(size):
    check_image_size(*size)


@pytest.mark.parametrize(("size", "message"), [((8192, 8193), "pixels"), ((101, 1), "101:1"), ((1, 101), "101:1"),
                                               ((8193, 100), "8193x8193 square"), ((1005, 10), "100.5:1")])
def test_sizes_over_budget_fail(size, message):
    with pytest.raises(ImageError, match=message):
        check_image_size(*size)


def test_expand_to_square_refuses_a_giant_canvas(no_big_pixels):
    with pytest.raises(ImageError, match="1x9000 would be padded to a 9000x9000 square"):
        expand_to_square(Image.new("RGB", (1, 9000)), PAD)


def test_load_refuses_formats_outside_the_list():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), RED).save(buf, format="PPM")  # PIL can read it; benchmark data never holds it
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(buf.getvalue())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_load_accepts_benchmark_formats(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(buf, format=fmt)
    assert load_image(buf.getvalue()).size == (8, 8)


def test_load_animated_gif_gives_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (6, 4), RED), Image.new("RGB", (6, 4), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (6, 4) and img.getpixel((0, 0)) == RED


def test_an_image_past_pils_warning_threshold_is_one_error_line(tmp_path, bomb_png):
    """10000 x 10000 lies between PIL's warning (89.5M) and error (179M) thresholds: PIL's two warning lines
    must not precede the one error line."""
    import subprocess
    import sys

    path = tmp_path / "big.png"
    path.write_bytes(bomb_png(10000, 10000))
    done = subprocess.run([sys.executable, "-m", "llava_eval", "generate", "--model", "tiny", "--image", str(path),
                           "--prompt", "What is this?"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: image ") and "big.png" in lines[0], done.stderr
