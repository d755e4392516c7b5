"""Knowledge store size and read speed: version-2 shards (entropy-coded) beside version 1 and the formats they replace,
with the measured entropy of the stored ids and probability codes, so the distance to the limit is visible.

    python benchmarks/bench_store.py [--store DIR ...] [--repeats N] [--skip-synthetic]

Real stores (``--store``, default: the stores under runs/ named below that exist): every sequence is read back and
written again, once in version 1 and once in version 2, with the source's shard size (the extraction's timed shard
P, else its largest shard), and once more in version 2 as a single shard (what a faster teacher's writer, whose
60-second shards hold far more positions, would write). Same values in every copy (asserted).

Synthetic data (as before version 2): ~1M positions, V = 49152, k = 5, uniformly random ids (incompressible: the
worst case for version 2) and peaked probabilities; FIRST's JSON lines and raw npy arrays beside.

Read throughput = positions decoded into (ids int64 (T, k), probs float32 (T, k)) per second, one sequence at a
time in order (what a data loader does), files in the page cache. "cold" includes ``KnowledgeStore.open`` (sha256
of every shard) and, for version 2, decoding each shard on its first read; "warm" reads the opened store again.
Version 1 and version 2 are timed alternately, ``--repeats`` times; ratios are the median of the per-repeat wall
ratios and the ratio of the median process CPU times (steadier than wall time on a shared machine: the load
average is printed); "v2 per cpu s" is version 2's positions per median second of process CPU time.

Entropy (plug-in, from the store's own counts, so optimistic: no cost for describing the model): ids
``sum_j H(id_j)`` (each rank's ids order-0), probabilities ``H(code_1) + sum_j H(code_j | code_(j-1))``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

from first_distill.store import KnowledgeStore, KnowledgeStoreWriter
from first_distill.store import writer as writer_module

REAL_STORES = ("runs/store-real", "runs/real-first-a/distill-run/knowledge/tempered-topk")
VOCAB_SIZE, K = 49152, 5
SYNTHETIC_POSITIONS = 1_000_000
GOAL_BYTES, GOAL_THROUGHPUT = 10.0, 5e6


# ------------------------------------------------------------------------------------------------- data


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


def synthetic_store_data(rng: np.random.Generator) -> dict:
    lengths = []
    while sum(lengths) < SYNTHETIC_POSITIONS:
        lengths.append(int(rng.integers(128, 385)))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids, probs = synthetic_topk(rng, int(offsets[-1]))
    return {"offsets": offsets, "ids": ids, "probs": probs, "vocab_size": VOCAB_SIZE, "shard_positions": 1 << 20,
            "temperature": 1.0}


def read_store_data(folder: Path) -> dict:
    """Every sequence of a store, decoded, with what is needed to write it again."""
    store = KnowledgeStore.open(folder)
    parts = [store.sequence(index) for index in range(store.n_sequences)]
    offsets = np.concatenate([[0], np.cumsum([len(ids) for ids, _ in parts])])
    probs = np.concatenate([probs for _, probs in parts]).astype(np.float64)
    # Decoded codes may sum to a hair over 1 (each is within its stated bound); the writer refuses sums over 1.001.
    probs /= np.maximum(probs.sum(axis=1, keepdims=True) / 1.0005, 1.0)
    shard_positions = (store.stats.get("extraction") or {}).get("timed_shard_positions") or max(
        shard.n_positions for shard in store.manifest.shards)
    return {"offsets": offsets, "ids": np.concatenate([ids for ids, _ in parts]),
            "probs": probs, "vocab_size": store.vocab_size, "shard_positions": int(shard_positions), "temperature": store.temperature,
            "quantization": store.manifest.identity.quantization}


# ----------------------------------------------------------------------------------------------- writing


def write_store(folder: Path, data: dict, version: int, shard_positions: int) -> float:
    """Write ``data`` as a store of version-1 or version-2 shards; returns the write seconds."""
    original = writer_module.write_shard

    def write_version_1(shard_folder, index, **kwargs):  # the writer as it was before version 2
        kwargs.pop("id_bits", None)
        return original(shard_folder, index, **kwargs)

    offsets, ids, probs = data["offsets"], data["ids"], data["probs"]
    start = time.perf_counter()
    if version == 1:
        writer_module.write_shard = write_version_1
    try:
        writer = KnowledgeStoreWriter(folder, vocab_size=data["vocab_size"], k=ids.shape[1], tokenizer_sha256="0" * 64,
                                      teacher_path="bench", teacher_config_sha256="0" * 64,
                                      temperature=data["temperature"], temperature_source="fixed",
                                      shard_positions=shard_positions)
        for index in range(len(offsets) - 1):
            writer.add(index, ids[offsets[index]:offsets[index + 1]], probs[offsets[index]:offsets[index + 1]])
        writer.close()
    finally:
        writer_module.write_shard = original
    return time.perf_counter() - start


def store_bytes(folder: Path) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    return sum((folder / shard["file"]).stat().st_size for shard in manifest["shards"])


# ----------------------------------------------------------------------------------------------- reading


def read_all(folder: Path, store: KnowledgeStore | None = None) -> None:
    """Open (unless given) and read every sequence in order."""
    store = store or KnowledgeStore.open(folder)
    for index in range(store.n_sequences):
        store.sequence(index)


def compare_reads(v1: Path, v2: Path, n_positions: int, repeats: int) -> dict:
    """Alternating timings of both versions; per access pattern, each version's best speed and the median ratio."""
    stores = {1: KnowledgeStore.open(v1), 2: KnowledgeStore.open(v2)}
    for store in stores.values():  # decode every version-2 shard once: "warm" below is the steady state
        read_all(Path(), store)
    n_sequences = stores[1].n_sequences
    order = np.random.default_rng(1).permutation(n_sequences)

    def batches(store):
        for first in range(0, n_sequences, 8):
            store.gather(range(first, min(first + 8, n_sequences)))

    def shuffled(store):
        for index in order:
            store.sequence(int(index))

    patterns = {"cold (open + read)": lambda version: read_all(v1 if version == 1 else v2),
                "warm": lambda version: read_all(Path(), stores[version]),
                "gather(8)": lambda version: batches(stores[version]),
                "shuffled": lambda version: shuffled(stores[version])}
    result = {}
    for name, run in patterns.items():
        wall, cpu = {1: [], 2: []}, {1: [], 2: []}
        for _ in range(repeats):
            for version in (1, 2):
                start, start_cpu = time.perf_counter(), time.process_time()
                run(version)
                wall[version].append(time.perf_counter() - start)
                cpu[version].append(time.process_time() - start_cpu)
        result[name] = {"v1": n_positions / min(wall[1]), "v2": n_positions / min(wall[2]),
                        "v2_cpu": n_positions / median(cpu[2]),  # per second of this process's CPU time
                        "ratio": median(a / b for a, b in zip(wall[1], wall[2])),  # v2 speed / v1 speed
                        "cpu_ratio": median(cpu[1]) / median(cpu[2])}
    return result


