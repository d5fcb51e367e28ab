"""How a model family turns a request's images into what its model reads: pixel tensors, the number of
image-token positions each image takes in the prompt, and the image features spliced at those positions.
`SquareImages` is LLaVA-1.5's (one square per image, `image_seq_length` positions each); LLaVA-NeXT's anyres
tiling is `llava_model.anyres.AnyresImages`. A bundle names its family's in `LlavaBundle.vision`; generation
and training reach images only through it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from .model import image_features
from .preprocess import preprocess


class VisionInputs(Protocol):
    name: str

    def preprocess(self, bundle, images: list, mode: str) -> Any:
        """The pixels of one request's images (PIL, already loaded); `mode` is the request's image mode."""
        ...

    def token_counts(self, bundle, pixels) -> list[int]:
        """Image-token positions of each image in `pixels` (one request's), in order."""
        ...

    def collate(self, pixels: list) -> Any:
        """Several requests' pixels as one batch, images in order."""
        ...

    def features(self, model, batch) -> torch.Tensor:
        """Projected features of every image of a batch (moved to the model's device), concatenated in order:
        [positions, hidden]."""
        ...

    def describe(self) -> dict:
        """What the preprocessing depends on beyond the weights, template and image mode (for the fingerprint
        and config.json); empty for LLaVA-1.5."""
        ...


class SquareImages:
    """LLaVA-1.5: each image padded to a square or centre-cropped (the bundle's image mode, or the request's),
    one tower pass, `image_seq_length` features."""

    name = "square"

    def preprocess(self, bundle, images: list, mode: str) -> torch.Tensor:
        return preprocess(images, bundle.image_processor, mode)

    def token_counts(self, bundle, pixels: torch.Tensor) -> list[int]:
        return [bundle.model.config.image_seq_length] * len(pixels)

    def collate(self, pixels: list) -> torch.Tensor:
        return torch.cat(pixels)

    def features(self, model, batch: torch.Tensor) -> torch.Tensor:
        features = image_features(model, batch.to(model.device))
        return features.reshape(-1, features.shape[-1])

    def describe(self) -> dict:
        return {}


SQUARE_IMAGES = SquareImages()
