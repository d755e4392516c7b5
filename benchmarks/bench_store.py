"""Knowledge store size and read speed, side by side with the formats it replaces.

Same synthetic teacher top-k data for every format: ~1M completion positions in ~4k sequences (128..384
positions each), V = 49152 (SmolLM2), k = 5, peaked probabilities (top-1 mean ~0.6, top-5 mass ~0.9).

    ours          first_distill.knowledge (16-bit ids, rank-scaled uint8 probabilities), memory-mapped
    first-jsonl   the official FIRST format: one JSON line per sequence, a {token_id: logprob} dict per token
    npy u32+f16   raw arrays: uint32 ids + float16 probabilities + int64 offsets, np.load(mmap_mode="r")
    dense fp32    the full teacher distribution, V floats per position (bytes only, computed)

Read throughput = positions decoded into (ids int64 (T, k), probs float32 (T, k)) per second, one sequence
at a time in order (what a data loader does), files in the page cache. Run: python benchmarks/bench_store.py
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from first_distill.knowledge import KnowledgeStore, KnowledgeStoreWriter

VOCAB_SIZE = 49152
K = 5
TARGET_POSITIONS = 1_000_000
GOAL_BYTES, MUST_BYTES, GOAL_THROUGHPUT = 12.0, 16.0, 5e6


def synthetic_topk(rng: np.random.Generator, n_positions: int, vocab_size: int = VOCAB_SIZE, k: int = K):
    """Peaked teacher top-k: softmax of 64 candidate logits at a random sharpness, times the candidates' share."""
    sharpness = rng.uniform(2.0, 9.0, size=(n_positions, 1))
    logits = rng.normal(size=(n_positions, 64)) * sharpness
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs *= rng.uniform(0.9, 1.0, size=(n_positions, 1))  # the rest of the vocabulary holds the remainder
    topk_probs = -np.sort(-probs, axis=1)[:, :k]
    ids = rng.integers(0, vocab_size, size=(n_positions, k))
    while True:  # distinct ids per position
        sorted_ids = np.sort(ids, axis=1)
        duplicated = np.any(sorted_ids[:, 1:] == sorted_ids[:, :-1], axis=1)
        if not duplicated.any():
            return ids, topk_probs
        ids[duplicated] = rng.integers(0, vocab_size, size=(int(duplicated.sum()), k))


def make_sequences(rng: np.random.Generator):
    lengths = []
    while sum(lengths) < TARGET_POSITIONS:
        lengths.append(int(rng.integers(128, 385)))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids, probs = synthetic_topk(rng, int(offsets[-1]))
    return offsets, ids, probs


