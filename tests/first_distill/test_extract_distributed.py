"""Extraction under ``accelerate launch`` / ``torchrun`` with two CPU processes (gloo): each rank extracts its own
block of sequences into its own shards, rank 0 writes the manifest last, and the store holds exactly what a
one-process extraction holds, sequence by sequence in the original order. A kill of one rank resumes, per rank,
byte for byte; another number of processes is refused. Plus the pure parts: the split, the manifest's ranks,
several writers into one folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from first_distill.store import KnowledgeStore, Manifest, file_sha256
from first_distill.teacher.extract import ExtractConfig, extract_knowledge
from first_distill.teacher.windows import WINDOW_BATCHES, plan_windows, rank_ranges
from first_distill.store.manifest import MANIFEST_NAME
from first_distill.teacher.ranks import PLAN_FILE, RankPlan, settle_plan, split_ranges, write_plan
from first_distill.store.shard import shard_prefix
from first_eval.errors import InputError
from test_store import _sequences, _writer
from tiny_models import write_leg_count_pairs, tiny_llama_dir  # noqa: F401  (session fixture)

pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")

LAUNCHED = Path(__file__).with_name("launched_first.py")
N_EXAMPLES = 160  # batch 1: windows of 32 sequences, 5 of them; the later ones are longer: the ranks take 3 and 2


# ----------------------------------------------------------------------------------------------- the split


def test_ranges_are_whole_windows_of_about_equal_cost():
    assert split_ranges([(0, 10), (10, 20), (20, 30), (30, 40)], [1, 1, 1, 1], 2) == ((0, 20), (20, 40))
    assert split_ranges([(0, 10), (10, 20), (20, 30), (30, 40)], [6, 1, 1, 1], 2) == ((0, 10), (10, 40))
    assert split_ranges([(0, 10), (10, 15)], [1, 1], 4) == ((0, 10), (10, 10), (10, 15), (15, 15))  # idle ranks
    assert split_ranges([(0, 10)], [1], 2) == ((0, 10), (10, 10))  # a lone window goes to rank 0
    assert split_ranges([(0, 7)], [3], 1) == ((0, 7),)

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    n_completion = np.ones(1000, dtype=np.int64)
    for world_size in (1, 2, 3, 8):
        ranges = rank_ranges(lengths, n_completion, 4, world_size)
        window = WINDOW_BATCHES * 4
        assert ranges[0][0] == 0 and ranges[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(first % window == 0 for first, _ in ranges)  # every batch is one a one-process run forms
        loads = [sum(len(b) * lengths[b].max() for w in plan_windows(lengths, n_completion, first, 4, (first, stop))
                     for b in w.batches) for first, stop in ranges]
        biggest_window = max(sum(len(b) * lengths[b].max() for b in w.batches)
                             for w in plan_windows(lengths, n_completion, 0, 4))
        assert max(loads) <= sum(loads) / world_size + biggest_window
    assert rank_ranges(lengths, n_completion, 4, 3) == rank_ranges(lengths, n_completion, 4, 3)


def test_a_resume_follows_the_recorded_plan_and_refuses_another_number_of_processes(tmp_path):
    fresh = lambda: ((0, 5), (5, 10))  # noqa: E731
    assert settle_plan(tmp_path, 2, 10, fresh).ranges == ((0, 5), (5, 10))
    write_plan(tmp_path, RankPlan(2, 10, ((0, 6), (6, 10))))
    assert settle_plan(tmp_path, 1, 10, lambda: ((0, 10),)).world_size == 1  # no shards yet: nothing to keep
    (tmp_path / f"{shard_prefix(1)}-00000.bin").write_bytes(b"")
    assert settle_plan(tmp_path, 2, 10, fresh).ranges == ((0, 6), (6, 10))  # the recorded blocks, not fresh ones
    with pytest.raises(InputError, match=r"started by 2 processes and is resumed by 1; resume it with 2 processes "
                                         r"\(accelerate launch --num_processes 2\)") as refused:
        settle_plan(tmp_path, 1, 10, lambda: ((0, 10),))
    assert "\n" not in str(refused.value)
    with pytest.raises(InputError, match=r"started on 10 training sequences and this run has 12"):
        settle_plan(tmp_path, 2, 12, fresh)
    legacy = tmp_path / "legacy"  # a one-process folder from before plans were recorded
    legacy.mkdir()
    (legacy / "shard-00000.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"started by 1 process and is resumed by 2; resume it with one process"):
        settle_plan(legacy, 2, 10, fresh)


# ------------------------------------------------------------------------------- several writers, one store


def test_writers_of_consecutive_blocks_make_one_store_read_in_order(tmp_path):
    sequences = _sequences(30, seed=4)
    one = _writer(tmp_path / "one", shard_positions=40)
    for index, sequence in enumerate(sequences):
        one.add(index, *sequence)
    alone = one.close()
    assert alone.world_size == 1 and alone.ranks[0].shards == tuple(s.file for s in alone.shards)

    folder = tmp_path / "three"
    parts = []
    for rank, (first, stop) in enumerate(((0, 12), (12, 12), (12, 30))):  # rank 1 has nothing to do
        writer = _writer(folder, shard_positions=40, first_sequence=first, shard_prefix=shard_prefix(rank))
        for index in range(first, stop):
            writer.add(index, *sequences[index])
        parts.append(writer.finish())
    manifest = writer.write_manifest(parts)
    assert manifest.world_size == 3 and [r.n_sequences for r in manifest.ranks] == [12, 0, 18]
    assert all(name.startswith("shard-rank002-") for name in manifest.ranks[2].shards)
    assert Manifest.from_dict(json.loads((folder / MANIFEST_NAME).read_text())) == manifest
    assert (manifest.n_positions, manifest.stats["topk_mass"]["p50"]) == (alone.n_positions, alone.stats["topk_mass"]["p50"])
    ours, theirs = KnowledgeStore.open(folder), KnowledgeStore.open(tmp_path / "one")
    for index in range(len(sequences)):
        for a, b in zip(ours.sequence(index), theirs.sequence(index)):
            np.testing.assert_array_equal(a, b)
    batch, expected = ours.gather([29, 0, 12, 11]), theirs.gather([29, 0, 12, 11])
    np.testing.assert_array_equal(batch.topk_ids, expected.topk_ids)
    np.testing.assert_array_equal(batch.offsets, expected.offsets)

    bad = manifest.to_dict()
    bad["ranks"][0]["shards"] = bad["ranks"][0]["shards"][1:]
    with pytest.raises(ValueError, match="rank 0 .* does not match the shards list"):
        Manifest.from_dict(bad)
    other = _writer(tmp_path / "other", temperature=2.0, first_sequence=12, shard_prefix=shard_prefix(1))
    with pytest.raises(ValueError, match="rank 1 wrote its shards with different settings"):
        writer.write_manifest([parts[0], other.finish()])


# -------------------------------------------------------------------------------------- two real processes


@pytest.fixture()
def train_file(tmp_path):
    return write_leg_count_pairs(tmp_path / "train.jsonl", N_EXAMPLES)


def extract_args(teacher, train, output) -> list[str]:
    return ["distill", "extract", "--teacher", str(teacher), "--train", str(train), "--top-k", "4",
            "--teacher-temperature", "1.5", "--batch-size", "1", "--device", "cpu", "--output", str(output)]


def launch(args: list[str], **stand_ins: str) -> subprocess.CompletedProcess:
    """Two CPU processes, as ``accelerate launch`` starts them on GPUs: torchrun (what its multi-GPU launcher runs;
    ``accelerate launch --cpu`` starts one process unless under mpirun) with ``ACCELERATE_USE_CPU``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "ACCELERATE_USE_CPU": "true", **stand_ins}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(LAUNCHED), *args], capture_output=True, text=True, env=env, timeout=600)


