"""Image loading and LLaVA-1.5 preprocessing: expand-to-square with the CLIP mean colour ("pad"), or
the CLIP processor's own resize + centre crop ("crop"), then rescale and normalise.

Reference: haotian-liu/LLaVA `llava/mm_utils.py` `expand2square` and `process_images`
(`image_aspect_ratio == "pad"`); `llava/eval/model_vqa.py` and `model_vqa_science.py` at release call
the CLIP processor directly (crop).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import ImageError

IMAGE_MODES = ("pad", "crop")


def load_image(source) -> Image.Image:
    """Open an image from a path, raw bytes or a PIL image and return it as RGB.

    Any failure (missing file, truncated or non-image data) raises ImageError naming the source.
    """
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            img = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"image file not found: {path}")
            img = Image.open(path)
        img.load()
        return img.convert("RGB")
    except ImageError:
        raise
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
