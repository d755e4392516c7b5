"""Token ids packed into the bits the vocabulary needs: k ids per position in one little-endian bit row.

A vocabulary of V tokens needs ``b = bit_length(V - 1)`` bits per id (16 for 49152, 17 for 128256). The k ids of
a position are laid out as one little-endian bit string — id j occupies bits ``[j b, (j + 1) b)`` — padded to
whole bytes, so a position takes ``row_bytes = ceil(k b / 8)`` bytes and every row can be sliced directly
out of a memory-mapped file.

When rounding b up to 8, 16 or 32 bits costs no extra bytes per row (k = 5: 15 bits and 16 bits both take
10 bytes), the wider width is used: the row is then a plain little-endian uint8/uint16/uint32 array and
decoding is a zero-copy view plus one cast. Otherwise rows are zero-padded to whole 64-bit words and each id
is cut out with a shift and a mask (two words when it straddles a word boundary): about 3k numpy passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

_FAST_WIDTHS = {8: "<u1", 16: "<u2", 32: "<u4"}


def bits_for_vocab(vocab_size: int) -> int:
    """Bits needed to write any id in ``[0, vocab_size)`` (at least 1)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if vocab_size > 2**32:
        raise ValueError(f"vocab_size must be <= 2**32, got {vocab_size}")
    return max(1, (vocab_size - 1).bit_length())


@dataclass(frozen=True)
class IdPacking:
    """How k ids of a V-token vocabulary are packed per position: ``bits`` per id, ``row_bytes`` per row."""

    k: int
    bits: int

    @classmethod
    def for_vocab(cls, vocab_size: int, k: int) -> "IdPacking":
        """The smallest row; among equally small rows, the fastest (8/16/32-bit aligned) width."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bits = bits_for_vocab(vocab_size)
        for width in sorted(_FAST_WIDTHS):
            if width >= bits and _row_bytes(k, width) == _row_bytes(k, bits):
                return cls(k=k, bits=width)
        return cls(k=k, bits=bits)

    @property
    def row_bytes(self) -> int:
        return _row_bytes(self.k, self.bits)

    @property
    def _words(self) -> int:
        """64-bit words per row once padded."""
        return (self.row_bytes + 7) // 8

    @cached_property
    def aligned(self) -> bool:
        """True when a row is a plain little-endian uint8/16/32 array (zero-copy decode)."""
        return self.bits in _FAST_WIDTHS

    def to_dict(self) -> dict:
        return {"bits": self.bits, "row_bytes": self.row_bytes, "layout": "little-endian bit rows, id j at bits [j*bits, (j+1)*bits)"}

    def encode(self, ids: np.ndarray, copy: bool = True) -> np.ndarray:
        """ids (n, k) ints in [0, 2**bits) -> rows (n, row_bytes) uint8; ``copy=False``: a view of ``ids`` where
        they already are the rows' values (aligned packing, C-contiguous, its dtype)."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.k:
            raise ValueError(f"ids must have shape (n, {self.k}), got {ids.shape}")
        if self.aligned:
            values = ids.astype(_FAST_WIDTHS[self.bits], order="C", copy=copy)
            return values.view(np.uint8).reshape(len(ids), self.row_bytes)
        words = np.zeros((len(ids), self._words), dtype="<u8")
        values = ids.astype(np.uint64)
        for j in range(self.k):
            word, shift = divmod(j * self.bits, 64)
            words[:, word] |= values[:, j] << np.uint64(shift)
            if shift + self.bits > 64:  # the id straddles two words: its high bits start the next one
                words[:, word + 1] |= values[:, j] >> np.uint64(64 - shift)
        return np.ascontiguousarray(words.view(np.uint8)[:, :self.row_bytes])

    def values(self, rows: np.ndarray) -> np.ndarray:
        """Aligned packings: rows (n, row_bytes) uint8 -> ids (n, k) little-endian uint8/16/32, a view when the rows
        are C-contiguous (``ValueError`` for other packings)."""
        if not self.aligned:
            raise ValueError(f"ids of {self.bits} bits are not byte-aligned: decode the rows instead")
        return np.ascontiguousarray(rows).view(_FAST_WIDTHS[self.bits])

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """rows (n, row_bytes) uint8 -> ids (n, k) int64."""
        n = rows.shape[0]
        if self.aligned:
            return self.values(rows).astype(np.int64)
        padded = np.zeros((n, 8 * self._words), dtype=np.uint8)
        padded[:, :self.row_bytes] = rows
        words = padded.view("<u8")  # (n, words): the bit row as little-endian 64-bit words
        ids = np.empty((n, self.k), dtype=np.uint64)
        mask = np.uint64((1 << self.bits) - 1)
        for j in range(self.k):
            word, shift = divmod(j * self.bits, 64)
            value = words[:, word] >> np.uint64(shift)
            if shift + self.bits > 64:
                value |= words[:, word + 1] << np.uint64(64 - shift)
            ids[:, j] = value & mask
        return ids.astype(np.int64)


def _row_bytes(k: int, bits: int) -> int:
    return (k * bits + 7) // 8
