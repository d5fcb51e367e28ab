"""Build LLaVA models on transformers' `LlavaForConditionalGeneration`, and splice image features into
the token embeddings.

The splice is ours (transformers' own forward embeds the image-token id, which an original LLaVA
checkpoint's 32000-row vocabulary does not have): placeholder positions are embedded as id 0 and then
overwritten with the projected image features, exactly where transformers would put them.
Reference: haotian-liu/LLaVA `llava/model/llava_arch.py` `prepare_inputs_labels_for_multimodal`.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


class LinearProjector(nn.Module):
    """The single linear projector of LLaVA v1 and the paper's ablation (`mm_projector_type="linear"`)."""

    def __init__(self, vision_hidden: int, text_hidden: int, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=bias)

    def forward(self, image_features):
        return self.linear_1(image_features)


def projector_type(model) -> str:
    """The projector the model holds: "linear" or "mlp2x_gelu" (transformers' own MLP projector)."""
    return "linear" if isinstance(model.model.multi_modal_projector, LinearProjector) else "mlp2x_gelu"


def apply_projector_type(model) -> None:
    """Make the projector the one `config.llava_projector` names (set by `build_llava_config`; transformers
    builds the MLP one), freshly initialised when it has to be replaced."""
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    cfg = model.config
    if cfg.llava_projector == projector_type(model):
        return
    if cfg.llava_projector == "linear":
        model.model.multi_modal_projector = LinearProjector(
            cfg.vision_config.hidden_size, cfg.text_config.hidden_size, cfg.multimodal_projector_bias
        )
    else:
        model.model.multi_modal_projector = LlavaMultiModalProjector(cfg)


@functools.cache
def _linear_llava_class():
    from transformers import LlavaForConditionalGeneration
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    class LinearProjectorLlava(LlavaForConditionalGeneration):
        """transformers' LLaVA with the linear projector from construction on."""

        def __init__(self, config):
            super().__init__(config)
            apply_projector_type(self)

    # transformers maps saved keys only for its own classes and for those registered under their name.
    register_checkpoint_conversion_mapping(LinearProjectorLlava.__name__, get_checkpoint_conversion_mapping("llava"))
    return LinearProjectorLlava


def llava_class(projector: str | None):
    """The class whose `from_pretrained` loads a checkpoint recording `projector` (llava-hf checkpoints
    record none: transformers' MLP projector). transformers 5 saves the llava-hf key layout and maps it
    back only while loading, so a linear model must exist before its weights are read."""
    from transformers import LlavaForConditionalGeneration

    return _linear_llava_class() if projector == "linear" else LlavaForConditionalGeneration


def build_llava(config, seed: int = 0, dtype: torch.dtype = torch.float32, device: str | None = None):
    """A `LlavaForConditionalGeneration` with seeded random weights for `config`."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = LlavaForConditionalGeneration(config)
        apply_projector_type(model)
    return model.to(dtype).eval()


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected image features [N, image_seq_length, hidden]: hidden_states[vision_feature_layer] of the
    CLIP tower, CLS dropped (strategy "default"), through the projector."""
    cfg = model.config
    vision_dtype = next(model.model.vision_tower.parameters()).dtype
    out = model.model.vision_tower(pixel_values.to(vision_dtype), output_hidden_states=True, return_dict=True)
    feats = out.hidden_states[cfg.vision_feature_layer]
    if cfg.vision_feature_select_strategy == "default":
        feats = feats[:, 1:]
    return model.model.multi_modal_projector(feats)


def embed_inputs(model, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 features: torch.Tensor | None = None) -> torch.Tensor:
    """Token embeddings with every image placeholder replaced, in order, by image feature vectors."""
    image_token_id = model.config.image_token_id
    mask = input_ids == image_token_id
    embeds = model.get_input_embeddings()(input_ids.masked_fill(mask, 0))
    n_slots = int(mask.sum())
    if n_slots == 0:
        return embeds
    if features is None:
        if pixel_values is None:
            raise ValueError("the prompt holds image placeholders but no image was given")
        features = image_features(model, pixel_values)
    features = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
    if features.shape[0] != n_slots:
        raise ValueError(f"{n_slots} image placeholder tokens but {features.shape[0]} image feature vectors")
    return embeds.masked_scatter(mask.unsqueeze(-1), features)
