"""One training step with each distillation loss, against cross-entropy on the same model and batch.

Model: a random LlamaForCausalLM (hidden 256, 4 layers, 4 heads, vocabulary 32000, untied head), batch 8 x 256
tokens; targets are aligned with the logits (shifted labels, last position masked) and the first 64 positions
are prompt (1528 completion positions). A step is forward + loss + backward (no optimizer).

    cross_entropy   first_distill.losses.cross_entropy (the anchor: ratios are relative to it)
    hf_builtin_ce   the model's own loss (model(input_ids, labels=...)): transformers' ForCausalLMLoss
    topk_kl         FIRST, k = 5 teacher tokens renormalised
    topk_kl_hidden  the same loss from the final hidden states (topk_kl_from_hidden): the logits are never formed
    topk_tail_kl    k = 5 + tail bucket
    sampled_kl      24 sampled-id slots (weights = counts of 50 draws / 50)
    full_kl         full-vocabulary teacher logits (precomputed: an online teacher's forward is not timed)

Time: every loss is stepped in turn, round after round (one warm-up round, then ``--steps`` rounds), in one
process, so load from other processes falls on all of them alike. Wall and process CPU time (user + sys of
all threads) are both reported; on CPU the ratios use CPU time, which other processes disturb less than wall time.
On CPU torch runs one thread by default (--threads): with several, OpenMP threads spin while waiting for a
descheduled sibling, and on a shared machine that spinning, not the loss, dominates the CPU-time differences.
Peak memory of one step (after a warm-up step), above what was allocated before it (model, batch, teacher
targets): on CUDA torch.cuda.max_memory_allocated; on CPU the byte-exact peak of live tensor memory from the
torch profiler's allocation events (profile_memory=True: every allocation and free of torch's CPU allocator,
temporaries inside kernels included; not the process RSS, which glibc's heap makes noisy).

The last columns time the loss alone (forward + backward on fixed logits, or hidden states for topk_kl_hidden,
2 x ``--steps`` rounds): the part of the step this package controls.

Goals: top-k losses <= 1.05x cross-entropy step time and <= cross-entropy peak memory.
Run: python benchmarks/bench_losses.py [--steps 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

LOSSES = ("cross_entropy", "hf_builtin_ce", "topk_kl", "topk_kl_hidden", "topk_tail_kl", "sampled_kl", "full_kl")
BATCH, SEQ, PROMPT, VOCAB, K, SLOTS, DRAWS = 8, 256, 64, 32000, 5, 24, 50
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
    # Targets aligned with the logits (position t predicts token t + 1): labels shifted left, the last
    # position masked. Shifting the targets rather than slicing logits[:, :-1] spares backward a copy of the
    # whole logits gradient (the slice's backward), as transformers' own loss does.
    labels = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], 1)  # (B, T)
    mask = torch.zeros(BATCH, SEQ, dtype=torch.bool, device=device)
    mask[:, PROMPT:-1] = True
    hf_labels = input_ids.clone()
    hf_labels[:, :PROMPT + 1] = -100  # the same completion positions, in HF's unshifted convention

    teacher_logits = 3.0 * torch.randn(BATCH, SEQ, VOCAB, device=device)  # peaked random teacher
    topk_probs, topk_ids = teacher_logits.softmax(-1).topk(K, dim=-1)
    drawn = torch.multinomial(teacher_logits.softmax(-1).view(-1, VOCAB), DRAWS, replacement=True)  # (B*T, DRAWS)
    counts = torch.zeros(drawn.shape[0], VOCAB, device=device).scatter_add_(1, drawn, torch.ones_like(drawn, dtype=torch.float))
    top_counts, sampled_ids = counts.topk(SLOTS, dim=-1)  # distinct drawn ids first; zero counts pad
    sampled_weights = top_counts / DRAWS
    del counts
    return dict(model=model, input_ids=input_ids, labels=labels, mask=mask, hf_labels=hf_labels,
                teacher_logits=teacher_logits, topk_ids=topk_ids, topk_probs=topk_probs,
                sampled_ids=sampled_ids.view(BATCH, SEQ, SLOTS),
                sampled_weights=sampled_weights.view(BATCH, SEQ, SLOTS))


def _loss(name: str, s: dict, logits=None, hidden=None):
    """The loss ``name`` on the student's logits (B, T, V), or on its final hidden states for topk_kl_hidden."""
    from first_distill import losses

    if name == "hf_builtin_ce":  # what model(input_ids, labels=...) computes
        return s["model"].loss_function(logits, s["hf_labels"], vocab_size=VOCAB)
    if name == "topk_kl_hidden":
        return losses.topk_kl_from_hidden(hidden, s["model"].lm_head.weight, s["topk_ids"], s["topk_probs"], s["mask"])
    if name == "cross_entropy":
        return losses.cross_entropy(logits, s["labels"], s["mask"])
    if name == "topk_kl":
        return losses.topk_kl(logits, s["topk_ids"], s["topk_probs"], s["mask"])
    if name == "topk_tail_kl":
        return losses.topk_tail_kl(logits, s["topk_ids"], s["topk_probs"], s["mask"])
    if name == "sampled_kl":
        return losses.sampled_kl(logits, s["sampled_ids"], s["sampled_weights"], s["mask"])
    if name == "full_kl":
        return losses.full_kl(logits, s["teacher_logits"], s["mask"])
    raise ValueError(f"unknown loss {name!r}")