# ----------------------------------------------------------------------------------------------- entropy


def entropy_bits(*columns: np.ndarray) -> float:
    """Plug-in entropy (bits per row) of the joint values of the columns."""
    joint = np.stack([np.asarray(c, dtype=np.int64) for c in columns], axis=1)
    _, counts = np.unique(joint, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def entropies(data: dict) -> dict:
    from first_distill.store import ProbQuantization

    ids, probs = data["ids"], data["probs"]
    codes = ProbQuantization(k=ids.shape[1]).encode(-np.sort(-probs, axis=1))
    k = ids.shape[1]
    id_bits = sum(entropy_bits(ids[:, j]) for j in range(k))
    code_bits = entropy_bits(codes[:, 0]) + sum(entropy_bits(codes[:, j], codes[:, j - 1]) - entropy_bits(codes[:, j - 1])
                                                for j in range(1, k))
    return {"ids": id_bits / 8, "probs": code_bits / 8, "probs_order0": sum(entropy_bits(codes[:, j]) for j in range(k)) / 8}


# ----------------------------------------------------------------------------------------------- reports


def bench_store(name: str, data: dict, tmp: Path, repeats: int) -> dict:
    n_positions = int(data["offsets"][-1])
    shard_positions = data["shard_positions"]
    print(f"\n== {name}: {len(data['offsets']) - 1} sequences, {n_positions} positions, V = {data['vocab_size']}, "
          f"k = {data['ids'].shape[1]}, shards of {shard_positions} positions")
    sizes, writes = {}, {}
    for label, version, shard_size in (("v1", 1, shard_positions), ("v2", 2, shard_positions),
                                       ("v2, one shard", 2, max(n_positions, 1))):
        folder = tmp / f"{name}-{label.replace(' ', '').replace(',', '-')}"
        writes[label] = write_store(folder, data, version, shard_size)
        sizes[label] = store_bytes(folder) / n_positions
    v1, v2 = tmp / f"{name}-v1", tmp / f"{name}-v2"
    stored_v1, stored_v2 = KnowledgeStore.open(v1), KnowledgeStore.open(v2)
    for index in range(0, stored_v1.n_sequences, max(1, stored_v1.n_sequences // 200)):
        for a, b in zip(stored_v1.sequence(index), stored_v2.sequence(index)):
            assert np.array_equal(a, b), f"sequence {index} differs between versions"
    limit = entropies(data)
    print(f"{'layout':<22}{'bytes/pos':>10}{'vs v1':>8}{'write pos/s':>14}")
    for label, size in sizes.items():
        print(f"{label:<22}{size:>10.2f}{size / sizes['v1']:>7.2f}x{n_positions / writes[label] / 1e6:>12.2f} M")
    print(f"entropy (plug-in): ids {limit['ids']:.2f} B/pos, probability codes {limit['probs']:.2f} B/pos given the "
          f"previous rank's code ({limit['probs_order0']:.2f} order-0); sum {limit['ids'] + limit['probs']:.2f} B/pos; "
          f"v2 is {sizes['v2'] - limit['ids'] - limit['probs']:+.2f} B/pos from it "
          f"({sizes['v2, one shard'] - limit['ids'] - limit['probs']:+.2f} as one shard)")
    reads = compare_reads(v1, v2, n_positions, repeats)
    print(f"{'read (best wall)':<22}{'v1 pos/s':>12}{'v2 pos/s':>12}{'v2 per cpu s':>14}{'v2/v1 wall':>12}"
          f"{'v2/v1 cpu':>11}   (medians of {repeats} alternating repeats)")
    for pattern, r in reads.items():
        print(f"{pattern:<22}{r['v1'] / 1e6:>10.2f} M{r['v2'] / 1e6:>10.2f} M{r['v2_cpu'] / 1e6:>12.2f} M"
              f"{r['ratio']:>12.2f}{r['cpu_ratio']:>11.2f}")
    return {"sizes": sizes, "reads": reads, "entropy": limit}


def bench_other_formats(data: dict, tmp: Path) -> None:
    """FIRST's JSON lines and raw npy arrays, on the synthetic data (bytes and in-order read speed)."""
    offsets, ids, probs = data["offsets"], data["ids"], data["probs"]
    n_sequences, n_positions = len(offsets) - 1, int(offsets[-1])
    path = tmp / "first.jsonl"
    with open(path, "w") as handle:
        for index in range(n_sequences):
            rows = range(offsets[index], offsets[index + 1])
            handle.write(json.dumps([{str(int(i)): float(lp) for i, lp in zip(ids[row], np.log(probs[row]))}
                                     for row in rows]) + "\n")
    start = time.perf_counter()
    with open(path) as handle:
        for line in handle:
            tokens = json.loads(line)
            np.array([[int(i) for i in token] for token in tokens], dtype=np.int64)
            np.exp(np.array([list(token.values()) for token in tokens], dtype=np.float32))
    jsonl = (path.stat().st_size / n_positions, n_positions / (time.perf_counter() - start))
    np.save(tmp / "ids.npy", ids.astype(np.uint32))
    np.save(tmp / "probs.npy", probs.astype(np.float16))
    mapped_ids, mapped_probs = np.load(tmp / "ids.npy", mmap_mode="r"), np.load(tmp / "probs.npy", mmap_mode="r")
    start = time.perf_counter()
    for index in range(n_sequences):
        np.asarray(mapped_ids[offsets[index]:offsets[index + 1]], dtype=np.int64)
        np.asarray(mapped_probs[offsets[index]:offsets[index + 1]], dtype=np.float32)
    npy = ((tmp / "ids.npy").stat().st_size + (tmp / "probs.npy").stat().st_size + 8 * len(offsets)) / n_positions
    print(f"other formats, same data: first-jsonl {jsonl[0]:.1f} B/pos read {jsonl[1] / 1e6:.2f} M pos/s; npy u32+f16 "
          f"{npy:.1f} B/pos read {n_positions / (time.perf_counter() - start) / 1e6:.2f} M pos/s; dense fp32 "
          f"{4 * VOCAB_SIZE} B/pos")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", type=Path, help="a real knowledge store (repeatable)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timings per access pattern")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    stores = args.store or [Path(p) for p in REAL_STORES if (Path(p) / "manifest.json").is_file()]
    print(f"bench_store: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"numpy {np.__version__}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmp = Path(tmp)
        for folder in stores:
            results[str(folder)] = bench_store(folder.name, read_store_data(folder), tmp, args.repeats)
        if not args.skip_synthetic:
            data = synthetic_store_data(np.random.default_rng(0))
            results["synthetic"] = bench_store("synthetic", data, tmp, max(1, args.repeats // 2))
            bench_other_formats(data, tmp)
    print(f"\nload average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, result in results.items():
        if name == "synthetic":
            continue
        size, cold = result["sizes"]["v2"], result["reads"]["cold (open + read)"]
        print(f"goals on {name}: {size:.2f} B/pos (<= {GOAL_BYTES:.0f}: {'met' if size <= GOAL_BYTES else 'NOT met'}), "
              f"cold read {cold['v2'] / 1e6:.2f} M pos/s best wall, {cold['v2_cpu'] / 1e6:.2f} M per CPU second "
              f"(>= {GOAL_THROUGHPUT / 1e6:.0f} M: {'met' if cold['v2'] >= GOAL_THROUGHPUT else 'NOT met'} by wall, "
              f"{'met' if cold['v2_cpu'] >= GOAL_THROUGHPUT else 'NOT met'} by CPU time)")
    print(f"fixed-width ids alone at V = {VOCAB_SIZE}, k = {K}: {K * math.log2(VOCAB_SIZE) / 8:.2f} B/pos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