def timed(function, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times (seconds)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bench_ours(folder: Path, offsets, ids, probs, vocab_size=VOCAB_SIZE) -> dict:
    n_sequences, n_positions = len(offsets) - 1, int(offsets[-1])
    start = time.perf_counter()
    writer = KnowledgeStoreWriter(folder, vocab_size=vocab_size, k=K, tokenizer_sha256="0" * 64, teacher_path="synthetic",
                                  teacher_config_sha256="0" * 64, temperature=1.0, temperature_source="fixed",
                                  shard_positions=1 << 20)
    for index in range(n_sequences):
        writer.add(index, ids[offsets[index]:offsets[index + 1]], probs[offsets[index]:offsets[index + 1]])
    manifest = writer.close()
    write_seconds = time.perf_counter() - start
    open_seconds = timed(lambda: KnowledgeStore.open(folder))
    store = KnowledgeStore.open(folder)

    def read_all():
        for index in range(n_sequences):
            store.sequence(index)

    def read_batches():
        for first in range(0, n_sequences, 8):
            store.gather(range(first, min(first + 8, n_sequences)))

    order = np.random.default_rng(1).permutation(n_sequences)

    def read_shuffled():
        for index in order:
            store.sequence(int(index))

    file_bytes = sum((folder / shard.file).stat().st_size for shard in manifest.shards)
    max_error = 0.0
    for index in range(0, n_sequences, 97):
        _, stored = store.sequence(index)
        max_error = max(max_error, float(np.abs(stored - probs[offsets[index]:offsets[index + 1]]).max()))
    return {"bytes": file_bytes, "read": n_positions / timed(read_all), "batches": n_positions / timed(read_batches),
            "shuffled": n_positions / timed(read_shuffled), "write": n_positions / write_seconds,
            "open_ms": 1e3 * open_seconds, "max_error": max_error, "bound": manifest.identity.quantization["probs"]["max_abs_error"][0],
            "id_bits": manifest.identity.quantization["ids"]["bits"]}


def bench_first_jsonl(path: Path, offsets, ids, probs) -> dict:
    n_sequences, n_positions = len(offsets) - 1, int(offsets[-1])
    logprobs = np.log(probs)
    with open(path, "w") as handle:
        for index in range(n_sequences):
            rows = range(offsets[index], offsets[index + 1])
            line = [{str(int(i)): float(lp) for i, lp in zip(ids[row], logprobs[row])} for row in rows]
            handle.write(json.dumps(line) + "\n")

    def read_all():
        with open(path) as handle:
            for line in handle:
                tokens = json.loads(line)
                np.array([[int(i) for i in token] for token in tokens], dtype=np.int64)
                np.exp(np.array([list(token.values()) for token in tokens], dtype=np.float32))

    return {"bytes": path.stat().st_size, "read": n_positions / timed(read_all, repeats=1)}


def bench_npy(folder: Path, offsets, ids, probs) -> dict:
    n_sequences, n_positions = len(offsets) - 1, int(offsets[-1])
    np.save(folder / "ids.npy", ids.astype(np.uint32))
    np.save(folder / "probs.npy", probs.astype(np.float16))
    np.save(folder / "offsets.npy", offsets.astype(np.int64))
    mapped_ids = np.load(folder / "ids.npy", mmap_mode="r")
    mapped_probs = np.load(folder / "probs.npy", mmap_mode="r")
    mapped_offsets = np.load(folder / "offsets.npy")

    def read_all():
        for index in range(n_sequences):
            start, stop = mapped_offsets[index], mapped_offsets[index + 1]
            np.asarray(mapped_ids[start:stop], dtype=np.int64)
            np.asarray(mapped_probs[start:stop], dtype=np.float32)

    total = sum((folder / name).stat().st_size for name in ("ids.npy", "probs.npy", "offsets.npy"))
    return {"bytes": total, "read": n_positions / timed(read_all)}


def main() -> int:
    rng = np.random.default_rng(0)
    offsets, ids, probs = make_sequences(rng)
    n_positions = int(offsets[-1])
    print(f"synthetic teacher top-k: {len(offsets) - 1} sequences, {n_positions} positions, V = {VOCAB_SIZE}, k = {K}; "
          f"top-1 mean {probs[:, 0].mean():.3f}, top-{K} mass mean {probs.sum(1).mean():.3f}")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmp = Path(tmp)
        (tmp / "ours").mkdir()
        (tmp / "npy").mkdir()
        ours = bench_ours(tmp / "ours", offsets, ids, probs)
        npy = bench_npy(tmp / "npy", offsets, ids, probs)
        first = bench_first_jsonl(tmp / "first.jsonl", offsets, ids, probs)
        wide_ids = synthetic_topk(np.random.default_rng(2), n_positions, vocab_size=128256)[0]
        (tmp / "ours17").mkdir()
        ours17 = bench_ours(tmp / "ours17", offsets, wide_ids, probs, vocab_size=128256)

    rows = [("ours (16-bit ids)", ours["bytes"], ours["read"]),
            ("first-jsonl", first["bytes"], first["read"]),
            ("npy u32+f16", npy["bytes"], npy["read"]),
            ("dense fp32", 4 * VOCAB_SIZE * n_positions, None)]
    print(f"\n{'format':<20}{'bytes/pos':>12}{'vs ours':>10}{'read pos/s':>14}{'vs ours':>10}")
    for name, size, speed in rows:
        per_position = size / n_positions
        speed_text = f"{speed / 1e6:>11.2f} M{speed / ours['read']:>10.2f}x" if speed else f"{'-':>14}{'-':>10}"
        print(f"{name:<20}{per_position:>12.2f}{per_position / (ours['bytes'] / n_positions):>9.1f}x{speed_text}")
    print(f"\nours, other access patterns: gather(8 sequences) {ours['batches'] / 1e6:.2f} M pos/s, "
          f"shuffled sequence() {ours['shuffled'] / 1e6:.2f} M pos/s, write {ours['write'] / 1e6:.2f} M pos/s, "
          f"open with sha256 of every shard {ours['open_ms']:.0f} ms")
    print(f"ours, probability max abs error measured {ours['max_error']:.2e} (stated bound on p_1 {ours['bound']:.2e})")
    print(f"ours at V = 128256 ({ours17['id_bits']}-bit packed ids): {ours17['bytes'] / n_positions:.2f} B/pos, "
          f"read {ours17['read'] / 1e6:.2f} M pos/s, gather(8) {ours17['batches'] / 1e6:.2f} M pos/s")
    per_position = ours["bytes"] / n_positions
    print(f"\ngoals: bytes/pos {per_position:.2f} (goal <= {GOAL_BYTES:.0f}: {'met' if per_position <= GOAL_BYTES else 'NOT met'}; "
          f"must <= {MUST_BYTES:.0f}: {'met' if per_position <= MUST_BYTES else 'NOT met'}), "
          f"read {ours['read'] / 1e6:.2f} M pos/s (goal >= {GOAL_THROUGHPUT / 1e6:.0f} M: "
          f"{'met' if ours['read'] >= GOAL_THROUGHPUT else 'NOT met'})")
    print(f"lower bound at V = {VOCAB_SIZE}, k = {K}: the ids alone need {K} x log2({VOCAB_SIZE}) = "
          f"{K * math.log2(VOCAB_SIZE):.1f} bits = {K * math.log2(VOCAB_SIZE) / 8:.2f} bytes with fixed-width codes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
