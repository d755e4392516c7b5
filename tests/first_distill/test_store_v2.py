"""Version-2 shards: bit fields and the ranked codec round-trip exactly; version-1 stores still open; unknown versions
and damaged payloads are reported with the shard's name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from first_distill.store import KnowledgeStore, KnowledgeStoreWriter
from first_distill.store import writer as writer_module
from first_distill.store.bit_fields import pack_fields, unpack_fields
from first_distill.store.ranked_codec import (CLASS_BASE, CLASS_WIDTH, DIRECT, _ids_of_classes, decode, encode,
                                              rank_classes)
from first_distill.store.shard import ShardFormatError, read_header
from first_eval.errors import InputError


def _zipf_topk(rng, n, k, vocab_size, exponent=1.1):
    """(n, k) distinct ids per row drawn Zipf-like from a shuffled vocabulary, and sorted uint8 codes."""
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    weights /= weights.sum()
    vocabulary = rng.permutation(vocab_size)
    ids = np.empty((n, k), dtype=np.int64)
    for row in range(n):
        ids[row] = vocabulary[rng.choice(vocab_size, size=k, replace=False, p=weights)]
    codes = np.sort(rng.integers(0, 256, size=(n, k)), axis=1)[:, ::-1].astype(np.uint8)
    return ids, codes


@settings(max_examples=60, deadline=None)
@given(widths=st.lists(st.integers(0, 32), max_size=300), seed=st.integers(0, 2**32 - 1))
def test_bit_fields_round_trip(widths, seed):
    rng = np.random.default_rng(seed)
    widths = np.asarray(widths, dtype=np.int64)
    values = np.asarray([int(rng.integers(0, 2**w)) if w else 0 for w in widths], dtype=np.uint64)
    packed = pack_fields(values, widths)
    assert len(packed) == (int(widths.sum()) + 7) // 8
    unpacked = unpack_fields(packed, widths)
    assert unpacked.dtype == np.uint64
    np.testing.assert_array_equal(unpacked, values)
    if not len(widths) or widths.max() <= 25:  # the decoder's 4-byte reads
        narrow = unpack_fields(packed, widths.astype(np.uint8), dtype=np.uint32)
        assert narrow.dtype == np.uint32
        np.testing.assert_array_equal(narrow, values)


def test_bit_fields_refuse_values_wider_than_their_field_and_short_buffers():
    with pytest.raises(ValueError, match="does not fit"):
        pack_fields(np.array([4]), np.array([2]))
    with pytest.raises(ValueError, match="need 2 bytes"):
        unpack_fields(b"\x01", np.array([9]))
    with pytest.raises(ValueError, match="up to 25 bits can be read as uint32, got 26"):
        unpack_fields(b"\x00" * 4, np.array([26]), dtype=np.uint32)


def test_rank_classes_invert_and_give_direct_ranks_no_raw_bits():
    ranks = np.arange(0, 1 << 20)
    lead, width, raw = rank_classes(ranks)
    np.testing.assert_array_equal(CLASS_BASE[lead] + raw, ranks)
    np.testing.assert_array_equal(CLASS_WIDTH[lead], width)
    assert np.all(width[:DIRECT] == 0) and np.all(width[DIRECT:] >= 1)
    assert np.all(raw < (1 << width))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 600), k=st.integers(1, 6), id_bits=st.sampled_from([3, 10, 16, 17, 24, 25]),
       code_dtype=st.sampled_from(["u1", "<u2"]), seed=st.integers(0, 2**32 - 1))
def test_ranked_codec_round_trips_exactly(n, k, id_bits, code_dtype, seed):
    rng = np.random.default_rng(seed)
    vocab_size = min(1 << id_bits, 5000)
    k = min(k, vocab_size)
    ids, codes = _zipf_topk(rng, n, k, vocab_size)
    if id_bits > 16:  # reach the top of the id range too
        ids = np.where(ids % 7 == 0, (1 << id_bits) - 1 - ids, ids)
    codes = codes.astype(code_dtype) * (257 if code_dtype == "<u2" else 1)
    symbols, fields, params = encode(ids, codes, id_bits)
    decoded_ids, decoded_codes = decode(symbols, fields, n, k, params)
    np.testing.assert_array_equal(decoded_ids, ids)
    np.testing.assert_array_equal(decoded_codes, codes)
    assert decoded_codes.dtype == codes.dtype


@pytest.mark.parametrize("id_bits", [16, 20])  # one lookup table with the identity in front; and without
def test_ids_naming_a_rank_beyond_the_table_are_refused(id_bits):
    """Past the CRC (a payload written wrong, not damaged later): a direct class or a raw rank beyond the table."""
    id_of_rank = np.array([7, 3, 9])
    for classes, fields in ((np.array([[0, 2, 5]], np.uint8), b""),  # class 5: rank 5 of 3
                            (np.array([[0, 64]], np.uint8), b"\x00")):  # class 64: ranks 64-65
        with pytest.raises(ValueError, match="rank beyond the shard's table"):
            _ids_of_classes(classes, fields, id_bits, id_of_rank)
    ids = _ids_of_classes(np.array([[2, 255], [0, 1]], np.uint8), (1234).to_bytes(4, "little"), id_bits, id_of_rank)
    np.testing.assert_array_equal(ids, [[9, 1234], [7, 3]])  # 255: an escape, the id in its raw bits


def test_ranked_codec_beats_fixed_width_ids_on_zipf_ids_and_refuses_damage():
    ids, codes = _zipf_topk(np.random.default_rng(0), 4000, 5, 49152)
    symbols, fields, params = encode(ids, codes, 16)
    assert len(symbols) + len(fields) < 0.8 * ids.size * 3  # fixed width: 2 bytes per id + 1 per code
    with pytest.raises(ValueError, match="does not inflate|payload"):
        decode(symbols[:len(symbols) // 2], fields, 4000, 5, params)
    with pytest.raises(ValueError, match="unknown payload codec"):
        decode(symbols, fields, 4000, 5, {**params, "codec": "something-else/9"})


# ------------------------------------------------------------------------------------- stores on disk


def _write(folder, sequences, **overrides):
    fields = dict(vocab_size=49152, k=5, tokenizer_sha256="ab" * 32, teacher_path="teachers/tiny",
                  teacher_config_sha256="cd" * 32, temperature=1.0, temperature_source="fixed", shard_positions=500)
    fields.update(overrides)
    writer = KnowledgeStoreWriter(folder, **fields)
    for index, (ids, probs) in enumerate(sequences):
        writer.add(index, ids, probs)
    return writer.close()


def _sequences(seed, n=20):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(0, 120))
        ids, _ = _zipf_topk(rng, length, 5, 49152)
        probs = rng.dirichlet(np.full(8, 0.3), size=length)[:, :5]
        out.append((ids, probs))
    return out


def _version_1_write_shard():
    """``write_shard`` as the writer called it before version 2 existed (no ``id_bits``: version-1 shards)."""
    original = writer_module.write_shard

    def write_version_1(folder, index, **kwargs):
        kwargs.pop("id_bits", None)
        return original(folder, index, **kwargs)

    return write_version_1


def test_version_1_and_mixed_stores_still_open_and_read_the_same(tmp_path, monkeypatch):
    sequences = _sequences(1)
    with monkeypatch.context() as patch:
        patch.setattr(writer_module, "write_shard", _version_1_write_shard())
        _write(tmp_path / "v1", sequences)
    _write(tmp_path / "v2", sequences)
    v1, v2 = KnowledgeStore.open(tmp_path / "v1"), KnowledgeStore.open(tmp_path / "v2")
    assert {read_header(tmp_path / "v1" / s.file).version for s in v1.manifest.shards} == {1}
    assert {read_header(tmp_path / "v2" / s.file).version for s in v2.manifest.shards} == {2}
    first = tmp_path / "v2" / v2.manifest.shards[0].file
    assert read_header(first).stats["n_positions"] > 0 and read_header(first, stats=False).stats is None
    assert v2.stats["bytes_per_position"] < 0.8 * v1.stats["bytes_per_position"]
    for index in range(len(sequences)):
        for a, b in zip(v1.sequence(index), v2.sequence(index)):
            np.testing.assert_array_equal(a, b)
    batch_1, batch_2 = v1.gather([3, 0, 7]), v2.gather([3, 0, 7])
    np.testing.assert_array_equal(batch_1.topk_ids, batch_2.topk_ids)
    np.testing.assert_array_equal(batch_1.topk_probs, batch_2.topk_probs)

    # A version-1 extraction killed, then resumed by this version: its complete shards stay version 1.
    mixed = tmp_path / "mixed"
    settings = dict(vocab_size=49152, k=5, tokenizer_sha256="ab" * 32, teacher_path="teachers/tiny",
                    teacher_config_sha256="cd" * 32, temperature=1.0, temperature_source="fixed", shard_positions=500)
    with monkeypatch.context() as patch:
        patch.setattr(writer_module, "write_shard", _version_1_write_shard())
        killed = KnowledgeStoreWriter(mixed, **settings)
        for index in range(len(sequences) // 2):
            killed.add(index, *sequences[index])  # never closed: the pending shard is lost
    resumed = KnowledgeStoreWriter(mixed, **settings)
    for index in range(resumed.next_sequence, len(sequences)):
        resumed.add(index, *sequences[index])
    store = KnowledgeStore.open(mixed) if resumed.close() else None
    assert {read_header(mixed / s.file).version for s in store.manifest.shards} == {1, 2}
    for index in range(len(sequences)):
        for a, b in zip(store.sequence(index), v1.sequence(index)):
            np.testing.assert_array_equal(a, b)


def test_a_shard_of_an_unknown_version_is_refused_with_a_clear_line(tmp_path):
    _write(tmp_path, _sequences(2))
    shard = tmp_path / "shard-00000.bin"
    data = bytearray(shard.read_bytes())
    data[7] = 3
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=r"^shard-00000.bin is a version-3 knowledge shard; this version of "
                                               r"first reads versions 1-2 \(upgrade first\)$"):
        read_header(shard)
    with pytest.raises(InputError, match="version-3 knowledge shard"):
        KnowledgeStore.open(tmp_path, verify="size")


def test_a_damaged_payload_unverified_is_reported_on_read_with_the_shard_name(tmp_path):
    _write(tmp_path, _sequences(3))
    shard = tmp_path / "shard-00000.bin"
    header = read_header(shard)
    start, nbytes = header.sections["symbols"]
    data = bytearray(shard.read_bytes())
    data[start + nbytes // 2:start + nbytes // 2 + 8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    store = KnowledgeStore.open(tmp_path, verify="size")
    with pytest.raises(ShardFormatError, match=r"^shard-00000.bin is corrupted"):
        store.sequence(0)