def _step(name: str, s: dict):
    """Forward, loss, backward of the whole model."""
    model = s["model"]
    if name == "topk_kl_hidden":
        hidden = model.model(input_ids=s["input_ids"]).last_hidden_state  # (B, T, H): no logits at all
        loss = _loss(name, s, hidden=hidden)
    else:
        loss = _loss(name, s, logits=model(input_ids=s["input_ids"]).logits)  # (B, T, V)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return float(loss.detach())


def _loss_only(name: str, s: dict, fixed: dict):
    """Forward and backward of the loss alone, on fixed logits (or hidden states)."""
    leaf = fixed["hidden" if name == "topk_kl_hidden" else "logits"].detach().requires_grad_()
    loss = _loss(name, s, **{"hidden" if name == "topk_kl_hidden" else "logits": leaf})
    loss.backward()
    s["model"].zero_grad(set_to_none=True)


def measure_memory(name: str, s: dict, device: str) -> dict:
    """Peak tensor memory of one step of ``name`` above what was allocated before it (after a warm-up step)."""
    from _memory import peak_bytes

    _step(name, s)  # warm-up: allocator caches, lazily built buffers
    peak, value = peak_bytes(lambda: _step(name, s), device)
    return {"peak_bytes": peak, "loss": value}


def measure_times(steps: int, device: str, s: dict, loss_only: bool = False) -> dict:
    """Per loss: wall and process-CPU seconds of each step, interleaved round-robin after a warm-up round."""
    import torch

    fixed = None
    if loss_only:
        with torch.no_grad():
            hidden = s["model"].model(input_ids=s["input_ids"]).last_hidden_state
            fixed = {"hidden": hidden, "logits": s["model"].lm_head(hidden)}
    times = {name: {"wall": [], "cpu": []} for name in LOSSES}
    for round_index in range(steps + 1):
        for name in LOSSES:
            wall, cpu = time.perf_counter(), time.process_time()
            if loss_only:
                _loss_only(name, s, fixed)
            else:
                _step(name, s)
            if device == "cuda":
                torch.cuda.synchronize()
            if round_index:
                times[name]["wall"].append(time.perf_counter() - wall)
                times[name]["cpu"].append(time.process_time() - cpu)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see the docstring)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="bench-losses-hf-"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    import torch

    torch.set_num_threads(args.threads)
    setup = _setup(args.device)
    memory = {name: measure_memory(name, setup, args.device) for name in LOSSES}
    times = measure_times(args.steps, args.device, setup)
    loss_times = measure_times(2 * args.steps, args.device, setup, loss_only=True)

    import torch

    # On a shared CPU, wall time mostly measures the other processes; the process's own CPU time (user + sys,
    # all threads) is the work the step did. On CUDA, wall time after synchronize.
    clock = "cpu" if args.device == "cpu" else "wall"
    method = ("torch.cuda.max_memory_allocated" if args.device == "cuda"
              else "torch profiler allocation events, live-bytes peak")
    print(f"device {args.device} ({torch.get_num_threads()} threads), batch {BATCH} x {SEQ}, vocab {VOCAB}, "
          f"{int((SEQ - 1 - PROMPT) * BATCH)} completion positions, {args.steps} interleaved rounds; ratios use "
          f"the median {'process CPU time' if clock == 'cpu' else 'wall time'}; peak memory: {method}")
    anchor_time = statistics.median(times["cross_entropy"][clock])
    anchor_memory = memory["cross_entropy"]["peak_bytes"]
    anchor_loss_time = statistics.median(loss_times["cross_entropy"][clock])
    print(f"{'':<16}{'--------- training step ---------':>34}{'-- loss alone --':>18}")
    print(f"{'loss':<16}{'wall ms':>9}{'cpu ms':>9}{'x CE':>8}{'peak MB':>10}{'x CE':>8}{'ms':>8}{'x CE':>8}{'value':>10}")
    ratios = {}
    for name in LOSSES:
        wall, cpu = statistics.median(times[name]["wall"]), statistics.median(times[name]["cpu"])
        alone = statistics.median(loss_times[name][clock])
        peak = memory[name]["peak_bytes"]
        ratios[name] = (statistics.median(times[name][clock]) / anchor_time, peak / anchor_memory)
        print(f"{name:<16}{wall * 1e3:>9.0f}{cpu * 1e3:>9.0f}{ratios[name][0]:>8.3f}{peak / 2**20:>10.1f}"
              f"{ratios[name][1]:>8.3f}{alone * 1e3:>8.0f}{alone / anchor_loss_time:>8.3f}{memory[name]['loss']:>10.4f}")
    for name in ("topk_kl", "topk_kl_hidden", "topk_tail_kl"):
        time_ratio, memory_ratio = ratios[name]
        excess = memory[name]["peak_bytes"] - anchor_memory
        print(f"goal {name}: time {time_ratio:.3f}x CE (<= {GOAL_TIME}: {'met' if time_ratio <= GOAL_TIME else 'NOT met'}), "
              f"peak memory {memory_ratio:.4f}x CE, {excess / 1e3:+.0f} KB "
              f"(<= {GOAL_MEMORY}: {'met' if memory_ratio <= GOAL_MEMORY else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
