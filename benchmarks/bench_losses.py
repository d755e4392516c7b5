"""One training step with each distillation loss, against cross-entropy on the same model and batch.

Model: a random LlamaForCausalLM (hidden 256, 4 layers, 4 heads, vocabulary 32000, untied head), batch 8 x 257
tokens; the loss reads the usual shifted view ``logits[:, :-1]`` with the first 64 positions masked out as
prompt (1536 completion positions). A step is forward + loss + backward (no optimizer).

    cross_entropy   first_distill.losses.cross_entropy (the anchor: ratios are relative to it)
    hf_builtin_ce   the model's own loss (model(input_ids, labels=...)): transformers' ForCausalLMLoss
    topk_kl         FIRST, k = 5 teacher tokens renormalised
    topk_tail_kl    k = 5 + tail bucket
    sampled_kl      24 sampled-id slots (weights = counts of 50 draws / 50)
    full_kl         full-vocabulary teacher logits (precomputed: an online teacher's forward is not timed)

Time: median of ``--steps`` steps after one warm-up step. Peak memory: on CUDA, torch.cuda.max_memory_allocated
over the steps minus the memory allocated before them; on CPU, each loss runs in a fresh subprocess and the
peak is ru_maxrss (the process's peak resident set) minus its resident set just before the first step (model,
batch and teacher targets already built), so it counts every allocation of the step, inside torch kernels too.

Goals: top-k losses <= 1.05x cross-entropy step time and <= cross-entropy peak memory.
Run: python benchmarks/bench_losses.py [--steps 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

LOSSES = ("cross_entropy", "hf_builtin_ce", "topk_kl", "topk_tail_kl", "sampled_kl", "full_kl")
BATCH, SEQ, PROMPT, VOCAB, K, SLOTS, DRAWS = 8, 257, 64, 32000, 5, 24, 50
GOAL_TIME, GOAL_MEMORY = 1.05, 1.0


def _setup(device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(device)
    model.train()
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), device=device)
    labels = input_ids[:, 1:]  # (B, T): the next token at each position
    mask = torch.zeros(BATCH, SEQ - 1, dtype=torch.bool, device=device)
    mask[:, PROMPT:] = True
    hf_labels = input_ids.clone()
    hf_labels[:, :PROMPT + 1] = -100  # the same completion positions, in HF's unshifted convention

    teacher_logits = 3.0 * torch.randn(BATCH, SEQ - 1, VOCAB, device=device)  # peaked random teacher
    topk_probs, topk_ids = teacher_logits.softmax(-1).topk(K, dim=-1)
    drawn = torch.multinomial(teacher_logits.softmax(-1).view(-1, VOCAB), DRAWS, replacement=True)  # (B*T, DRAWS)
    sorted_draws, _ = drawn.sort(-1)
    sampled_ids = torch.zeros(BATCH * (SEQ - 1), SLOTS, dtype=torch.long, device=device)
    sampled_weights = torch.zeros(BATCH * (SEQ - 1), SLOTS, device=device)
    for row in range(sorted_draws.shape[0]):  # distinct ids and counts (setup only, not timed)
        unique, counts = sorted_draws[row].unique(return_counts=True)
        order = counts.argsort(descending=True)[:SLOTS]
        sampled_ids[row, :len(order)] = unique[order]
        sampled_weights[row, :len(order)] = counts[order].float() / DRAWS
    return dict(model=model, input_ids=input_ids, labels=labels, mask=mask, hf_labels=hf_labels,
                teacher_logits=teacher_logits, topk_ids=topk_ids, topk_probs=topk_probs,
                sampled_ids=sampled_ids.view(BATCH, SEQ - 1, SLOTS),
                sampled_weights=sampled_weights.view(BATCH, SEQ - 1, SLOTS))


def _step(name: str, s: dict):
    from first_distill import losses

    model = s["model"]
    if name == "hf_builtin_ce":
        loss = model(input_ids=s["input_ids"], labels=s["hf_labels"]).loss
    else:
        logits = model(input_ids=s["input_ids"]).logits[:, :-1]  # (B, T, V), a strided view
        if name == "cross_entropy":
            loss = losses.cross_entropy(logits, s["labels"], s["mask"])
        elif name == "topk_kl":
            loss = losses.topk_kl(logits, s["topk_ids"], s["topk_probs"], s["mask"])
        elif name == "topk_tail_kl":
            loss = losses.topk_tail_kl(logits, s["topk_ids"], s["topk_probs"], s["mask"])
        elif name == "sampled_kl":
            loss = losses.sampled_kl(logits, s["sampled_ids"], s["sampled_weights"], s["mask"])
        elif name == "full_kl":
            loss = losses.full_kl(logits, s["teacher_logits"], s["mask"])
        else:
            raise ValueError(f"unknown loss {name!r}")
    loss.backward()
    model.zero_grad(set_to_none=True)
    return float(loss)


def run_one(name: str, steps: int, device: str) -> dict:
    """Time and peak memory of ``steps`` steps of one loss (in this process)."""
    import resource

    import psutil
    import torch

    s = _setup(device)
    if device == "cuda":
        _step(name, s)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = psutil.Process().memory_info().rss
    times = []
    for _ in range(steps + (0 if device == "cuda" else 1)):
        start = time.perf_counter()
        value = _step(name, s)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        times = times[1:]  # the first step warmed up; its memory still counts (allocations repeat each step)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"name": name, "median_s": statistics.median(times), "times": times, "peak_bytes": peak, "loss": value}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one loss, print JSON
    args = parser.parse_args()
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="bench-losses-hf-"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.device)))
        return 0

    results = {}
    for name in LOSSES:
        if args.device == "cuda":
            results[name] = run_one(name, args.steps, "cuda")
        else:  # a fresh process per loss: ru_maxrss cannot be reset
            output = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--device", "cpu"],
                                    check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(output.strip().splitlines()[-1])
        print(f"  ran {name}: {results[name]['median_s'] * 1e3:.0f} ms", file=sys.stderr)

    import torch

    anchor = results["cross_entropy"]
    method = ("torch.cuda.max_memory_allocated" if args.device == "cuda"
              else "ru_maxrss - RSS before the steps, fresh process per loss")
    print(f"device {args.device} ({torch.get_num_threads()} threads), batch {BATCH} x {SEQ - 1}, vocab {VOCAB}, "
          f"{int((SEQ - 1 - PROMPT) * BATCH)} completion positions, median of {args.steps} steps; memory: {method}")
    print(f"{'loss':<16}{'step ms':>10}{'x CE':>8}{'peak MB':>10}{'x CE':>8}{'loss value':>12}")
    for name in LOSSES:
        r = results[name]
        print(f"{name:<16}{r['median_s'] * 1e3:>10.0f}{r['median_s'] / anchor['median_s']:>8.3f}"
              f"{r['peak_bytes'] / 2**20:>10.0f}{r['peak_bytes'] / anchor['peak_bytes']:>8.3f}{r['loss']:>12.4f}")
    for name in ("topk_kl", "topk_tail_kl"):
        r = results[name]
        time_ratio, memory_ratio = r["median_s"] / anchor["median_s"], r["peak_bytes"] / anchor["peak_bytes"]
        print(f"goal {name}: time {time_ratio:.3f}x CE (<= {GOAL_TIME}: {'met' if time_ratio <= GOAL_TIME else 'NOT met'}), "
              f"peak memory {memory_ratio:.3f}x CE (<= {GOAL_MEMORY}: {'met' if memory_ratio <= GOAL_MEMORY else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