def shard_bytes(folder: Path) -> tuple[dict, dict]:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["stats"].pop("extraction")  # timings differ run to run
    return manifest, {shard["file"]: file_sha256(folder / shard["file"]) for shard in manifest["shards"]}


def assert_same_contents(folder: Path, reference: Path) -> None:
    """Decoded sequence by sequence, in the original order; also through the collator, in a shuffled batch."""
    from first_distill.collator import DistillationCollator, ExampleDataset
    from first_distill.model_folders import load_tokenizer, locate_model
    from first_distill.training_data import read_training_jsonl, tokenize_examples

    ours, theirs = KnowledgeStore.open(folder), KnowledgeStore.open(reference)
    assert ours.manifest.identity == theirs.manifest.identity
    assert (ours.n_sequences, ours.n_positions) == (theirs.n_sequences, theirs.n_positions) == (N_EXAMPLES, ours.n_positions)
    for index in range(N_EXAMPLES):
        for a, b in zip(ours.sequence(index), theirs.sequence(index)):
            np.testing.assert_array_equal(a, b)
    assert ours.stats["topk_mass"] == pytest.approx(theirs.stats["topk_mass"])
    teacher = Path(ours.manifest.identity.teacher_path)
    examples = tokenize_examples(read_training_jsonl(Path(ours.manifest.identity.extra["training_data"]["path"])).examples,
                                 load_tokenizer(locate_model(teacher, "--teacher"), "--teacher"), 2048)
    dataset = ExampleDataset(examples)
    features = [dataset[i] for i in (159, 0, 63, 64, 65, 100)]  # across the ranks' blocks
    ours_batch = DistillationCollator(0, ours)(features)
    theirs_batch = DistillationCollator(0, theirs)(features)
    for key in ("topk_ids", "topk_probs", "labels"):
        assert ours_batch[key].equal(theirs_batch[key])


