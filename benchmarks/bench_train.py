"""Training throughput and peak memory of the ``first`` variant against ``ce``, through the real trainer.

Model: a random LlamaForCausalLM (hidden 256, 4 layers, 4 heads, vocabulary 32000, untied head) trained by
``DistillationTrainer`` (first_distill/trainer.py) with AdamW, batch 8 x 256 tokens (64 prompt + 192
completion tokens per example, no padding). ``first`` reads its targets from a real knowledge store on disk
(k = 5, written with ``KnowledgeStoreWriter``; synthetic top-k rows), gathered and padded by the collator in
the data loader: the collator's cost is inside the measured step, as in a real run. ``ce`` trains the same
initial student on the same batches in the same order (same seed).

Time: per optimiser step (data loading + collation + forward + loss + backward + AdamW), from one
``on_step_end`` to the next, after ``--warmup`` steps. Rounds alternate ce, first, ce, first, ... (``--rounds``),
each a fresh trainer, so load from other processes falls on both alike; the figure is the median step over
all rounds. Wall and process CPU time (user + sys, all threads) are reported; on CPU the ratio uses CPU time,
which other processes on a shared machine disturb less. Throughput = input tokens per step / median step time.

Peak memory: of one forward + backward (``Trainer.training_step``) after training, above what was allocated
before it (model, optimiser state, batch): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the byte-exact
peak of live tensor memory from the torch profiler's allocation events (``profile_memory=True``: every
allocation and free of torch's CPU allocator, temporaries inside kernels included; not the process RSS).

Goal: ``first`` throughput >= 0.95x ``ce``.
Run: python benchmarks/bench_train.py [--steps 8] [--rounds 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BATCH, SEQ, PROMPT, VOCAB, HIDDEN, LAYERS, K = 8, 256, 64, 32000, 256, 4, 5
GOAL = 0.95


def build_student(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=688, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=SEQ,
                         tie_word_embeddings=False, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def build_data(n_examples: int, folder: Path):
    """Random examples and a k = 5 store whose row j of example i targets its completion token j (+ 4 others)."""
    import numpy as np

    from first_distill.collator import ExampleDataset
    from first_distill.store import KnowledgeStore, KnowledgeStoreWriter
    from first_distill.training_data import TokenizedExample

    rng = np.random.default_rng(0)
    examples = [TokenizedExample(rng.integers(1, VOCAB, SEQ).astype(np.int64), PROMPT) for _ in range(n_examples)]
    writer = KnowledgeStoreWriter(folder, vocab_size=VOCAB, k=K, tokenizer_sha256="bench", teacher_path="synthetic",
                                  teacher_config_sha256="synthetic", temperature=1.0, temperature_source="fixed")
    for index, example in enumerate(examples):
        gold = example.input_ids[PROMPT:]  # (C,)
        ids = (gold[:, None] + np.arange(K) * 7919) % VOCAB  # distinct per row, gold first
        probs = np.sort(rng.dirichlet(np.ones(K + 1), size=len(gold))[:, :K], axis=1)[:, ::-1]
        writer.add(index, ids, probs)
    writer.close()
    return ExampleDataset(examples), KnowledgeStore.open(folder)


def make_step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            import torch

            if torch.cuda.is_available() and not args.use_cpu:
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), time.process_time()))

    return StepTimer()


def train_round(name: str, student: Path, dataset, store, steps: int, warmup: int, device: str, scratch: Path) -> dict:
    """One fresh trainer of variant ``name``: per-step wall/CPU seconds after warm-up, then the memory peak."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.trainer_utils import SaveStrategy

    from first_distill.collator import DistillationCollator
    from first_distill.trainer import TrainerSettings, make_trainer
    from first_distill.variants import VARIANTS

    variant = VARIANTS[name]
    settings = TrainerSettings(max_steps=warmup + steps, batch_size=BATCH, learning_rate=1e-4, warmup_ratio=0.0,
                               progress=False, use_cpu=device == "cpu", lr_scheduler="constant")
    args = settings.training_arguments(scratch / name)
    args.save_strategy = SaveStrategy.NO  # a benchmark keeps no checkpoints
    model = AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    collator = DistillationCollator(0, store if variant.needs_store else None)
    timer = make_step_timer()
    trainer = make_trainer(model=model, args=args, dataset=dataset, collator=collator, tokenizer=None,
                           variant=variant, callbacks=(timer,))
    trainer.train()
    marks = timer.marks[warmup:]  # the mark at the end of warm-up step w starts timed step w + 1
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    peak, loss = measure_memory(trainer, collator, dataset, device)
    return {"wall": wall, "cpu": cpu, "peak_bytes": peak, "loss": loss}


