"""Knowledge store: round trip, crash safety and resume, corruption and mismatch errors, fingerprints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from first_distill.store import (KnowledgeStore, KnowledgeStoreWriter, resume_from, tokenizer_fingerprint)
from first_distill.store.manifest import SCHEMA
from first_eval.errors import InputError

TOKENIZER_SHA = "ab12" * 16
TEACHER_SHA = "cd34" * 16


def _writer(folder, vocab_size=1000, k=5, **overrides):
    fields = dict(vocab_size=vocab_size, k=k, tokenizer_sha256=TOKENIZER_SHA, teacher_path="teachers/tiny",
                  teacher_config_sha256=TEACHER_SHA, temperature=1.25, temperature_source="calibration.json")
    fields.update(overrides)
    return KnowledgeStoreWriter(folder, **fields)


def _sequences(n, vocab_size=1000, k=5, seed=0, max_length=40):
    """Peaked teacher top-k: (ids (T, k), probs (T, k)) per sequence, probs in random order."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n):
        length = int(rng.integers(0, max_length))
        logits = rng.normal(size=(length, 4 * k)) * rng.uniform(0.5, 4.0)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True) * rng.uniform(1.0, 1.5, size=(length, 1))
        probs = probs[:, rng.permutation(4 * k)[:k]]
        ids = np.stack([rng.choice(vocab_size, k, replace=False) for _ in range(length)]) if length else np.zeros((0, k), np.int64)
        sequences.append((ids, probs))
    return sequences


def _write(folder, sequences, **overrides):
    writer = _writer(folder, **overrides)
    for index, (ids, probs) in enumerate(sequences):
        writer.add(index, ids, probs)
    return writer.close()


def _assert_round_trip(store, sequences):
    bound = np.array(store.manifest.identity.quantization["probs"]["max_abs_error"])
    for index, (ids, probs) in enumerate(sequences):
        order = np.argsort(-probs, axis=1, kind="stable")
        stored_ids, stored_probs = store.sequence(index)
        assert stored_ids.dtype == np.int64 and stored_probs.dtype == np.float32
        np.testing.assert_array_equal(stored_ids, np.take_along_axis(ids, order, axis=1))
        assert np.all(np.abs(stored_probs - np.take_along_axis(probs, order, axis=1)) <= bound)


# ------------------------------------------------------------------------------------------- round trip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 30), k=st.integers(1, 6), vocab_size=st.sampled_from([7, 300, 49152, 131072]),
       shard_positions=st.integers(1, 200), prob_bits=st.sampled_from([8, 16]), seed=st.integers(0, 10**6))
def test_round_trip_is_exact_for_ids_and_within_the_bound_for_probs(tmp_path_factory, n, k, vocab_size, shard_positions,
                                                                     prob_bits, seed):
    folder = tmp_path_factory.mktemp("store")
    sequences = _sequences(n, vocab_size=vocab_size, k=k, seed=seed)
    manifest = _write(folder, sequences, vocab_size=vocab_size, k=k, shard_positions=shard_positions, prob_bits=prob_bits)
    store = KnowledgeStore.open(folder, expect_vocab_size=vocab_size, expect_tokenizer_sha256=TOKENIZER_SHA)
    assert len(store) == n == manifest.n_sequences
    assert store.n_positions == sum(len(ids) for ids, _ in sequences)
    _assert_round_trip(store, sequences)


