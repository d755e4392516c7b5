"""A killed extraction, rerun, gives the same store byte for byte as one that never stopped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from first_distill.store import KnowledgeStore, KnowledgeStoreWriter, file_sha256, resume_from
from first_distill.teacher.extract import TEMPERATURE_FILE, ExtractConfig, extract_knowledge
from first_distill.store.shard import read_header
from first_eval.errors import InputError
from tiny_models import write_leg_count_pairs, tiny_llama_dir  # noqa: F401  (session fixture)

# The random tiny teacher is nearly flat: 8-bit codes round most of its probabilities to 0 (warned once, below).
pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")

N_EXAMPLES = 40


class Killed(Exception):
    """Stands in for SIGKILL: the run stops between two writes and nothing after it runs."""


@pytest.fixture()
def train_file(tmp_path):
    return write_leg_count_pairs(tmp_path / "train.jsonl", N_EXAMPLES)


def config(tiny_llama_dir, train_file, output, **overrides):  # noqa: F811
    settings = dict(teacher=tiny_llama_dir, output=output, train=train_file, top_k=4, teacher_temperature=1.5,
                    batch_size=2, shard_positions=16, progress=False, device="cpu")
    settings.update(overrides)
    return ExtractConfig(**settings)


def kill_after(monkeypatch, n_sequences: int) -> None:
    original = KnowledgeStoreWriter.add

    def add(self, index, ids, probs):
        if index >= n_sequences:
            raise Killed(f"killed before sequence {index}")
        original(self, index, ids, probs)

    monkeypatch.setattr(KnowledgeStoreWriter, "add", add)


def store_bytes(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stats"].pop("extraction")  # timings differ run to run
    return manifest, {shard["file"]: file_sha256(folder / shard["file"]) for shard in manifest["shards"]}


@pytest.mark.parametrize("selection, batch_size", [("topk", 2), ("sample", 1)])  # batch 1: the kill falls in window 0 of 2
def test_rerun_after_a_kill_writes_identical_shards(selection, batch_size, monkeypatch, tmp_path, tiny_llama_dir,  # noqa: F811
                                                    train_file):
    extra = {"selection": "sample", "samples_per_position": 8} if selection == "sample" else {}
    extra["batch_size"] = batch_size
    uninterrupted = extract_knowledge(config(tiny_llama_dir, train_file, tmp_path / "straight", **extra))
    assert len(uninterrupted.manifest.shards) >= 4

    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        kill_after(patch, 27)
        with pytest.raises(Killed):
            extract_knowledge(config(tiny_llama_dir, train_file, killed, **extra))
    stopped_at = resume_from(killed)
    assert 0 < stopped_at < 27  # some shards are complete, the unfinished one is lost
    assert not (killed / "manifest.json").exists() and (killed / TEMPERATURE_FILE).exists()
    with pytest.raises(InputError, match="never finished: resume it"):
        KnowledgeStore.open(killed)

    resumed = extract_knowledge(config(tiny_llama_dir, train_file, killed, **extra))
    assert resumed.resumed_from == stopped_at
    assert resumed.manifest.stats["extraction"]["resumed_from"] == stopped_at
    assert resumed.positions_this_run == uninterrupted.manifest.n_positions - sum(
        shard.n_positions for shard in uninterrupted.manifest.shards if shard.first_sequence < stopped_at)
    assert store_bytes(killed) == store_bytes(tmp_path / "straight")


def test_resume_with_other_settings_is_refused(monkeypatch, tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    folder = tmp_path / "store"
    with monkeypatch.context() as patch:
        kill_after(patch, 30)
        with pytest.raises(Killed):
            extract_knowledge(config(tiny_llama_dir, train_file, folder))
    assert resume_from(folder) > 0
    with pytest.raises(InputError, match=r"written with different settings"):
        extract_knowledge(config(tiny_llama_dir, train_file, folder, teacher_temperature=2.5))
    finished = extract_knowledge(config(tiny_llama_dir, train_file, folder))  # the original settings still resume
    assert finished.manifest.n_sequences == N_EXAMPLES
    with pytest.raises(InputError, match=r"already holds a complete knowledge store"):
        extract_knowledge(config(tiny_llama_dir, train_file, folder))


def test_a_resumed_run_reuses_the_recorded_temperature(monkeypatch, tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    """T is decided once (for `auto` that is an lm-eval run): a resumed run with the same request takes it from
    the folder, even if its source has changed since, so the store stays one temperature."""
    calibrators = tmp_path / "calibrators.json"
    calibrators.write_text(json.dumps({"tasks": {"arc_easy": {"temperature": {"temperature": 1.3}}}}))
    folder = tmp_path / "store"
    settings = dict(teacher_temperature=None, calibrators_from=calibrators)
    with monkeypatch.context() as patch:
        kill_after(patch, 30)
        with pytest.raises(Killed):
            extract_knowledge(config(tiny_llama_dir, train_file, folder, **settings))
    calibrators.write_text(json.dumps({"tasks": {"arc_easy": {"temperature": {"temperature": 9.9}}}}))
    resumed = extract_knowledge(config(tiny_llama_dir, train_file, folder, **settings))
    assert resumed.resumed_from > 0 and resumed.teacher_temperature.value == 1.3
    assert KnowledgeStore.open(folder).temperature == 1.3


# ------------------------------------------------------------------------------------- shards closed by time


class TeacherClock:
    """The writer's ``monotonic``, advancing ``seconds_per_pass`` per teacher forward pass (wall time follows work)."""

    def __init__(self, seconds_per_pass: float):
        self.now, self.seconds_per_pass, self.positions = 0.0, seconds_per_pass, 0

    def __call__(self) -> float:
        return self.now