def measure_memory(trainer, collator, dataset, device: str) -> tuple[int, float]:
    """Peak bytes of one forward + backward above what was live before it; and its loss."""
    from _memory import peak_bytes

    inputs = trainer._prepare_inputs(collator([dataset[i] for i in range(BATCH)]))
    model = trainer.model
    trainer.training_step(model, inputs)  # warm-up: allocator caches, lazily built buffers
    model.zero_grad(set_to_none=False)
    return peak_bytes(lambda: float(trainer.training_step(model, inputs)), device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed optimiser steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating ce / first rounds")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as bench_losses.py)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ.setdefault("HF_HOME", str(scratch / "hf"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    student = build_student(scratch / "student")
    dataset, store = build_data(BATCH * (args.warmup + args.steps + 2), scratch / "store")

    results = {"ce": [], "first": []}
    for round_index in range(args.rounds):
        for name in ("ce", "first"):
            results[name].append(train_round(name, student, dataset, store, args.steps, args.warmup, args.device,
                                             scratch / f"round{round_index}"))
    clock = "cpu" if args.device == "cpu" else "wall"
    method = ("torch.cuda.max_memory_allocated" if args.device == "cuda"
              else "torch profiler allocation events, live-bytes peak")
    bf16 = args.device == "cuda" and torch.cuda.is_bf16_supported()
    print(f"device {args.device} ({torch.get_num_threads()} threads{', bf16 autocast' if bf16 else ', fp32'}), "
          f"Llama hidden {HIDDEN} x {LAYERS} layers, vocab {VOCAB}; batch {BATCH} x {SEQ} tokens "
          f"({BATCH * (SEQ - PROMPT)} completion positions), AdamW; {args.rounds} rounds x {args.steps} timed steps "
          f"(+{args.warmup} warm-up); ratios use the median {'process CPU' if clock == 'cpu' else 'wall'} time per step; "
          f"peak memory of one forward + backward: {method}")
    print(f"{'variant':<10}{'wall ms':>9}{'cpu ms':>9}{'tokens/s':>11}{'x ce':>8}{'peak MB':>10}{'x ce':>8}{'loss':>10}")
    summary = {}
    for name in ("ce", "first"):
        wall = statistics.median(t for r in results[name] for t in r["wall"])
        cpu = statistics.median(t for r in results[name] for t in r["cpu"])
        seconds = cpu if clock == "cpu" else wall
        peak = max(r["peak_bytes"] for r in results[name])
        summary[name] = (BATCH * SEQ / seconds, peak)
        ratio_speed = summary[name][0] / summary["ce"][0]
        ratio_memory = peak / summary["ce"][1]
        print(f"{name:<10}{wall * 1e3:>9.0f}{cpu * 1e3:>9.0f}{summary[name][0]:>11.0f}{ratio_speed:>8.3f}"
              f"{peak / 2**20:>10.1f}{ratio_memory:>8.3f}{results[name][-1]['loss']:>10.4f}")
    ratio = summary["first"][0] / summary["ce"][0]
    print(f"goal first throughput >= {GOAL}x ce: {ratio:.3f}x ({'met' if ratio >= GOAL else 'NOT met'}); "
          f"first peak memory {summary['first'][1] / summary['ce'][1]:.3f}x ce")
    return 0


if __name__ == "__main__":
    sys.exit(main())