def test_manifest_fields_and_stats(tmp_path):
    sequences = _sequences(50, seed=1)
    _write(tmp_path, sequences, shard_positions=300, extra={"dataset": "arc_easy"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["schema"] == SCHEMA
    assert manifest["teacher"] == {"path": "teachers/tiny", "config_sha256": TEACHER_SHA}
    assert (manifest["tokenizer_sha256"], manifest["vocab_size"], manifest["k"]) == (TOKENIZER_SHA, 1000, 5)
    assert (manifest["selection"], manifest["temperature"], manifest["temperature_source"]) == ("topk", 1.25, "calibration.json")
    assert manifest["quantization"]["probs"]["max_abs_error"][0] == pytest.approx(1 / 510 + 2**-23)
    assert manifest["extra"] == {"dataset": "arc_easy"}
    assert len(manifest["shards"]) > 1
    assert [s["first_sequence"] for s in manifest["shards"]] == list(np.cumsum([0] + [s["n_sequences"] for s in manifest["shards"]])[:-1])
    assert {"file", "sha256", "bytes", "n_sequences", "n_positions", "first_sequence"} <= set(manifest["shards"][0])

    all_probs = np.concatenate([probs for _, probs in sequences])
    mass = all_probs.sum(axis=1)
    stats = KnowledgeStore.open(tmp_path).stats
    assert stats["positions"] == len(all_probs)
    assert stats["topk_mass"]["mean"] == pytest.approx(mass.mean())
    assert stats["topk_mass"]["min"] == pytest.approx(mass.min())
    for q in (1, 50, 99):
        # the bin's upper edge of the order-statistic percentile: exact to the 0.001 bin width
        order_statistic = np.percentile(mass, q, method="inverted_cdf")
        assert 0 <= stats["topk_mass"][f"p{q:02d}"] - order_statistic <= 1e-3 + 1e-12
    assert stats["top1_prob_mean"] == pytest.approx(all_probs.max(axis=1).mean())
    assert stats["payload_bytes_per_position"] == 7 + 5  # 5 ids x 10 bits = 50 bits -> 7 bytes, 5 x uint8 probs
    file_bytes = sum((tmp_path / s["file"]).stat().st_size for s in manifest["shards"])
    assert stats["bytes_per_position"] == pytest.approx(file_bytes / len(all_probs))  # + headers and offsets


def test_gather_and_to_padded_place_rows_at_the_completion_positions(tmp_path):
    sequences = _sequences(12, seed=2)
    _write(tmp_path, sequences, shard_positions=50)
    store = KnowledgeStore.open(tmp_path)
    indices = [7, 0, 11, 7]
    batch = store.gather(indices)
    np.testing.assert_array_equal(batch.lengths, [len(sequences[i][0]) for i in indices])
    for b, index in enumerate(indices):
        ids, probs = store.sequence(index)
        np.testing.assert_array_equal(batch.topk_ids[batch.offsets[b]:batch.offsets[b + 1]], ids)
        np.testing.assert_array_equal(batch.topk_probs[batch.offsets[b]:batch.offsets[b + 1]], probs)
    np.testing.assert_allclose(batch.tail_mass, np.clip(1 - batch.topk_probs.sum(axis=1), 0, None))

    width = int(batch.lengths.max()) + 3
    mask = np.zeros((len(indices), width), dtype=bool)
    for b, length in enumerate(batch.lengths):
        mask[b, 2:2 + length] = True  # completion after a 2-token prompt
    ids, probs = batch.to_padded(mask)
    assert ids.shape == (len(indices), width, 5) and probs.dtype == np.float32
    for b, index in enumerate(indices):
        np.testing.assert_array_equal(ids[b, 2:2 + batch.lengths[b]], store.sequence(index)[0])
        assert not ids[b, ~mask[b]].any() and not probs[b, ~mask[b]].any()
    mask[0, 2] = False
    with pytest.raises(ValueError, match="sequence 0 of the batch has"):
        batch.to_padded(mask)
    assert store.gather([]).topk_ids.shape == (0, 5)
    with pytest.raises(IndexError, match="sequence 12 out of range"):
        store.sequence(12)


def test_sampled_selection_round_trips_counts_exactly(tmp_path):
    rng = np.random.default_rng(4)
    samples, k = 16, 6
    writer = _writer(tmp_path, k=k, selection="sample", samples_per_position=samples)
    expected = []
    for index in range(5):
        draws = rng.integers(0, 40, size=(9, samples))
        ids = np.zeros((9, k), np.int64)
        weights = np.zeros((9, k))
        for t, row in enumerate(draws):
            unique, counts = np.unique(row, return_counts=True)
            top = np.argsort(-counts, kind="stable")[:k]
            ids[t, :len(top)], weights[t, :len(top)] = unique[top], counts[top] / samples
        writer.add(index, ids, weights)
        expected.append((ids, weights))
    writer.close()
    store = KnowledgeStore.open(tmp_path)
    assert store.selection == "sample" and store.manifest.identity.samples_per_position == samples
    for index, (ids, weights) in enumerate(expected):
        stored_ids, stored_weights = store.sequence(index)
        np.testing.assert_array_equal(stored_ids, ids)
        np.testing.assert_array_equal(stored_weights, weights.astype(np.float32))


# ------------------------------------------------------------------------------------- crash and resume


def test_a_kill_while_writing_a_shard_leaves_no_valid_looking_shard_and_resume_continues(tmp_path, monkeypatch):
    sequences = _sequences(40, seed=5)
    reference = _write(tmp_path / "reference", sequences, shard_positions=120)
    assert len(reference.shards) >= 3

    folder = tmp_path / "killed"
    writer = _writer(folder, shard_positions=120)
    real_replace = os.replace
    renames = []

    def killed_on_third_rename(source, target):
        if str(target).endswith(".bin") and len(renames) == 2:
            raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it
        renames.append(target)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_on_third_rename)
    with pytest.raises(KeyboardInterrupt):
        for index, (ids, probs) in enumerate(sequences):
            writer.add(index, ids, probs)
    monkeypatch.setattr(os, "replace", real_replace)

    assert sorted(p.name for p in folder.glob("shard-*.bin")) == ["shard-00000.bin", "shard-00001.bin"]
    assert list(folder.glob(".shard-00002.bin.*.tmp"))  # the half-done shard, under its temporary name
    assert not (folder / "manifest.json").exists()
    restart = resume_from(folder)
    assert restart == reference.shards[2].first_sequence
    with pytest.raises(InputError, match="never finished: resume it"):
        KnowledgeStore.open(folder)

    resumed = _writer(folder, shard_positions=120)
    assert resumed.next_sequence == restart
    assert not list(folder.glob(".shard-*.tmp"))
    for index in range(restart, len(sequences)):
        resumed.add(index, *sequences[index])
    manifest = resumed.close()
    # Deterministic encoding: the resumed store is byte-identical to the uninterrupted one.
    assert [s.sha256 for s in manifest.shards] == [s.sha256 for s in reference.shards]
    assert manifest.stats == reference.stats
    _assert_round_trip(KnowledgeStore.open(folder), sequences)
    assert resume_from(folder) == len(sequences)


def test_resume_from_an_empty_or_missing_folder_is_zero_and_stray_files_are_ignored(tmp_path):
    assert resume_from(tmp_path / "missing") == 0
    (tmp_path / ".shard-00000.bin.123.tmp").write_bytes(b"half a shard")
    (tmp_path / "shard-00000.bin").write_bytes(b"FIRSTKN")  # not a whole shard: does not count
    assert resume_from(tmp_path) == 0


def test_resuming_with_different_settings_or_adding_out_of_order_is_refused(tmp_path):
    sequences = _sequences(10, seed=6)
    writer = _writer(tmp_path, shard_positions=30)
    for index in range(6):
        writer.add(index, *sequences[index])
    del writer  # killed: the complete shards stay
    with pytest.raises(ValueError, match="different settings"):
        _writer(tmp_path, shard_positions=30, temperature=2.0)
    writer = _writer(tmp_path, shard_positions=30)
    with pytest.raises(ValueError, match=f"expected sequence {writer.next_sequence} next"):
        writer.add(writer.next_sequence + 1, *sequences[0])
    for index in range(writer.next_sequence, 10):
        writer.add(index, *sequences[index])
    writer.close()
    with pytest.raises(ValueError, match="already holds a complete knowledge store"):
        _writer(tmp_path)


# ------------------------------------------------------------------------------------- damaged stores


@pytest.fixture
def store_folder(tmp_path):
    _write(tmp_path, _sequences(30, seed=7), shard_positions=150)
    return tmp_path


@pytest.mark.parametrize("where", ["header", "payload"])
def test_a_corrupted_byte_is_reported_with_the_shard_name(store_folder, where):
    shard = store_folder / "shard-00001.bin"
    data = bytearray(shard.read_bytes())
    data[30 if where == "header" else -3] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"^shard-00001.bin is corrupted \(sha256 mismatch\)$"):
        KnowledgeStore.open(store_folder)
    if where == "header":
        return
    store = KnowledgeStore.open(store_folder, verify="lazy")  # opens; the first read of that shard fails
    store.sequence(0)
    first_of_shard_1 = store.manifest.shards[1].first_sequence
    with pytest.raises(InputError, match="shard-00001.bin is corrupted"):
        store.sequence(first_of_shard_1)


