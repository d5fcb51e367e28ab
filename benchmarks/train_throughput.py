"""Training throughput of the tiny model on the synthetic stage-2 mix: supervised tokens per second
and padding fraction, with a plain random sampler and with LLaVA's modality-length grouping.

    python benchmarks/train_throughput.py [--samples 256] [--batch-size 8] [--steps 12]

Prints measured numbers only; the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def batches(dataset, collator, sampler_indices, batch_size, steps):
    for start in range(0, min(len(sampler_indices), steps * batch_size), batch_size):
        yield collator([dataset[i] for i in sampler_indices[start:start + batch_size]])


def measure(module, optimizer, dataset, collator, indices, batch_size, steps, pad_id):
    supervised = padded = total = 0
    start = time.perf_counter()
    for batch in batches(dataset, collator, indices, batch_size, steps):
        loss = module(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        supervised += int((batch["labels"] != -100).sum())
        padded += int((batch["attention_mask"] == 0).sum())
        total += batch["attention_mask"].numel()
    seconds = time.perf_counter() - start
    return supervised / seconds, padded / total, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--text-only-fraction", type=float, default=0.25)
    parser.add_argument("--work", default="runs/bench-train")
    args = parser.parse_args()

    from synthetic.conversations import stage2_records, write_dataset
    from train.data import load_samples, modality_lengths
    from train.recipes import load_recipe
    from train.sampler import LengthGroupedSampler
    from train.trainer import Collator, ConversationDataset, LlavaTrainModule, init_bundle

    recipe = load_recipe("tiny-shapes")[1]
    records = stage2_records(args.samples, text_only_fraction=args.text_only_fraction)
    path = write_dataset(records, Path(args.work), "stage2.json")
    samples = load_samples(str(path))
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    plain = torch.randperm(len(samples), generator=generator).tolist()
    grouped = list(LengthGroupedSampler(args.batch_size, 1, modality_lengths(samples),
                                        generator=torch.Generator().manual_seed(0), group_by_modality=True))
    print(f"{len(samples)} samples ({args.text_only_fraction:.0%} text-only), batch {args.batch_size}, "
          f"{args.steps} steps each, {torch.get_num_threads()} threads")
    for name, order in (("random", plain), ("modality-length grouped", grouped)):
        bundle = init_bundle(recipe)
        module = LlavaTrainModule(bundle.model).train()
        dataset = ConversationDataset(samples, Path(args.work) / "images", bundle, recipe.max_length)
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
        collator = Collator(bundle.tokenizer.pad_token_id, recipe.max_length)
        measure(module, optimizer, dataset, collator, order, args.batch_size, 1, bundle.tokenizer.pad_token_id)
        tps, pad, seconds = measure(module, optimizer, dataset, collator, order, args.batch_size, args.steps,
                                    bundle.tokenizer.pad_token_id)
        print(f"{name:26} supervised tokens/s {tps:8.1f}   padding fraction {pad:6.1%}   {seconds:6.1f} s")


if __name__ == "__main__":
    main()
