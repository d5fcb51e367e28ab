"""Stage-2 LoRA as LLaVA-1.5's LoRA recipes train it (through peft): adapters on the LLM's linear layers, the
projector trained fully; the trainer merges the adapters into the checkpoint it saves.
"""

from __future__ import annotations


def apply_lora(model, lora):
    """Reference: finetune_lora.sh + train.py find_all_linear_names: LoRA on every Linear of the LLM
    (lm_head, projector and vision tower excluded); the projector is trained fully."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if "multi_modal_projector" in name:
            param.requires_grad = True
    return peft_model