def test_a_truncated_or_missing_shard_is_reported(store_folder):
    shard = store_folder / "shard-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(InputError, match=rf"^shard-00000.bin is truncated: {len(data) - 10} bytes, expected {len(data)}$"):
        KnowledgeStore.open(store_folder)
    shard.unlink()
    with pytest.raises(InputError, match="shard-00000.bin is missing"):
        KnowledgeStore.open(store_folder)


def test_a_shard_from_another_store_is_reported(store_folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    _write(other, _sequences(30, seed=7), shard_positions=150, temperature=2.0)
    manifest = json.loads((store_folder / "manifest.json").read_text())
    swapped = json.loads((other / "manifest.json").read_text())["shards"][0]
    (store_folder / "shard-00000.bin").write_bytes((other / "shard-00000.bin").read_bytes())
    manifest["shards"][0].update(sha256=swapped["sha256"], bytes=swapped["bytes"])
    (store_folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="shard-00000.bin belongs to a different knowledge store"):
        KnowledgeStore.open(store_folder)


def test_a_damaged_manifest_is_reported(store_folder):
    manifest_path = store_folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["vocab_size"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="missing field 'vocab_size'"):
        KnowledgeStore.open(store_folder)
    manifest_path.write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        KnowledgeStore.open(store_folder)


def test_mismatched_tokenizer_vocab_or_teacher_is_reported_with_both_values(store_folder):
    with pytest.raises(InputError, match=r"^knowledge store was made with tokenizer sha256 ab12ab12ab12… "
                                         r"but the student's is ef56ef56ef56…$"):
        KnowledgeStore.open(store_folder, expect_tokenizer_sha256="ef56" * 16)
    with pytest.raises(InputError, match="^vocab sizes differ: teacher 1000, student 32000$"):
        KnowledgeStore.open(store_folder, expect_vocab_size=32000)
    with pytest.raises(InputError, match="teacher config sha256 cd34cd34cd34… but 0000"):
        KnowledgeStore.open(store_folder, expect_teacher_sha256="0" * 64)
    KnowledgeStore.open(store_folder, expect_vocab_size=1000, expect_tokenizer_sha256=TOKENIZER_SHA,
                        expect_teacher_sha256=TEACHER_SHA)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_writer_settings_and_bad_rows_raise_value_errors(tmp_path):
    with pytest.raises(ValueError, match="k = 10 exceeds the vocabulary size 8"):
        _writer(tmp_path / "a", vocab_size=8, k=10)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0"):
        _writer(tmp_path / "b", temperature=0)
    writer = _writer(tmp_path / "c", vocab_size=100, k=3)
    good_probs = np.array([[0.5, 0.3, 0.1]])
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 100\), got min 1 max 100"):
        writer.add(0, np.array([[1, 2, 100]]), good_probs)
    with pytest.raises(ValueError, match=r"position 0 repeats a token id: \[4, 4, 5\]"):
        writer.add(0, np.array([[4, 4, 5]]), good_probs)
    with pytest.raises(ValueError, match="summing to 1.200000 > 1"):
        writer.add(0, np.array([[1, 2, 3]]), np.array([[0.6, 0.4, 0.2]]))
    with pytest.raises(ValueError, match=r"must both have shape \(T, 3\)"):
        writer.add(0, np.array([[1, 2]]), np.array([[0.6, 0.4]]))
    with pytest.raises(ValueError, match="must be finite"):
        writer.add(0, np.array([[1, 2, 3]]), np.array([[np.nan, 0.4, 0.2]]))


# ------------------------------------------------------------------------------------------ fingerprint


def _bpe_tokenizer(vocab, merges):
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))


def test_tokenizer_fingerprint_depends_on_vocab_and_merges_only():
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}
    merges = [("a", "b"), ("ab", "c")]
    base = tokenizer_fingerprint(_bpe_tokenizer(vocab, merges))
    assert len(base) == 64
    assert tokenizer_fingerprint(_bpe_tokenizer(dict(reversed(list(vocab.items()))), merges)) == base
    assert tokenizer_fingerprint(_bpe_tokenizer({**vocab, "a": 2, "c": 0}, merges)) != base
    assert tokenizer_fingerprint(_bpe_tokenizer(vocab, [("a", "b")])) != base
    transformers = pytest.importorskip("transformers")
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=_bpe_tokenizer(vocab, merges))
    assert tokenizer_fingerprint(wrapped) == base
    with pytest.raises(ValueError, match="cannot fingerprint object"):
        tokenizer_fingerprint(object())
