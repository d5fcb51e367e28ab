"""LLaVA-NeXT's anyres image input, computed as the original computes it. Each image is resized (aspect ratio
kept) and padded with black into the best grid of `image_grid_pinpoints`, cut into tiles of the tower's image
size, and preceded by a squashed copy of the whole image; the tower encodes every tile alone. The tiles'
features, merged into one map, lose the rows or columns only padding filled, and each row ends with the
`image_newline` vector (`spatial_unpad`); the whole image's features come first.

Pixels come from transformers' `LlavaNextImageProcessorPil` (the PIL backend, never torchvision). Where
transformers reads the same config differently from the original (the order of a grid pair, the rounding
of the unpadding) this module follows the original; docs/models.md tables each difference.
Reference: haotian-liu/LLaVA `llava/mm_utils.py` (select_best_resolution, resize_and_pad_image,
divide_to_patches, process_anyres_image, get_anyres_image_grid_shape) and `llava/model/llava_arch.py`
(unpad_image, the spatial_unpad branch of prepare_inputs_labels_for_multimodal).
"""

from __future__ import annotations

import torch

from .config import check_grid_pinpoints
from .model import image_features


def best_resolution(size: tuple[int, int], grids: list[list[int]]) -> tuple[int, int]:
    """(width, height) of the grid an image of `size` (width, height) goes into.

    Reference: mm_utils.py select_best_resolution: most image pixels kept, then least padding, the first
    listed grid winning a tie. The original reads each pair as (width, height); transformers' function reads
    (height, width), so it is given the pairs swapped, in the same order: the same grid wins every tie."""
    from transformers.image_processing_utils import select_best_resolution

    height, width = select_best_resolution((size[1], size[0]), [(h, w) for w, h in grids])
    return width, height


def unpadded_shape(rows: int, cols: int, size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of a `rows` x `cols` feature map of a padded image of `size` (width, height) once the
    padding is cut. Reference: llava_arch.py unpad_image (int() truncates; transformers rounds to 7 digits
    first, which keeps one more row or column for a few sizes, e.g. 110x352 on the 1.6 grids)."""
    width, height = size
    if width / height > cols / rows:
        kept = int(height * (cols / width))
        return rows - 2 * ((rows - kept) // 2), cols
    kept = int(width * (rows / height))
    return rows, cols - 2 * ((cols - kept) // 2)


class AnyresImages:
    """LLaVA-NeXT's `VisionInputs` for grids `grids` ([width, height] pairs, as the checkpoint's config lists
    them) of tiles of `tile` pixels, `side` x `side` features each."""

    name = "anyres"

    def __init__(self, grids, tile: int, patch: int):
        self.grids, self.tile, self.side = check_grid_pinpoints(grids, tile), tile, tile // patch

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """(columns, rows) of tiles for an image of `size` (width, height). Reference: get_anyres_image_grid_shape."""
        width, height = best_resolution(size, self.grids)
        return width // self.tile, height // self.tile

    def token_count(self, size: tuple[int, int]) -> int:
        """Image-token positions of an image of `size` (width, height): the whole image's features, then each
        unpadded row of the grid's features plus its newline."""
        cols, rows = self.grid(size)
        rows, cols = unpadded_shape(rows * self.side, cols * self.side, size)
        return self.side * self.side + rows * (cols + 1)

    def preprocess(self, bundle, images: list, mode: str) -> dict:
        """Tiles of each image (the whole image first) and the images' (height, width). The mode is not used:
        the 1.6 eval scripts preprocess every image with the model's anyres setting."""
        hw_grids = [[h, w] for w, h in self.grids]  # transformers' pair order
        tiles, sizes = [], []
        for image in images:
            out = bundle.image_processor(images=[image], image_grid_pinpoints=hw_grids, return_tensors="pt")
            tiles.append(out["pixel_values"][0])
            sizes.append(list(out["image_sizes"][0].tolist()))
        return {"pixel_values": torch.cat(tiles), "image_sizes": torch.tensor(sizes, dtype=torch.long)}

    def token_counts(self, bundle, pixels: dict) -> list[int]:
        return [self.token_count((w, h)) for h, w in pixels["image_sizes"].tolist()]

    def collate(self, pixels: list[dict]) -> dict:
        return {key: torch.cat([p[key] for p in pixels]) for key in ("pixel_values", "image_sizes")}

    def features(self, model, batch: dict) -> torch.Tensor:
        sizes = [(w, h) for h, w in batch["image_sizes"].tolist()]
        counts = [cols * rows + 1 for cols, rows in map(self.grid, sizes)]
        tiles = batch["pixel_values"].to(model.device)
        if tiles.shape[0] != sum(counts):
            raise ValueError(f"{tiles.shape[0]} tiles for images whose grids hold {sum(counts)}")
        features = image_features(model, tiles)
        newline = model.model.image_newline
        return torch.cat([self.merge(f, size, newline) for f, size in zip(features.split(counts), sizes, strict=True)])

    def merge(self, features: torch.Tensor, size: tuple[int, int], newline: torch.Tensor) -> torch.Tensor:
        """One image's tile features [1 + tiles, side * side, hidden] -> its positions [count, hidden].
        Reference: llava_arch.py, the spatial_unpad branch (permute, unpad, newline per row, flatten)."""
        cols, rows = self.grid(size)
        side, hidden = self.side, features.shape[-1]
        grid = features[1:].view(rows, cols, side, side, hidden).permute(4, 0, 2, 1, 3)
        grid = grid.reshape(hidden, rows * side, cols * side)
        kept_rows, kept_cols = unpadded_shape(rows * side, cols * side, size)
        top, left = (rows * side - kept_rows) // 2, (cols * side - kept_cols) // 2
        grid = grid[:, top:top + kept_rows, left:left + kept_cols]
        grid = torch.cat([grid, newline.to(grid.dtype)[:, None, None].expand(hidden, kept_rows, 1)], dim=-1)
        return torch.cat([features[0], grid.flatten(1, 2).transpose(0, 1)])

    def describe(self) -> dict:
        return {"vision": self.name, "grid_pinpoints": self.grids, "grid_pair": "width,height",
                "patch_merge": "spatial_unpad", "image_processor": "LlavaNextImageProcessorPil"}


def anyres_image_processor(tile: int, grids):
    """The preprocessing of the 1.6 releases' CLIP tower (openai/clip-vit-large-patch14-336 at `tile` px:
    bicubic, OpenAI mean/std) for anyres over `grids`, on transformers' PIL backend. (The grids it saves are
    the config's; `AnyresImages.preprocess` passes them in transformers' pair order at every call.)"""
    from transformers import LlavaNextImageProcessorPil
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    return LlavaNextImageProcessorPil(
        size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}, do_resize=True,
        do_center_crop=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD, do_convert_rgb=True, resample=3, do_pad=True, image_grid_pinpoints=grids)
