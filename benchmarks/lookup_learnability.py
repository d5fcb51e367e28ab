"""How fast does the tiny LLM learn the existence lookup when the image side is solved? Image tokens are given
as clean embeddings of (colour, shape) objects at random grid slots (or of the whole scene's set of pairs in
every token: `--bag`), then the `tiny-shapes` LLM (2 layers, 128 wide, Llama) from random weights answers
"is there a <colour> <shape>?" with yes/no; prints accuracy per 100 steps. Isolates the LLM's lookup from the
vision tower: used to choose the image-token count and learning rate of the `tiny-shapes` recipe.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

COLOURS, SHAPES = 8, 4
YES, NO = 2, 3  # token ids; 4.. are colours, 12.. shapes, 16.. the question's filler words
QUESTION = (16, 17, 18)  # "Is there a"
TAIL = (19, 20, 21, 22)  # "in the image ?" ASSISTANT:


def scene_batch(rng: random.Random, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(object codes [batch, tokens, features], question ids, answer ids): balanced yes/no, negatives any
    absent pair. Features: one-hot colour + one-hot shape + a background flag (+ the scene's pair set)."""
    width = COLOURS + SHAPES + 1 + COLOURS * SHAPES
    codes = torch.zeros(args.batch_size, args.tokens, width)
    codes[:, :, COLOURS + SHAPES] = 1
    ids, answers = [], []
    for b in range(args.batch_size):
        objects = [(rng.randrange(COLOURS), rng.randrange(SHAPES)) for _ in range(rng.randint(1, args.max_objects))]
        slots = rng.sample(range(args.tokens), min(args.tokens, len(objects) * args.spread))
        for j, slot in enumerate(slots):
            colour, shape = objects[j // args.spread]
            codes[b, slot, :COLOURS + SHAPES + 1] = 0
            codes[b, slot, colour] = codes[b, slot, COLOURS + shape] = 1
        if args.bag:
            for colour, shape in objects:
                codes[b, :, COLOURS + SHAPES + 1 + colour * SHAPES + shape] = 1
        positive = rng.random() < 0.5
        if positive:
            colour, shape = rng.choice(objects)
        else:
            colour, shape = rng.choice([(c, s) for c in range(COLOURS) for s in range(SHAPES) if (c, s) not in objects])
        ids.append([*QUESTION, 4 + colour, 12 + shape, *TAIL])
        answers.append(YES if positive else NO)
    return codes, torch.tensor(ids), torch.tensor(answers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64, help="image tokens (64: tiny-112; 16: tiny-112-p28)")
    p.add_argument("--spread", type=int, default=1, help="image tokens each object covers")
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--bag", action="store_true", help="every image token also holds the scene's set of pairs")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    config = LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    model = LlamaForCausalLM(config)
    project = nn.Linear(COLOURS + SHAPES + 1 + COLOURS * SHAPES, config.hidden_size)
    optimizer = torch.optim.AdamW([*model.parameters(), *project.parameters()], lr=args.lr, weight_decay=0.0)
    print(f"tokens {args.tokens}, spread {args.spread}, objects 1-{args.max_objects}, bag {args.bag}, "
          f"lr {args.lr:g}, batch {args.batch_size}")
    correct, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        codes, ids, answers = scene_batch(rng, args)
        embed = model.get_input_embeddings()
        inputs = torch.cat([embed(torch.ones(args.batch_size, 1, dtype=torch.long)), project(codes), embed(ids)], 1)
        logits = model(inputs_embeds=inputs).logits[:, -1]
        loss = nn.functional.cross_entropy(logits, answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        said_yes = logits[:, YES] > logits[:, NO]
        correct += (said_yes == (answers == YES)).tolist()
        if step % 100 == 0 or step == args.steps:
            recent = correct[-100:]
            print(f"step {step:5d}  loss {loss.item():.3f}  accuracy (last {len(recent)}) "
                  f"{sum(recent) / len(recent):.3f}  {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
