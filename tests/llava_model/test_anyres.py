"""LLaVA-NeXT's anyres input against the original, re-implemented here from what haotian-liu/LLaVA does
(mm_utils.py select_best_resolution, resize_and_pad_image, divide_to_patches, process_anyres_image,
get_anyres_image_grid_shape; llava_arch.py unpad_image and the spatial_unpad merge): the pixels, the grids and
the image-token counts on many image sizes, the features against transformers' LlavaNext model, and the two
places where transformers reads the same config differently (docs/models.md), each shown on an image size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from llava_model.anyres import AnyresImages, anyres_image_processor
from tests.next_models import GRIDS, TILE, next_config, next_model

GRIDS_336 = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # liuhaotian/llava-v1.6-* config.json
MEAN, STD = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])


# ---- the original's functions, from its behaviour -----------------------------------------------------------
def original_best(size, grids):
    """Grids are (width, height); the first with the most kept pixels, then the least waste, wins."""
    width, height = size
    best, kept_best, waste_best = None, 0, math.inf
    for w, h in grids:
        scale = min(w / width, h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        if kept > kept_best or (kept == kept_best and w * h - kept < waste_best):
            best, kept_best, waste_best = (w, h), kept, w * h - kept
    return best


def original_pixels(image: Image.Image, grids, tile: int) -> np.ndarray:
    """Resize into the grid keeping the aspect ratio (ceil, capped), paste centred on black, cut row by row;
    the whole image squashed to one tile first; each through the CLIP normalisation."""
    w, h = original_best(image.size, grids)
    sw, sh = w / image.width, h / image.height
    new = (w, min(math.ceil(image.height * sw), h)) if sw < sh else (min(math.ceil(image.width * sh), w), h)
    canvas = Image.new("RGB", (w, h), (0, 0, 0))
    canvas.paste(image.resize(new), ((w - new[0]) // 2, (h - new[1]) // 2))
    tiles = [image.resize((tile, tile))]
    tiles += [canvas.crop((x, y, x + tile, y + tile)) for y in range(0, h, tile) for x in range(0, w, tile)]
    arrays = [((np.asarray(t, dtype=np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1) for t in tiles]
    return np.stack(arrays).astype(np.float32)


def original_count(size, grids, tile: int, side: int) -> int:
    """Whole-image features, then the grid's feature map minus the padding (int() of the scaled side, the
    margin halved with floor division on both ends) with one newline per kept row."""
    w, h = original_best(size, grids)
    rows, cols = h // tile * side, w // tile * side
    width, height = size
    if width / height > cols / rows:
        rows -= 2 * ((rows - int(height * (cols / width))) // 2)
    else:
        cols -= 2 * ((cols - int(width * (rows / height))) // 2)
    return side * side + rows * (cols + 1)


SIZES = [(300, 200), (200, 300), (336, 336), (500, 400), (640, 480), (1000, 250), (90, 700), (1024, 899), (17, 33)]


def photo(size, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


class FakeBundle:
    def __init__(self, processor):
        self.image_processor = processor


# ---- pixels and grids -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_pixels_equal_the_originals_on_the_1_6_grids(size):
    vision = AnyresImages(GRIDS_336, 336, 14)
    image = photo(size)
    pixels = vision.preprocess(FakeBundle(anyres_image_processor(336, GRIDS_336)), [image], "pad")
    expected = original_pixels(image, GRIDS_336, 336)
    assert pixels["pixel_values"].shape == expected.shape
    assert_close(pixels["pixel_values"], torch.from_numpy(expected), atol=1e-5, rtol=0)
    assert pixels["image_sizes"].tolist() == [[size[1], size[0]]]


def test_grid_and_token_count_equal_the_originals():
    vision = AnyresImages(GRIDS_336, 336, 14)
    for width in range(16, 1400, 23):
        for height in range(16, 1400, 31):
            w, h = original_best((width, height), GRIDS_336)
            assert vision.grid((width, height)) == (w // 336, h // 336), (width, height)
            assert vision.token_count((width, height)) == original_count((width, height), GRIDS_336, 336, 24)


def test_transformers_breaks_grid_ties_the_other_way_and_we_follow_the_original():
    """transformers reads a grid pair as (height, width), the original as (width, height). The 1.6 list holds
    each grid in both orientations, so only ties differ: an image that fits one tile upscaled (both sides
    <= 336) ties between 1x2 and 2x1, and each picks the first pair of the list in its own reading."""
    from transformers import LlavaNextImageProcessorPil

    image = photo((300, 200))
    as_transformers = LlavaNextImageProcessorPil(image_grid_pinpoints=GRIDS_336, size={"shortest_edge": 336},
                                                 crop_size={"height": 336, "width": 336})
    assert as_transformers(images=[image], return_tensors="pt")["pixel_values"].shape[1] == 3  # 1 + 2 tiles
    assert original_best((300, 200), GRIDS_336) == (336, 672)  # one column, two rows
    assert AnyresImages(GRIDS_336, 336, 14).grid((300, 200)) == (1, 2)
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

    assert get_anyres_image_grid_shape([200, 300], GRIDS_336, 336) == (1, 2)  # (rows, cols): two columns


def transformers_count(size) -> int:
    """The image-token count of transformers' LlavaNextProcessor (llava-hf settings: CLS counted, then dropped),
    given the 1.6 grids in its own pair order, so that only the unpadding can differ from ours."""
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    from llava_model.tiny_tokenizer import tiny_tokenizer

    swapped = [[h, w] for w, h in GRIDS_336]
    processor = LlavaNextProcessor(LlavaNextImageProcessorPil(image_grid_pinpoints=swapped), tiny_tokenizer(),
                                   patch_size=14, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1)
    return processor._get_number_of_features(size[1], size[0], 336, 336) - 1


@pytest.mark.parametrize("size,more", [((110, 352), 2 * 48), ((176, 198), 2 * 25)])
def test_transformers_rounds_the_unpadding_and_we_truncate_as_the_original(size, more):
    """110x352 on the 1.6 grids (one column of two tiles, a 48 x 24 map): the kept width 110 * (48 / 352) = 15
    is 14.999999999999998 in floating point, which the original's int() makes 14 (5 columns of padding cut on
    each side) and transformers' round(x, 7) makes 15 (4 on each side): transformers keeps two more columns.
    176x198 likewise keeps two more rows (26.999999999999996)."""
    vision = AnyresImages(GRIDS_336, 336, 14)
    assert vision.token_count(size) == original_count(size, GRIDS_336, 336, 24)
    assert transformers_count(size) == vision.token_count(size) + more


def test_token_count_equals_transformers_processor_where_both_agree():
    vision = AnyresImages(GRIDS_336, 336, 14)
    sizes = [(w, h) for w in range(120, 900, 61) for h in range(120, 900, 97)]
    assert [vision.token_count(s) for s in sizes] == [transformers_count(s) for s in sizes]


# ---- features ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_next():
    return next_model(next_config(vocab_size=100, image_token_id=99), seed=1)


@torch.inference_mode()
@pytest.mark.parametrize("sizes", [[(160, 96)], [(96, 160), (333, 333), (400, 120)]])
def test_features_equal_transformers_llava_next(tiny_next, sizes):
    vision = AnyresImages(GRIDS, TILE, 14)
    bundle = FakeBundle(anyres_image_processor(TILE, GRIDS))
    batch = vision.collate([vision.preprocess(bundle, [photo(s, i)], "pad") for i, s in enumerate(sizes)])
    ours = vision.features(tiny_next, batch)
    counts = [vision.token_count(s) for s in sizes]
    assert ours.shape[0] == sum(counts)
    tiles = batch["pixel_values"].split([c * r + 1 for c, r in map(vision.grid, sizes)])
    padded = torch.nn.utils.rnn.pad_sequence(list(tiles), batch_first=True)  # transformers' 5-D batch layout
    theirs = tiny_next.model.get_image_features(padded, batch["image_sizes"]).pooler_output
    assert_close(ours, torch.cat(theirs))


def test_a_batch_with_the_wrong_number_of_tiles_is_refused(tiny_next):
    vision = AnyresImages(GRIDS, TILE, 14)
    pixels = vision.preprocess(FakeBundle(anyres_image_processor(TILE, GRIDS)), [photo((100, 100))], "pad")
    pixels["pixel_values"] = pixels["pixel_values"][:-1]
    with pytest.raises(ValueError, match="tiles for images whose grids hold"):
        vision.features(tiny_next, pixels)


@pytest.mark.parametrize("grids,fragment", [
    ([], "list of 1 to"), ("[[28, 56]]", "list of 1 to"), ([[28, 50]], "multiples of the 28 px tile"),
    ([[28, 56, 84]], "[width, height] pair"), ([[True, 28]], "pair"), ([[28 * 9, 28 * 9]], "at most 64 tiles"),
])
def test_bad_grids_are_refused(grids, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        AnyresImages(grids, TILE, 14)
