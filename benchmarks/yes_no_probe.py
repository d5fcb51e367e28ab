"""Does a checkpoint's yes/no answer depend on the image? For synthetic POPE and MME rows, the logit of the
first token of "Yes" minus that of "No" at the answer position, and the AUC of that margin between the
rows whose answer is yes and those whose answer is no (0.5: the answer ignores the image and question).
More sensitive than F1 while a model still answers one constant: it shows a lookup forming during training.
"""

from __future__ import annotations

import argparse

import torch

from llava_model.checkpoint import load_bundle
from llava_model.generation import batch_features, encode
from llava_model.model import embed_inputs
from tasks.registry import get_task


def margins(bundle, task, n: int) -> tuple[list[float], list[bool]]:
    tok = bundle.tokenizer
    yes, no = (tok.encode(word, add_special_tokens=False)[0] for word in ("Yes", "No"))
    out, gold = [], []
    for i, doc in enumerate(task.synthetic_docs(n, seed=0)):
        request = task.request(doc, i, tuple(v["bytes"] for v in task.image_values(doc)))
        ids, pixels = encode(bundle, request)
        with torch.inference_mode():
            embeds = embed_inputs(bundle.model, torch.tensor([ids]), features=batch_features(bundle, [pixels]))
            logits = bundle.model(inputs_embeds=embeds).logits[0, -1]
        out.append(float(logits[yes] - logits[no]))
        gold.append(str(doc["answer"]).lower().startswith("y"))
    return out, gold


def by_answer(values: list[float], gold: list[bool]) -> tuple[list[float], list[float]]:
    """The margins of the rows whose answer is yes, and of those whose answer is no."""
    return [v for v, g in zip(values, gold, strict=True) if g], [v for v, g in zip(values, gold, strict=True) if not g]


def auc(pos: list[float], neg: list[float]) -> float:
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="checkpoint folder, preset or built-in name (tiny-shapes)")
    p.add_argument("--rows", type=int, default=120)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model, device="cpu")
    for name in ("pope", "mme"):
        task = get_task(name)
        task = task() if isinstance(task, type) else task
        values, gold = margins(bundle, task, args.rows)
        pos, neg = by_answer(values, gold)
        print(f"{name:5} AUC {auc(pos, neg):.3f}  says yes {sum(v > 0 for v in values) / len(values):.2f}  "
              f"mean margin: yes rows {sum(pos) / len(pos):+.3f}, no rows {sum(neg) / len(neg):+.3f}  n={len(values)}")


if __name__ == "__main__":
    main()
