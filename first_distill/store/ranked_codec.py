"""Version-2 shard payload: token ids by frequency class, probability codes by context, one deflate stream.

The decoded values are exactly the version-1 values (ids, and the integer probability codes of
``prob_quantization.py``): this is lossless coding, so the stated error bounds do not change.

Ids. A teacher's top-k ids are Zipf-like: a few hundred tokens fill most slots. Per shard, the ids occurring at
least ``min_count`` times (chosen per shard to minimise the estimated size) are ranked by frequency, and rank r is
written as a *class* byte plus ``width`` raw bits:

    r < 64:          class r, no raw bits
    r >= 64:         x = r - 64 + 4;  e = floor(log2 x);  class 64 + 2 (e - 2) + (second bit of x);
                     raw = the e - 1 low bits of x   (half-octave classes of ranks 64-65, 66-67, 68-71, 72-75, ...)
    not listed:      class 255, raw = the id itself in ``id_bits`` bits

The shard's table lists those ids in ascending order (gaps) with each one's class; within a class the ids are in
id order, so the table alone fixes every rank. Class bytes are entropy-coded (Huffman, by deflate),
rank j > 1 in 5 contexts of rank j - 1's class; raw bits are packed (``bit_fields.py``).

Probabilities. 8-bit codes: code_1 on its own, code_j (j > 1) in 16 contexts of code_(j-1) (half-octaves
of code + 1), since p_j <= p_(j-1) narrows it. 16-bit codes (and anything else): each column's low and high
bytes. All byte streams go, in a fixed order, into one raw deflate stream (strategy ``Z_RLE``: Huffman codes and
runs of one byte) with a block boundary (``Z_BLOCK``) after each part, so every part gets its own Huffman table;
the decoder knows every part's length from what it has decoded before it.

A CRC-32 of the inflated bytes and the raw bits is checked before anything is interpreted, so a damaged payload is
reported even where the shard's sha256 is not checked (``verify="size"``). Decoding is one ``zlib.decompress`` and
~40 whole-array numpy passes per shard, about 150 ns per position at k = 5 (a third of it inflating): each rank's
context grouping undone by one stable argsort of its contexts, the ids' raw bits read by one gather at running
offsets, every id found by one table lookup.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from first_distill.store.bit_fields import pack_fields, unpack_fields

CODEC = "ranked-classes-deflate/1"
DIRECT = 64  # ranks below get a class byte of their own
ESCAPE = 255  # class byte of an id that is not listed
MAX_TABLE_BITS = 24  # ids wider than this are never listed (ranks and class widths stop at 2**24)
IDENTITY_BITS = 18  # ids this wide or narrower decode through one table: 2**18 identity entries, 1 MiB at most
MIN_COUNT_CHOICES = (1, 2, 3, 4, 6, 8)
LEAD_CONTEXT_EDGES = np.array([4, 16, DIRECT, DIRECT + 16])  # contexts of class(j - 1): <4, <16, <64, <80, rest
N_LEAD_CONTEXTS = len(LEAD_CONTEXT_EDGES) + 1
N_CODE_CONTEXTS = 16


def _class_tables() -> tuple[np.ndarray, np.ndarray]:
    """(256,) first rank of each class byte and (256,) its raw width; escape and unused bytes get width 0."""
    base = np.zeros(256, dtype=np.int64)
    width = np.zeros(256, dtype=np.int64)
    base[:DIRECT] = np.arange(DIRECT)
    for lead in range(DIRECT, ESCAPE):
        t = lead - DIRECT
        e = t // 2 + 2
        if e - 1 > MAX_TABLE_BITS:  # ranks stay below 2**MAX_TABLE_BITS
            break
        base[lead] = ((2 + t % 2) << (e - 1)) - 4 + DIRECT
        width[lead] = e - 1
    return base, width


CLASS_BASE, CLASS_WIDTH = _class_tables()
CLASS_BASE_U4, CLASS_WIDTH_U1 = CLASS_BASE.astype(np.uint32), CLASS_WIDTH.astype(np.uint8)
LEAD_CONTEXT = np.searchsorted(LEAD_CONTEXT_EDGES, np.arange(256), side="right").astype(np.uint8)
CODE_CONTEXT = np.minimum(np.floor(2 * np.log2(np.arange(256) + 1.0)), N_CODE_CONTEXTS - 1).astype(np.uint8)


def rank_classes(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ranks (n,) >= 0 -> class bytes (n,) uint8, raw widths (n,) and raw values (n,) (module docstring)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    x = np.maximum(ranks - DIRECT + 4, 4)
    e = np.frexp(x.astype(np.float64))[1] - 1  # floor(log2 x), exact for x < 2**53
    lead = np.where(ranks < DIRECT, ranks, DIRECT + 2 * (e - 2) + ((x >> (e - 1)) & 1))
    width = np.where(ranks < DIRECT, 0, e - 1)
    raw = np.where(ranks < DIRECT, 0, x & ((1 << width) - 1))
    return lead.astype(np.uint8), width, raw


def encode(ids: np.ndarray, codes: np.ndarray, id_bits: int) -> tuple[bytes, bytes, dict]:
    """ids (P, k) ints < 2**id_bits and codes (P, k) uint8/uint16 -> (deflate stream, raw bit fields, params)."""
    ids = np.asarray(ids, dtype=np.int64)
    n, k = ids.shape
    min_count, rank_of = _choose_ranking(ids, id_bits)
    flat_ids = ids.T.ravel()  # rank-major: (k * P,)
    if rank_of is None:  # no table: every id escaped
        leads, width, raw = np.full(k * n, ESCAPE, dtype=np.uint8), np.full(k * n, id_bits), flat_ids
    else:  # per vocabulary id its class byte, raw width and raw value (escapes: the id in id_bits bits), then per slot
        listed = rank_of >= 0
        lead_of = np.full(len(rank_of), ESCAPE, dtype=np.uint8)
        width_of = np.full(len(rank_of), id_bits, dtype=np.int64)
        raw_of = np.arange(len(rank_of), dtype=np.int64)
        lead_of[listed], width_of[listed], raw_of[listed] = rank_classes(rank_of[listed])
        leads, width, raw = lead_of[flat_ids], width_of[flat_ids], raw_of[flat_ids]
    leads = leads.reshape(k, n)

    stream = _Parts()
    n_listed = 0
    if rank_of is not None:
        listed = np.flatnonzero(rank_of >= 0)  # ascending ids
        n_listed = len(listed)
        gaps = np.diff(listed, prepend=-1) - 1
        for plane in range((id_bits + 7) // 8):
            stream.add((gaps >> (8 * plane)) & 255)
        stream.add(rank_classes(rank_of[listed])[0])
    stream.add(leads[0])
    for j in range(1, k):
        stream.add_by_context(leads[j], _lead_context(leads[j - 1]), N_LEAD_CONTEXTS)
    _encode_codes(stream, np.asarray(codes))
    symbols, fields = stream.finish(), pack_fields(raw, width)
    params = {"codec": CODEC, "id_bits": int(id_bits), "min_count": min_count, "n_listed": n_listed,
              "prob_dtype": np.asarray(codes).dtype.str, "crc32": zlib.crc32(fields, stream.crc32)}
    return symbols, fields, params


def decode(symbols: bytes | memoryview, fields: bytes | memoryview, n: int, k: int,
           params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``encode``: ids (n, k) (uint16 for ids of <= 16 bits, else uint32/uint64) and codes (n, k) of
    ``params["prob_dtype"]``; ``ValueError`` if the payload is damaged."""
    if params.get("codec") != CODEC:
        raise ValueError(f"unknown payload codec {params.get('codec')!r} (this version reads {CODEC!r})")
    id_bits, min_count, dtype = int(params["id_bits"]), params["min_count"], np.dtype(params["prob_dtype"])
    try:
        inflated = zlib.decompress(symbols, wbits=-15)
    except zlib.error as bad:
        raise ValueError(f"payload does not inflate ({bad})") from None
    if zlib.crc32(fields, zlib.crc32(inflated)) != params["crc32"]:
        raise ValueError("payload checksum mismatch")
    parts = _Reader(np.frombuffer(inflated, dtype=np.uint8))
    id_of_rank = None
    if min_count is not None:
        n_listed = int(params["n_listed"])
        gaps = np.zeros(n_listed, dtype=np.int64)
        for plane in range((id_bits + 7) // 8):
            gaps |= parts.take(n_listed).astype(np.int64) << (8 * plane)
        listed = np.cumsum(gaps + 1) - 1  # ascending ids
        if n_listed and listed[-1] >> id_bits:
            raise ValueError("the shard's id table names an id beyond its id width")
        id_of_rank = listed[np.argsort(parts.take(n_listed), kind="stable")]  # by class, then id: rank order
    classes = np.empty((k, n), dtype=np.uint8)  # rank-major, as written: row j holds every position's rank j
    classes[0] = parts.take(n)
    for j in range(1, k):
        parts.take_by_context(np.take(LEAD_CONTEXT, classes[j - 1]), out=classes[j])
    codes = _decode_codes(parts, n, k, dtype)
    parts.check_end()
    return _position_major(_ids_of_classes(classes, fields, id_bits, id_of_rank)), codes


def _ids_of_classes(classes: np.ndarray, fields: bytes | memoryview, id_bits: int,
                    id_of_rank: np.ndarray | None) -> np.ndarray:
    """Class bytes (k, n), rank-major, and the packed raw bits of the slots whose class has them -> ids (k, n).

    A direct class (< ``DIRECT``) is its rank: one 256-entry lookup gives those ids. The other slots are looked up
    once their raw bits are read: up to ``IDENTITY_BITS`` bits in one table ``[0, 1, ..., 2**id_bits - 1,
    id_of_rank...]``, where an escape's raw bits index the identity part and a listed class's rank the part after it.
    """
    id_dtype = np.dtype(np.uint16 if id_bits <= 16 else np.uint32 if id_bits <= 32 else np.uint64)
    has_raw = np.flatnonzero(classes >= DIRECT)  # (R,) rank-major slots, in the fields' order
    raw_classes = np.take(classes, has_raw)
    raw = unpack_fields(fields, np.take(_raw_widths(id_bits), raw_classes),
                        dtype=np.uint32 if id_bits <= 25 else np.uint64)
    if id_of_rank is None:  # no table: every id escaped, its raw bits are the id
        if len(raw) != classes.size:
            raise ValueError("payload lists ranks but the shard has no id table")
        return raw.astype(id_dtype).reshape(classes.shape)
    n_listed = len(id_of_rank)
    if n_listed < DIRECT and np.any((classes >= n_listed) & (classes < DIRECT)):
        raise ValueError("payload names a rank beyond the shard's table")
    direct = np.zeros(256, dtype=id_dtype)
    direct[:min(n_listed, DIRECT)] = id_of_rank[:DIRECT]
    ids = np.take(direct, classes)
    if id_bits <= IDENTITY_BITS:
        index = np.take(_identity_first_base(id_bits), raw_classes)
        index += raw
        values = _look_up(np.concatenate([_identity(id_bits, id_dtype), id_of_rank.astype(id_dtype)]), index)
    else:
        escape = raw_classes == ESCAPE
        values = _look_up(id_of_rank.astype(id_dtype), np.where(escape, 0, np.take(CLASS_BASE, raw_classes) + raw))
        values[escape] = raw[escape]
    ids.reshape(-1)[has_raw] = values
    return ids


def _look_up(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    try:
        return np.take(table, index)
    except IndexError:
        raise ValueError("payload names a rank beyond the shard's table") from None


def _position_major(rank_major: np.ndarray) -> np.ndarray:
    """(k, n) -> (n, k), C-contiguous, column by column (numpy's transposing copy walks k-long rows: 2x slower)."""
    out = np.empty(rank_major.shape[::-1], dtype=rank_major.dtype)
    for j, row in enumerate(rank_major):
        out[:, j] = row
    return out


@functools.cache
def _raw_widths(id_bits: int) -> np.ndarray:
    """(256,) uint8 raw bits per class byte; an escape carries the id itself."""
    widths = CLASS_WIDTH_U1.copy()
    widths[ESCAPE] = id_bits
    widths.flags.writeable = False
    return widths


@functools.cache
def _identity_first_base(id_bits: int) -> np.ndarray:
    """(256,) intp: where a class's ranks start in the table ``[identity (2**id_bits,), id_of_rank]``."""
    base = CLASS_BASE.astype(np.intp) + (1 << id_bits)
    base[ESCAPE] = 0
    base.flags.writeable = False
    return base


@functools.cache
def _identity(id_bits: int, dtype: np.dtype) -> np.ndarray:
    identity = np.arange(1 << id_bits, dtype=dtype)
    identity.flags.writeable = False
    return identity


# --------------------------------------------------------------------------------------------- helpers


def _choose_ranking(ids: np.ndarray, id_bits: int) -> tuple[int | None, np.ndarray | None]:
    """The listing threshold with the smallest estimated size, and rank_of (2**id_bits,) (-1: not listed)."""
    if id_bits > MAX_TABLE_BITS or ids.size == 0:
        return None, None
    counts = np.bincount(ids.ravel(), minlength=1 << id_bits)
    by_frequency = np.lexsort((np.arange(len(counts)), -counts))  # most frequent first, ties by id
    k = ids.shape[1]
    per_rank = [np.bincount(ids[:, j], minlength=len(counts)) for j in range(k)]  # (V,) counts at rank j
    best = (ids.size * id_bits, None, None)  # no table: every id escaped
    for min_count in MIN_COUNT_CHOICES:
        n_listed = int((counts >= min_count).sum())
        if n_listed == 0:
            continue
        listed = by_frequency[:n_listed]
        lead, width, _ = rank_classes(np.arange(n_listed))
        escaped = counts.sum() - counts[listed].sum()
        bits = escaped * id_bits + (counts[listed] * width).sum()
        for at_rank in per_rank:  # each rank's class bytes, order-0
            class_counts = np.bincount(lead, weights=at_rank[listed], minlength=ESCAPE + 1)
            class_counts[ESCAPE] += at_rank.sum() - at_rank[listed].sum()
            bits += _entropy_of_counts(class_counts)
        # the table: ascending gaps (about log2(V / n_listed) + 1.5 bits each) and a class byte per listed id
        bits += n_listed * (np.log2(len(counts) / n_listed) + 1.5) + _entropy_bits(lead)
        if bits < best[0]:
            rank_of = np.full(len(counts), -1, dtype=np.int64)
            rank_of[listed] = np.arange(n_listed)
            best = (bits, min_count, rank_of)
    _, min_count, rank_of = best
    if rank_of is None:
        return None, None
    # Canonical ranks: within a class, ids in id order (the decoder rebuilds the order from the table alone).
    listed = np.flatnonzero(rank_of >= 0)
    classes = rank_classes(rank_of[listed])[0]
    rank_of[listed[np.argsort(classes, kind="stable")]] = np.arange(len(listed))
    return min_count, rank_of


def _entropy_bits(symbols: np.ndarray) -> float:
    return _entropy_of_counts(np.bincount(symbols, minlength=1))


def _entropy_of_counts(counts: np.ndarray) -> float:
    """Bits to code every counted symbol at its empirical probability."""
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / counts.sum())).sum()) if len(counts) else 0.0


