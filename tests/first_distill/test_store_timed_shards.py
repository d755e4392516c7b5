"""Shards closed by time: the clock closes one shard and fixes the size of the rest, so a kill loses about
``shard_seconds`` of work and a resumed writer still writes the uninterrupted store byte for byte. Also: shards
of sequences without positions, and no temporary file left by a failed write."""

from __future__ import annotations

import os

import numpy as np
import pytest

from first_distill.store import KnowledgeStore, resume_from
from first_distill.store import writer as writer_module
from first_distill.store.shard import read_header
from test_store import _assert_round_trip, _sequences, _writer

SECONDS = 10.0


class FakeClock:
    """``monotonic`` for the writer: time moves only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(writer_module, "monotonic", fake)
    return fake


def write(folder, sequences, clock, stop=None, seconds_per_sequence=1.0, **overrides):
    """Add sequences from where the folder stopped to ``stop`` (one clock check after each); the open writer."""
    writer = _writer(folder, shard_seconds=SECONDS, **overrides)
    for index in range(writer.next_sequence, len(sequences) if stop is None else stop):
        writer.add(index, *sequences[index])
        clock.now += seconds_per_sequence
        writer.close_shard_if_due()
    return writer


def test_the_clock_closes_one_shard_and_fixes_the_size_of_the_rest(tmp_path, clock):
    sequences = _sequences(80, seed=3)
    writer = write(tmp_path, sequences, clock)  # default shard_positions (4.2 M): by size alone, one shard
    chosen = writer.timed_shard_positions
    manifest = writer.close()
    lengths = [len(ids) for ids, _ in sequences]
    assert manifest.shards[0].n_sequences == 10 and chosen == sum(lengths[:10])  # open 10 s: closed there
    assert len(manifest.shards) >= 4
    for shard in manifest.shards[1:-1]:  # closed by size P: the first sequence to reach P ends the shard
        held = lengths[shard.first_sequence:shard.first_sequence + shard.n_sequences]
        assert sum(held) >= chosen > sum(held[:-1])
    assert {read_header(tmp_path / shard.file).timed_shard_positions for shard in manifest.shards} == {chosen}
    _assert_round_trip(KnowledgeStore.open(tmp_path), sequences)


def test_a_resumed_writer_keeps_the_chosen_size_whatever_its_clock(tmp_path, clock):
    sequences = _sequences(80, seed=3)
    reference = write(tmp_path / "straight", sequences, clock).close()

    folder = tmp_path / "killed"
    killed = write(folder, sequences, clock, stop=57)  # then SIGKILL: the open shard is lost
    on_disk = resume_from(folder)
    lost = sum(len(ids) for ids, _ in sequences[on_disk:57])
    assert 0 < on_disk < 57 and 0 < lost < killed.shard_limit + max(len(ids) for ids, _ in sequences)
    # The resumed writer's clock races (it would close a shard at every check), but P is fixed: never consulted.
    resumed = write(folder, sequences, clock, seconds_per_sequence=1000.0)
    assert resumed.timed_shard_positions == reference.shards[0].n_positions
    manifest = resumed.close()
    assert manifest.to_dict() == reference.to_dict()  # same shard files (sha256 each), same stats
    _assert_round_trip(KnowledgeStore.open(folder), sequences)


def test_a_kill_before_the_clock_fires_loses_under_shard_seconds(tmp_path, clock):
    sequences = _sequences(40, seed=4)
    reference = write(tmp_path / "straight", sequences, clock).close()
    folder = tmp_path / "killed"
    write(folder, sequences, clock, stop=9)  # 9 s in: nothing closed yet
    assert resume_from(folder) == 0 and not list(folder.glob("shard-*.bin"))
    resumed = write(folder, sequences, clock, seconds_per_sequence=3.0)  # a slower resumed run chooses its own P
    manifest = resumed.close()
    assert manifest.shards[0].n_sequences == 4 and manifest.shards != reference.shards
    store, straight = KnowledgeStore.open(folder), KnowledgeStore.open(tmp_path / "straight")
    assert (store.n_sequences, store.n_positions) == (straight.n_sequences, straight.n_positions)
    for index in range(len(sequences)):  # the decoded contents do not depend on the shard layout
        for ours, theirs in zip(store.sequence(index), straight.sequence(index)):
            np.testing.assert_array_equal(ours, theirs)


def test_without_shard_seconds_the_clock_is_ignored(tmp_path, clock):
    sequences = _sequences(30, seed=5)
    writer = _writer(tmp_path)
    for index, (ids, probs) in enumerate(sequences):
        writer.add(index, ids, probs)
        clock.now += 1000.0
        assert not writer.close_shard_if_due()
    manifest = writer.close()
    assert len(manifest.shards) == 1 and read_header(tmp_path / manifest.shards[0].file).timed_shard_positions is None
    with pytest.raises(ValueError, match="shard_seconds must be a finite number > 0 or None, got 0"):
        _writer(tmp_path / "bad", shard_seconds=0)


def test_shards_of_sequences_without_positions_are_written(tmp_path):
    """The ``memoryview: cannot cast view with zeros`` crash: a shard whose sequences hold no position."""
    nothing = (np.zeros((0, 5), np.int64), np.zeros((0, 5)))
    sequences = [nothing, nothing, (np.array([[1, 2, 3, 4, 5]]), np.array([[0.5, 0.2, 0.1, 0.1, 0.05]])), nothing]
    writer = _writer(tmp_path, shard_positions=1)
    for index, (ids, probs) in enumerate(sequences):
        writer.add(index, ids, probs)
    manifest = writer.close()
    assert [shard.n_positions for shard in manifest.shards] == [1, 0]  # sequences 0-2, then 3 alone
    store = KnowledgeStore.open(tmp_path)
    assert [len(store.sequence(index)[0]) for index in range(4)] == [0, 0, 1, 0]
    assert not list(tmp_path.glob(".shard-*.tmp"))


def test_a_failed_shard_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    writer = _writer(tmp_path, shard_positions=1)

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        writer.add(0, np.array([[1, 2, 3, 4, 5]]), np.array([[0.5, 0.2, 0.1, 0.1, 0.05]]))
    assert not list(tmp_path.glob(".shard-*")) and resume_from(tmp_path) == 0
