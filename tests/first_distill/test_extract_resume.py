"""A killed extraction, rerun, gives the same store byte for byte as one that never stopped."""

from __future__ import annotations

import json

import pytest

from first_distill.knowledge import KnowledgeStore, KnowledgeStoreWriter, file_sha256, resume_from
from first_distill.knowledge.extract import TEMPERATURE_FILE, ExtractConfig, extract_knowledge
from first_eval.errors import InputError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

# The random tiny teacher is nearly flat: 8-bit codes round most of its probabilities to 0 (warned once, below).
pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")

N_EXAMPLES = 40


class Killed(Exception):
    """Stands in for SIGKILL: the run stops between two writes and nothing after it runs."""


@pytest.fixture()
def train_file(tmp_path):
    rows = [{"prompt": f"Question: how many legs has animal number {i}?\nAnswer:", "completion": " " + "four " * (1 + i % 4)}
            for i in range(N_EXAMPLES)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


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
