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


def unpack_fields(buffer: bytes | memoryview | np.ndarray, widths: np.ndarray, dtype=np.uint64) -> np.ndarray:
    """Inverse of ``pack_fields``: the (n,) values of the given widths; ``ValueError`` if the buffer is short.

    ``dtype`` uint64, or uint32 when no width exceeds 25 bits (each field is then read as one 4-byte word: a
    field starts at most 7 bits into its first byte).
    """
    widths = np.asarray(widths)
    word = np.dtype(dtype).newbyteorder("<")
    if word not in (np.dtype("<u4"), np.dtype("<u8")):
        raise ValueError(f"dtype must be uint32 or uint64, got {np.dtype(dtype)}")
    starts = np.zeros(len(widths) + 1, dtype=np.intp)
    np.cumsum(widths, dtype=np.intp, out=starts[1:])
    total = int(starts[-1])
    nbytes = (total + 7) // 8
    raw = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    if len(raw) < nbytes:
        raise ValueError(f"bit fields need {nbytes} bytes, the section holds {len(raw)}")
    if total == 0:
        return np.zeros(len(widths), dtype=word)
    if int(widths.max()) > 8 * word.itemsize - 7:
        raise ValueError(f"fields of up to {8 * word.itemsize - 7} bits can be read as {np.dtype(dtype)}, "
                         f"got {int(widths.max())}")
    starts = starts[:-1]
    shifts = starts.astype(word)
    shifts &= word.type(7)  # each field's first bit within its first byte
    starts >>= 3  # now its first byte
    padded = np.zeros(nbytes + word.itemsize, dtype=np.uint8)
    padded[:nbytes] = raw[:nbytes]
    # The word from each byte on, as a contiguous array (a field's first byte indexes it directly).
    at_every_byte = np.ascontiguousarray(np.ndarray(shape=(nbytes + 1,), dtype=word, buffer=padded, strides=(1,)))
    values = np.take(at_every_byte, starts)
    values >>= shifts
    mask = np.left_shift(word.type(1), widths, dtype=word, casting="unsafe")  # widths >= 0
    mask -= word.type(1)
    values &= mask
    return values


def _or_into(words: np.ndarray, index: np.ndarray, parts: np.ndarray) -> None:
    """``words[index] |= parts`` for non-decreasing ``index`` whose parts share no bits within a word."""
    starts = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    words[index[starts]] |= np.add.reduceat(parts, starts)  # disjoint bits: the sum is the OR