def test_two_processes_write_the_store_one_process_writes_and_a_killed_rank_resumes_byte_for_byte(
        tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    clock = {"FIRST_TEST_SECONDS_PER_PASS": "20"}  # 32 passes a window: each rank's clock closes its window 0
    alone = extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=tmp_path / "one", train=train_file, top_k=4,
                                            teacher_temperature="1.5", batch_size=1, device="cpu", progress=False))
    assert alone.world_size == 1 and alone.manifest.world_size == 1

    straight = launch(extract_args(tiny_llama_dir, train_file, tmp_path / "two"), **clock)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert [line for line in straight.stderr.splitlines() if line.startswith("wrote ")] == [
        line for line in straight.stderr.splitlines() if line.startswith(f"wrote {tmp_path / 'two'}: ")]
    assert sum(line.startswith("wrote ") for line in straight.stderr.splitlines()) == 1  # the summary, once
    assert "with 2 processes" in straight.stderr
    manifest = Manifest.from_dict(json.loads((tmp_path / "two" / MANIFEST_NAME).read_text()))
    assert manifest.world_size == 2 and [(r.first_sequence, r.n_sequences) for r in manifest.ranks] == [(0, 96), (96, 64)]
    for rank in manifest.ranks:
        assert len(rank.shards) >= 2 and all(name.startswith(f"shard-rank{rank.rank:03d}-") for name in rank.shards)
    extraction = manifest.stats["extraction"]
    assert extraction["world_size"] == 2 and [r["rank"] for r in extraction["ranks"]] == [0, 1]
    assert extraction["positions_this_run"] == manifest.n_positions and extraction["resumed_from"] == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith("shard-")) == [
        "manifest.json", "teacher_temperature.json"]  # the plan and the parts are in the manifest now
    assert_same_contents(tmp_path / "two", tmp_path / "one")

    killed = tmp_path / "killed"
    crashed = launch(extract_args(tiny_llama_dir, train_file, killed), **clock, FIRST_TEST_KILL="1:1")
    assert crashed.returncode != 0
    assert not (killed / MANIFEST_NAME).exists() and (killed / PLAN_FILE).is_file()
    assert (killed / "shard-rank001-00000.bin").is_file() and not (killed / "shard-rank001-00001.bin").exists()
    with pytest.raises(InputError, match=r"started by 2 processes and is resumed by 1"):
        extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=killed, train=train_file, top_k=4,
                                        teacher_temperature="1.5", batch_size=1, device="cpu", progress=False))

    resumed = launch(extract_args(tiny_llama_dir, train_file, killed), **clock)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "sequences were already extracted" in resumed.stderr
    ranks = json.loads((killed / MANIFEST_NAME).read_text())["stats"]["extraction"]["ranks"]
    assert ranks[1]["resumed_from"] > ranks[1]["first_sequence"]  # rank 1 kept its complete shards
    assert shard_bytes(killed) == shard_bytes(tmp_path / "two")  # per rank: the uninterrupted run's files
    assert_same_contents(killed, tmp_path / "one")
