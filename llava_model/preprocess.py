"""Image loading and LLaVA-1.5 preprocessing: expand-to-square with the CLIP mean colour ("pad"), or
the CLIP processor's own resize + centre crop ("crop"), then rescale and normalise. `load_image` refuses,
from the header alone, any image whose decoding or preprocessing would need gigabytes.

Reference: haotian-liu/LLaVA `llava/mm_utils.py` `expand2square` and `process_images`
(`image_aspect_ratio == "pad"`); `llava/eval/model_vqa.py` and `model_vqa_science.py` at release call
the CLIP processor directly (crop).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import ImageError

IMAGE_MODES = ("pad", "crop")

# Budgets, checked on the header size before any pixel is decoded. Benchmark images are far inside them
# (VQAv2/GQA/TextVQA/VizWiz/POPE photos are at most ~4000x3000; MME posters and screenshots, ScienceQA
# diagrams and panoramas are smaller and under 20:1); an image over them is an ImageError, one row's error.
# - Pad mode builds a square canvas of side max(W, H), so the canvas (not the image) is what must fit:
#   max(W, H)**2 <= MAX_IMAGE_PIXELS = 8192**2 = 67.1M pixels (this also bounds W*H). Measured, pad + the
#   CLIP processor hold ~14 bytes per canvas pixel at their peak (the canvas, its array, the channel-first
#   copy and the PIL copy for the resize): ~0.94 GB, plus the decoded RGB image (<= 0.2 GB), per image.
#   It is below PIL's own warning threshold (Image.MAX_IMAGE_PIXELS, 89.5M), so PIL never warns about an
#   image accepted here; PIL's check (at open, and left as it is set) is a second guard whose error, or
#   warning turned into an error, is an ImageError too.
# - Crop mode resizes the shortest edge to 336 before cropping, so a W:H = r:1 image becomes 336r x 336:
#   MAX_ASPECT_RATIO = 100 keeps that at 11.3M pixels (34 MB of uint8 RGB); a 1x30000 image would be
#   336 x 10,080,000 (10 GB).
MAX_IMAGE_PIXELS = 8192 * 8192
MAX_ASPECT_RATIO = 100
# Formats LLaVA benchmark data comes in ("JPEG" covers cameras' multi-picture MPO files too); the others PIL
# can open (EPS runs Ghostscript, ICO/ICNS hold embedded images of another size, ...) are refused rather
# than handed to their decoders.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# PIL warns (two lines on stderr) at open for images between its warning and error thresholds, before our own
# check refuses them; an error instead becomes the one ImageError line below. Process-wide on purpose: a
# `catch_warnings` block per call is not thread-safe next to the runner's prefetch thread.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def check_image_size(width: int, height: int, name: str | None = None) -> None:
    """Raise ImageError when an image of this size would exceed the pixel or aspect-ratio budget."""
    image = f"image {width}x{height}" + (f" ({name})" if name else "")
    if width < 1 or height < 1:
        raise ImageError(f"{image} is empty")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{image} has {width * height:,} pixels (limit {MAX_IMAGE_PIXELS:,}); not decoded")
    long, short = max(width, height), min(width, height)
    if long > MAX_ASPECT_RATIO * short:
        ratio = f"{long / short:.2f}".rstrip("0").rstrip(".")
        raise ImageError(f"{image} has an aspect ratio of {ratio}:1 (limit {MAX_ASPECT_RATIO}:1)")
    _check_square(long, image)


def _check_square(side: int, image: str) -> None:
    """Pad mode's canvas (side x side) must fit the pixel budget."""
    if side * side > MAX_IMAGE_PIXELS:
        raise ImageError(f"{image} would be padded to a {side}x{side} square of {side * side:,} pixels "
                         f"(limit {MAX_IMAGE_PIXELS:,})")


def load_image(source) -> Image.Image:
    """Open an image from a path, raw bytes or a PIL image and return it as RGB (the first frame of an
    animated one).

    Any failure (missing file, truncated or non-image data, unsupported format, a size over the budgets
    above) raises ImageError naming the source; an oversized image is refused before it is decoded.
    """
    if isinstance(source, Image.Image):
        check_image_size(*source.size)
        return source.convert("RGB")
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            opened = Image.open(io.BytesIO(source), formats=IMAGE_FORMATS)
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"image file not found: {path}")
            opened = Image.open(path, formats=IMAGE_FORMATS)
        with opened as img:  # closes the file of a multi-frame image, which PIL keeps open for seeking
            check_image_size(*img.size, name=name)
            img.load()
            return img.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # PIL's check, at open
        raise ImageError(f"image {name} refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot read image {name}: {exc}") from None


def pad_color(image_mean) -> tuple[int, int, int]:
    """Reference: `tuple(int(x*255) for x in image_processor.image_mean)` -> (122, 116, 104) for CLIP."""
    return tuple(int(x * 255) for x in image_mean)


def expand_to_square(img: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """Paste the image centred on a square canvas of side max(W, H) filled with `color`.

    Reference: llava/mm_utils.py `expand2square` (offset `(side - dim) // 2` on the short axis).
    """
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    _check_square(side, f"image {width}x{height}")  # load_image refuses these; a caller may skip load_image
    canvas = Image.new(img.mode, (side, side), color)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


def preprocess(images, image_processor, mode: str):
    """PIL images -> pixel tensor [N, 3, S, S] with the checkpoint's CLIP image processor."""
    if mode not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {mode!r}; valid: {', '.join(IMAGE_MODES)}")
    if mode == "pad":
        color = pad_color(image_processor.image_mean)
        images = [expand_to_square(img, color) for img in images]
    return image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def clip_image_processor(image_size: int):
    """The CLIP preprocessing of `openai/clip-vit-large-patch14-336` (shortest edge, bicubic, centre
    crop, OpenAI mean/std), on the PIL backend: torchvision must not be installed next to transformers."""
    from transformers import CLIPImageProcessorPil
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
        resample=3,
    )
