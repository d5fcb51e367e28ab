"""Evaluation throughput: the reference loop of the original LLaVA scripts against the fast engine, in one
process, on the same model and the same questions.

    python benchmarks/eval_throughput.py [--model tiny-shapes] [--questions 240] [--batch-size 16]
    python benchmarks/eval_throughput.py --family next [--model tiny-next] [--max-new-tokens 8]

(a) reference: batch size 1, the image encoded for every question, full prefill, transformers' generate
    (`LlavaEngine(bundle, batch_size=1)`, sorted batches of one: what `model_vqa_loader.py` does);
(b) fast: `LlavaEngine(bundle, PrefixSharing())` (one vision pass and one prefix prefill per image, batched
    decode).
`--family next` measures the same on a LLaVA-NeXT model (llava_model.next: anyres, each image's positions
depend on its size; default the `tiny-next` preset, random weights at the 1.6 geometry: 336 px tiles, up to
2,928 positions per image), where the prefix holds several times more image positions than LLaVA-1.5's 576.
A random model never stops, so `--max-new-tokens` caps every answer (default: the task's cap).
Workloads from the synthetic tasks: POPE-like (6 questions per image), VQAv2-like (3 per image), distinct
images (VizWiz rows, 1 per image). Prints questions/s of each, the ratio b/a, the peak resident memory
during each (sampled), and whether the answers are identical. Measured numbers only; they go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import threading
import time

import psutil

WORKLOADS = {"pope-like (6/image)": "pope", "vqav2-like (3/image)": "vqav2_val", "distinct images": "vizwiz_val"}


class PeakRSS:
    """Peak resident set size of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.proc, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def timed(engine, requests):
    with PeakRSS() as mem:
        start = time.perf_counter()
        tokens = engine.generate_tokens(requests)
        seconds = time.perf_counter() - start
    return tokens, seconds, mem.peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("llava", "next"), default="llava",
                        help="llava: LLaVA-1.5 (load_bundle); next: LLaVA-NeXT (load_next_bundle)")
    parser.add_argument("--model", default=None, help="default: tiny-shapes (llava), tiny-next (next)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="cap on every answer (default: the task's)")
    parser.add_argument("--questions", type=int, default=240, help="questions per workload")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from llava_eval.data import load_docs
    from llava_eval.engine import LlavaEngine
    from llava_eval.runner import build_requests
    from llava_eval.scheduling import PrefixSharing
    from llava_model.checkpoint import load_bundle
    from llava_types import GenerationSettings
    from tasks.registry import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.family == "next":
        from llava_model.next import load_next_bundle

        bundle = load_next_bundle(args.model or "tiny-next")
    else:
        bundle = load_bundle(args.model or "tiny-shapes")
    print(f"model {bundle.source}; {torch.get_num_threads()} threads; {args.questions} questions per workload; "
          f"{bundle.image_seq_length} image tokens ({bundle.vision.name}: per image, plus its grid for anyres)")
    print(f"{'workload':22} {'images':>6} {'ref q/s':>8} {'fast q/s':>9} {'ratio':>6} {'ref peak MB':>12} "
          f"{'fast peak MB':>13}  identical")
    for label, task_name in WORKLOADS.items():
        task = get_task(task_name)
        docs = load_docs(task, "synthetic", limit=args.questions)
        requests, errors = build_requests(task, docs, range(len(docs)), None)
        assert not errors, errors
        if args.max_new_tokens:
            requests = [dataclasses.replace(r, settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
                        for r in requests]
        images = len({hashlib.sha256(r.images[0].tobytes()).hexdigest() for r in requests})
        fast = LlavaEngine(bundle, PrefixSharing(), batch_size=args.batch_size)
        fast.generate_tokens(requests[:4])  # warm-up (kernel planning) for both paths
        LlavaEngine(bundle, batch_size=1).generate_tokens(requests[:2])
        ref_tokens, ref_s, ref_mem = timed(LlavaEngine(bundle, batch_size=1), requests)
        fast_tokens, fast_s, fast_mem = timed(fast, requests)
        n = len(requests)
        print(f"{label:22} {images:>6} {n / ref_s:>8.1f} {n / fast_s:>9.1f} {ref_s / fast_s:>5.1f}x "
              f"{ref_mem / 2**20:>12.0f} {fast_mem / 2**20:>13.0f}  {ref_tokens == fast_tokens}")


if __name__ == "__main__":
    main()