def run_on_clock(patch, clock: TeacherClock) -> None:
    from first_distill.teacher import extract as extract_module
    from first_distill.store import writer as writer_module

    original = extract_module.completion_logits

    def completion_logits(model, batch):
        clock.now += clock.seconds_per_pass
        clock.positions += int(batch.n_completion.sum())
        return original(model, batch)

    patch.setattr(extract_module, "completion_logits", completion_logits)
    patch.setattr(writer_module, "monotonic", clock)


def kill_at_shard(patch, n_written: int) -> None:
    """SIGKILL while shard ``n_written`` is being written (the worst moment: the whole open shard is lost)."""
    from first_distill.store import writer as writer_module

    original = writer_module.write_shard

    def write_shard(folder, index, **kwargs):
        if index >= n_written:
            raise Killed(f"killed writing shard {index}")
        return original(folder, index, **kwargs)

    patch.setattr(writer_module, "write_shard", write_shard)


def test_a_timed_shard_bounds_what_a_kill_loses_and_the_resume_is_byte_identical(monkeypatch, tmp_path, tiny_llama_dir):  # noqa: F811
    rows = [{"prompt": f"Question: how many legs has animal number {i}?\nAnswer:", "completion": " " + "four " * (1 + i % 4)}
            for i in range(160)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # batch 1: a window is 32 passes = 32 "seconds"; the clock closes the first shard at the end of window 0
    settings = dict(batch_size=1, shard_positions=1 << 22, shard_seconds=20.0)

    by_size = extract_knowledge(config(tiny_llama_dir, train, tmp_path / "by-size", **{**settings, "shard_seconds": None}))
    assert len(by_size.manifest.shards) == 1  # a kill anywhere before the end would lose everything

    with monkeypatch.context() as patch:
        run_on_clock(patch, TeacherClock(1.0))
        straight = extract_knowledge(config(tiny_llama_dir, train, tmp_path / "straight", **settings))
    shards = straight.manifest.shards
    assert shards[0].n_sequences == 32 and len(shards) >= 4  # window 0, then shards of >= its positions
    assert {read_header(tmp_path / "straight" / s.file).timed_shard_positions for s in shards} == {shards[0].n_positions}

    killed = tmp_path / "killed"
    clock = TeacherClock(1.0)
    with monkeypatch.context() as patch:
        run_on_clock(patch, clock)
        kill_at_shard(patch, 3)
        with pytest.raises(Killed):
            extract_knowledge(config(tiny_llama_dir, train, killed, **settings))
    on_disk = sum(s.n_positions for s in shards[:3])
    assert resume_from(killed) == shards[3].first_sequence
    lost = clock.positions - on_disk  # computed by the teacher, not on disk
    assert 0 < lost <= shards[3].n_positions + 32 * 8  # the open shard, and the rest of its window

    with monkeypatch.context() as patch:  # a resumed run on a much slower machine: P is read from the shards
        run_on_clock(patch, TeacherClock(1000.0))
        resumed = extract_knowledge(config(tiny_llama_dir, train, killed, **settings))
    assert resumed.resumed_from == shards[3].first_sequence
    assert store_bytes(killed) == store_bytes(tmp_path / "straight")
    ours, theirs = KnowledgeStore.open(killed), KnowledgeStore.open(by_size.folder)
    for index in range(len(rows)):  # and the contents equal the size-only store's, whatever the layout
        for a, b in zip(ours.sequence(index), theirs.sequence(index)):
            np.testing.assert_array_equal(a, b)
    print(f"\nshards: {len(shards)} (P = {shards[0].n_positions} positions) vs 1 by size; on the kill at shard 3: "
          f"{lost} of {clock.positions} computed positions lost, {on_disk} kept; by size alone all "
          f"{clock.positions} would be lost")
