"""Encoding of one knowledge-store position: packed ids round-trip exactly, probabilities within the stated bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from first_distill.store.id_packing import IdPacking, bits_for_vocab
from first_distill.store.prob_quantization import SCALE_ROWS, ProbQuantization


@pytest.mark.parametrize("vocab_size, bits", [(1, 1), (2, 1), (3, 2), (256, 8), (257, 9), (32000, 15), (49152, 16),
                                              (65536, 16), (65537, 17), (128256, 17), (151936, 18), (2**32, 32)])
def test_bits_for_vocab(vocab_size, bits):
    assert bits_for_vocab(vocab_size) == bits


def test_packing_prefers_aligned_widths_only_when_they_cost_no_bytes():
    assert IdPacking.for_vocab(49152, 5) == IdPacking(k=5, bits=16)  # 16 bits: 10 bytes
    assert IdPacking.for_vocab(32000, 5) == IdPacking(k=5, bits=16)  # 15 bits would also take 10 bytes
    assert IdPacking.for_vocab(32000, 8).bits == 15  # 15 bytes instead of 16
    assert IdPacking.for_vocab(128256, 5).row_bytes == 11  # 17 bits: 85 bits -> 11 bytes, not 20 as uint32
    assert IdPacking.for_vocab(200, 5).bits == 8


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 32), k=st.integers(1, 9), n=st.integers(0, 40), data=st.data())
def test_id_packing_round_trips_exactly(bits, k, n, data):
    packing = IdPacking(k=k, bits=bits)
    ids = data.draw(arrays(np.int64, (n, k), elements=st.integers(0, 2**bits - 1)))
    rows = packing.encode(ids)
    assert rows.shape == (n, (k * bits + 7) // 8) and rows.dtype == np.uint8
    np.testing.assert_array_equal(packing.decode(rows), ids)


def test_aligned_id_values_are_a_view_of_the_rows_and_other_widths_are_refused():
    packing = IdPacking(k=5, bits=16)
    rows = packing.encode(np.arange(20).reshape(4, 5) * 3000)
    values = packing.values(rows)
    assert values.dtype == np.dtype("<u2") and values.shape == (4, 5) and np.shares_memory(values, rows)
    np.testing.assert_array_equal(values, np.arange(20).reshape(4, 5) * 3000)
    assert np.shares_memory(packing.encode(values, copy=False), values)  # the decoder's rows: no copy
    assert not np.shares_memory(packing.encode(values), values)  # the writer keeps what it encodes
    with pytest.raises(ValueError, match="17 bits are not byte-aligned"):
        IdPacking(k=5, bits=17).values(IdPacking(k=5, bits=17).encode(np.zeros((1, 5), np.int64)))


def test_id_packing_bit_layout_is_little_endian_fields():
    rows = IdPacking(k=2, bits=12).encode(np.array([[0xABC, 0x123]]))
    # id 0 in bits 0..11, id 1 in bits 12..23 of one little-endian 24-bit string: 0x123ABC
    assert rows.tolist() == [[0xBC, 0x3A, 0x12]]


@st.composite
def sorted_topk_probs(draw, k):
    n = draw(st.integers(0, 30))
    raw = draw(arrays(np.float64, (n, k + 1), elements=st.floats(0, 1)))
    mass = draw(arrays(np.float64, (n, 1), elements=st.floats(0, 1)))
    raw = raw + 1e-12
    probs = raw[:, :k] / raw.sum(axis=1, keepdims=True)  # any sub-distribution of k tokens
    probs = probs * np.where(draw(st.booleans()), mass, 1.0)
    return -np.sort(-probs, axis=1)


@settings(max_examples=200, deadline=None)
@given(k=st.integers(1, 8), bits=st.sampled_from([8, 16]), data=st.data())
def test_topk_probabilities_round_trip_within_the_stated_bound(k, bits, data):
    quantization = ProbQuantization(k=k, bits=bits)
    probs = data.draw(sorted_topk_probs(k))
    decoded = quantization.decode(quantization.encode(probs))
    assert decoded.dtype == np.float32
    bound = np.array(quantization.max_abs_error)
    assert np.all(np.abs(decoded - probs) <= bound)
    tail_error = np.abs((1 - decoded.astype(np.float64).sum(axis=1)) - (1 - probs.sum(axis=1)))
    assert np.all(tail_error <= quantization.to_dict()["max_abs_error_tail"] + 1e-12)


@pytest.mark.parametrize("selection, bits, n", [("topk", 8, 0), ("topk", 8, 71), ("topk", 16, SCALE_ROWS),
                                                 ("topk", 8, SCALE_ROWS + 1), ("sample", 8, 300)])
def test_decoding_is_code_times_scale_in_float32_for_short_and_long_inputs(selection, bits, n):
    """Short decodes multiply by a pre-tiled scale, long ones broadcast it: both are code * scale, bit for bit."""
    quantization = ProbQuantization(k=5, selection=selection, bits=bits,
                                    samples_per_position=200 if selection == "sample" else None)
    codes = np.random.default_rng(n).integers(0, 201, size=(n, 5)).astype(quantization.dtype)
    scale = np.array([float(np.float32(1 / (j * (2**bits - 1)))) for j in range(1, 6)], dtype=np.float32)
    if selection == "sample":
        scale = np.full(5, 1 / 200, dtype=np.float32)
    expected = codes.astype(np.float32) * scale
    decoded = quantization.decode(codes)
    assert decoded.dtype == np.float32 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded.view(np.uint32), expected.view(np.uint32))


def test_stated_bounds_are_attained_not_just_loose():
    quantization = ProbQuantization(k=2, bits=8)
    # Values half a step off the grid are the worst case: error = half the step of their rank.
    probs = np.array([[0.5 / 255 * 1.0 + 0.0, 0.0]])
    error = np.abs(quantization.decode(quantization.encode(probs)) - probs)[0, 0]
    assert error == pytest.approx(1 / (2 * 255), rel=1e-5)
    assert quantization.max_abs_error[0] == pytest.approx(1 / 510 + 2**-23)


def test_sample_weights_are_stored_exactly_as_counts():
    quantization = ProbQuantization(k=4, selection="sample", samples_per_position=300)
    weights = np.array([[120, 100, 80, 0], [300, 0, 0, 0]]) / 300
    assert quantization.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(quantization.encode(weights), [[120, 100, 80, 0], [300, 0, 0, 0]])
    np.testing.assert_allclose(quantization.decode(quantization.encode(weights)), weights, rtol=0, atol=2**-23)


def test_bad_quantization_settings_raise():
    with pytest.raises(ValueError, match="prob_bits must be one of"):
        ProbQuantization(k=5, bits=12)
    with pytest.raises(ValueError, match="samples_per_position must be an int"):
        ProbQuantization(k=5, selection="sample")
    with pytest.raises(ValueError, match="selection must be one of"):
        ProbQuantization(k=5, selection="nucleus")