def _lead_context(previous: np.ndarray) -> np.ndarray:
    return LEAD_CONTEXT[previous]


def _encode_codes(stream: "_Parts", codes: np.ndarray) -> None:
    if codes.dtype == np.uint8:
        stream.add(codes[:, 0])
        for j in range(1, codes.shape[1]):
            stream.add_by_context(codes[:, j], CODE_CONTEXT[codes[:, j - 1]], N_CODE_CONTEXTS)
        return
    planes = np.ascontiguousarray(codes.T).view(np.uint8).reshape(codes.shape[1], -1, codes.dtype.itemsize)
    for column in planes:
        for byte in range(codes.dtype.itemsize):
            stream.add(column[:, byte])


def _decode_codes(parts: "_Reader", n: int, k: int, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        codes = np.empty((k, n), dtype=np.uint8)  # rank-major, as written
        codes[0] = parts.take(n)
        for j in range(1, k):
            parts.take_by_context(np.take(CODE_CONTEXT, codes[j - 1]), out=codes[j])
        return _position_major(codes)
    planes = np.empty((k, n, dtype.itemsize), dtype=np.uint8)
    for j in range(k):
        for byte in range(dtype.itemsize):
            planes[j, :, byte] = parts.take(n)
    return np.ascontiguousarray(planes.view(dtype.newbyteorder("<")).reshape(k, n).T).astype(dtype)


class _Parts:
    """Byte parts appended to one raw deflate stream, each starting a new deflate block (its own Huffman table)."""

    def __init__(self) -> None:
        # Z_RLE: Huffman coding plus runs of one repeated byte only. Longer LZ matches cost more than they save
        # in these streams (measured: 2% larger with the default strategy, and slower).
        self._compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
        self._chunks: list[bytes] = []
        self.crc32 = 0  # of the bytes before compression (the decoder checks what it inflates)

    def add(self, values: np.ndarray) -> None:
        if len(values):
            data = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
            self.crc32 = zlib.crc32(data, self.crc32)
            self._chunks.append(self._compressor.compress(data))
            self._chunks.append(self._compressor.flush(zlib.Z_BLOCK))

    def add_by_context(self, values: np.ndarray, context: np.ndarray, n_contexts: int) -> None:
        """Values grouped by context (stable: position order within a context), one part per context."""
        order = np.argsort(context, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(context, minlength=n_contexts))])
        grouped = values[order]
        for c in range(n_contexts):
            self.add(grouped[bounds[c]:bounds[c + 1]])

    def finish(self) -> bytes:
        return b"".join(self._chunks) + self._compressor.flush(zlib.Z_FINISH)


class _Reader:
    """Consecutive parts of the inflated stream."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self._at = 0

    def take(self, count: int) -> np.ndarray:
        if self._at + count > len(self._data):
            raise ValueError(f"payload is short: needs {self._at + count} bytes, inflates to {len(self._data)}")
        part = self._data[self._at:self._at + count]
        self._at += count
        return part

    def take_by_context(self, context: np.ndarray, out: np.ndarray) -> None:
        """The next ``len(context)`` values, grouped by context as ``_Parts.add_by_context`` wrote them, into
        ``out`` in position order."""
        out[np.argsort(context, kind="stable")] = self.take(len(context))

    def check_end(self) -> None:
        if self._at != len(self._data):
            raise ValueError(f"payload inflates to {len(self._data)} bytes, {self._at} expected")
