"""Variable-width unsigned fields packed back to back into one little-endian bit string (numpy only).

Field i occupies bits ``[o_i, o_i + w_i)`` with ``o_i = w_0 + ... + w_(i-1)``; widths are 0..32 bits, so a
field touches at most two 64-bit words. Both directions are a few whole-array passes (no Python loop over
fields): packing sums each word's non-overlapping parts with ``np.add.reduceat`` (an exact OR), unpacking
reads the 4 or 8 bytes from each field's first byte as one word and shifts.
"""

from __future__ import annotations

import numpy as np

MAX_WIDTH = 32


def pack_fields(values: np.ndarray, widths: np.ndarray) -> bytes:
    """values (n,) ints with ``0 <= values[i] < 2**widths[i]``, widths (n,) in [0, 32] -> ``ceil(sum(widths) / 8)`` bytes."""
    values = np.asarray(values, dtype=np.uint64)
    widths = np.asarray(widths, dtype=np.int64)
    if len(values) != len(widths):
        raise ValueError(f"{len(values)} values but {len(widths)} widths")
    total = int(widths.sum())
    if total == 0:
        return b""
    if widths.min() < 0 or widths.max() > MAX_WIDTH:
        raise ValueError(f"field widths must lie in [0, {MAX_WIDTH}], got {widths.min()}..{widths.max()}")
    if np.any(values >> widths.astype(np.uint64)):
        raise ValueError("a value does not fit its field width")
    keep = widths > 0
    values, widths = values[keep], widths[keep]
    offsets = np.cumsum(widths) - widths  # (n,) first bit of each field
    word = offsets >> 6
    shift = (offsets & 63).astype(np.uint64)
    words = np.zeros((total + 63) // 64 + 1, dtype="<u8")
    _or_into(words, word, values << shift)
    spill = (offsets & 63) + widths > 64  # the field's high bits start the next word
    if spill.any():
        _or_into(words, word[spill] + 1, values[spill] >> (np.uint64(64) - shift[spill]))
    return words.view(np.uint8)[:(total + 7) // 8].tobytes()


def unpack_fields(buffer: bytes | memoryview | np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_fields``: the (n,) uint64 values of the given widths; ``ValueError`` if the buffer is short."""
    widths = np.asarray(widths)
    narrow = len(widths) and int(widths.max()) <= 25 and int(widths.sum(dtype=np.int64)) < 2**32
    widths = widths.astype(np.uint32 if narrow else np.int64, copy=False)  # narrow: a field fits 4 bytes
    offsets = np.cumsum(widths)
    total = int(offsets[-1]) if len(offsets) else 0
    offsets -= widths
    raw = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    if len(raw) < (total + 7) // 8:
        raise ValueError(f"bit fields need {(total + 7) // 8} bytes, the section holds {len(raw)}")
    if total == 0:
        return np.zeros(len(widths), dtype=np.uint64)
    padded = np.zeros((total + 7) // 8 + 8, dtype=np.uint8)
    padded[:(total + 7) // 8] = raw[:(total + 7) // 8]
    # The 8 (narrow: 4) bytes from each field's first byte as one little-endian word: width + shift (<= 7) fits.
    word = np.dtype("<u4" if narrow else "<u8")
    at_every_byte = np.ndarray(shape=(len(padded) - 7,), dtype=word, buffer=padded, strides=(1,))
    values = at_every_byte[offsets >> 3] >> (offsets & 7).astype(word)
    values &= (word.type(1) << widths.astype(word)) - word.type(1)
    return values.astype(np.uint64, copy=False)


def _or_into(words: np.ndarray, index: np.ndarray, parts: np.ndarray) -> None:
    """``words[index] |= parts`` for non-decreasing ``index`` whose parts share no bits within a word."""
    starts = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    words[index[starts]] |= np.add.reduceat(parts, starts)  # disjoint bits: the sum is the OR
