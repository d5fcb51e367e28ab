"""The LLaVA-NeXT backend: llava-hf `llava-v1.6-*` directories (`model_type: llava_next`), original
`liuhaotian/llava-v1.6-*` checkpoints (converted in memory) and the presets on LLaVA-NeXT's machinery
(`llava-v1.5-13b-hd`, `tiny-hd`, ...), loaded by `llava_model.next.load_next_bundle` and answered by the same
`LlavaEngine` as LLaVA-1.5 with the scheduling `--engine` picks. Prompts are the paper's task prompts in the
template the checkpoint's release was evaluated with; images go through anyres.
"""

from __future__ import annotations

from llava_model.config import is_next_config
from llava_model.presets import NEXT_PRESETS
from llava_types import UserError

from ..engine import LlavaEngine
from ..scheduling import get_strategy
from .entry import BackendEntry, BackendOptions
from .llava import LlavaBackend

NAME = "llava-next"


def open_llava_next(model: str, options: BackendOptions) -> LlavaBackend:
    from llava_model.next import load_next_bundle

    strategy = get_strategy(options.engine)  # bad values are refused before the weights load
    if options.image_mode not in (None, "anyres"):
        raise UserError(f"--image-mode {options.image_mode} is LLaVA-1.5's; a LLaVA-NeXT model's images go through "
                        "anyres (as in the 1.6 eval scripts)")
    bundle = load_next_bundle(model, device=options.device, dtype=options.dtype, template=options.template,
                              vision_tower=options.vision_tower)
    # A run records the template and the anyres settings beside the device and the scheduling.
    details = {"template": bundle.template.name} | bundle.vision.describe()
    return LlavaBackend(bundle, LlavaEngine(bundle, strategy, batch_size=options.batch_size), NAME, details)


ENTRY = BackendEntry(
    open=open_llava_next,
    architectures="llava-next (model_type llava_next; original LLaVA-1.6 with anyres)",
    claims=is_next_config,
    names=lambda: tuple(NEXT_PRESETS),
)
