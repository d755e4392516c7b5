"""One shard file of a knowledge store: its byte layout, its atomic writing, and a memory-mapped view of it.

Layout of ``shard-NNNNN.bin``, or ``shard-rankRRR-NNNNN.bin`` (one series per process when several wrote the store,
ranks.py) (all integers little-endian; every section starts on a 64-byte boundary so numpy views of it are aligned)::

    magic           8 bytes   b"FIRSTKN\\x01"
    header_length   uint64
    header          JSON (UTF-8): n_sequences, n_positions, first_sequence, k, id_row_bytes, prob_dtype,
                    identity_sha256, sections {name: [start, nbytes]}, stats; and timed_shard_positions
                    once the writer's clock has fixed the shard size (writer.py), absent before
    offsets         (n_sequences + 1,) uint64   positions of sequence i are rows offsets[i]:offsets[i+1]
    ids             (n_positions, id_row_bytes) uint8   packed top-k ids (see id_packing.py)
    probs           (n_positions, k) uint8/uint16       quantised probabilities (see prob_quantization.py)

Version 2 (``b"FIRSTKN\\x02"``, what the writer writes now; version 1 above still opens) holds the same values
entropy-coded (``ranked_codec.py``, lossless: same ids, same probability codes and error bounds), about 10 bytes
per position instead of 15 at k = 5 on SmolLM2's vocabulary::

    magic           8 bytes   b"FIRSTKN\\x02"
    header_length   uint64
    header          JSON (UTF-8): format 2, the fields above except stats, the payload codec's parameters
                    (``codec``), and sections {name: [start, nbytes]} counted from the end of the header
    stats           the header's stats, deflated JSON
    lengths         (n_sequences,) uint32 positions per sequence, deflated
    symbols         ids' classes, the id table and probability codes: one raw deflate stream
    fields          the ids' raw bits, packed (bit_fields.py)

A version-2 shard is decoded whole on its first read and kept decoded (the version-1 arrays: 15 bytes per
position at k = 5, what the page cache held of a version-1 shard).

A shard is written under a temporary name and renamed into place only when complete and fsynced, so any
file called ``shard-NNNNN.bin`` was complete when written; truncation or bit rot afterwards is caught by the
size and sha256 recorded in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from first_distill.store import ranked_codec
from first_distill.store.id_packing import IdPacking
from first_distill.store.manifest import ShardEntry, fsync_folder

MAGIC = b"FIRSTKN\x01"
MAGIC_V2 = b"FIRSTKN\x02"
FORMATS = {MAGIC: 1, MAGIC_V2: 2}
ALIGN = 64
SHARD_PATTERN = re.compile(r"^shard-(?:rank\d{3,}-)?(\d{5,})\.bin$")


class ShardFormatError(ValueError):
    """A shard file is not what its header or the manifest says (truncated, not a shard, ...)."""


def shard_prefix(rank: int | None = None) -> str:
    """The file prefix of a writer's shard series: ``shard`` (one writer), ``shard-rank003`` (rank 3 of several)."""
    return "shard" if rank is None else f"shard-rank{rank:03d}"


def shard_name(index: int, prefix: str = "shard") -> str:
    return f"{prefix}-{index:05d}.bin"


def _align(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class ShardHeader:
    n_sequences: int
    n_positions: int
    first_sequence: int
    k: int
    id_row_bytes: int
    prob_dtype: str
    identity_sha256: str
    sections: dict  # name -> (start, nbytes)
    stats: dict | None  # None: not read (``read_header(..., stats=False)``)
    timed_shard_positions: int | None = None  # the size limit the writer's clock chose (writer.py), once it has
    version: int = 1
    codec: dict | None = None  # version 2: the payload codec's parameters (ranked_codec.py)

    @property
    def end(self) -> int:
        return max(start + nbytes for start, nbytes in self.sections.values())

    def to_dict(self) -> dict:
        return {"n_sequences": self.n_sequences, "n_positions": self.n_positions, "first_sequence": self.first_sequence,
                "k": self.k, "id_row_bytes": self.id_row_bytes, "prob_dtype": self.prob_dtype,
                "identity_sha256": self.identity_sha256, "sections": {k: list(v) for k, v in self.sections.items()},
                "stats": self.stats, "timed_shard_positions": self.timed_shard_positions}


def _layout(header_fields: dict, n_sequences: int, n_positions: int, id_row_bytes: int,
            prob_row_bytes: int) -> tuple[bytes, dict]:
    """Header bytes (space-padded JSON) and the section table it describes.

    The sections start after the header, whose length depends on the section numbers: reserve room for the
    numbers first (they are at most 20 digits each), then pad the JSON to the reserved length.
    """
    sizes = {"offsets": 8 * (n_sequences + 1), "ids": n_positions * id_row_bytes, "probs": n_positions * prob_row_bytes}
    placeholder = {name: [10**20, 10**20] for name in sizes}
    reserved = len(json.dumps({**header_fields, "sections": placeholder}, separators=(",", ":")).encode("utf-8"))
    start = _align(len(MAGIC) + 8 + reserved)
    sections = {}
    for name, nbytes in sizes.items():
        sections[name] = (start, nbytes)
        start = _align(start + nbytes)
    encoded = json.dumps({**header_fields, "sections": {k: list(v) for k, v in sections.items()}},
                         separators=(",", ":")).encode("utf-8")
    return encoded.ljust(reserved, b" "), sections


def write_shard(folder: Path, index: int, *, first_sequence: int, lengths: np.ndarray, id_rows: np.ndarray,
                prob_codes: np.ndarray, identity_sha256: str, stats: dict,
                timed_shard_positions: int | None = None, prefix: str = "shard",
                id_bits: int | None = None) -> ShardEntry:
    """Write ``<prefix>-<index>.bin`` atomically (temporary name, fsync, rename) and return its manifest entry.

    ``id_rows`` are ``IdPacking`` rows; with ``id_bits`` (that packing's width) the shard is written in version 2
    (entropy-coded), without in version 1 (the rows as they are). Sections may be empty (a shard of sequences
    without positions). On any error the temporary file is removed.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    n_positions = int(offsets[-1])
    if id_rows.shape[0] != n_positions or prob_codes.shape[0] != n_positions:
        raise ValueError(f"shard rows disagree: {n_positions} positions from lengths, "
                         f"{id_rows.shape[0]} id rows, {prob_codes.shape[0]} probability rows")
    fields = {"n_sequences": len(lengths), "n_positions": n_positions, "first_sequence": first_sequence,
              "k": prob_codes.shape[1], "id_row_bytes": id_rows.shape[1], "prob_dtype": prob_codes.dtype.str,
              "identity_sha256": identity_sha256, "stats": stats}
    if timed_shard_positions is not None:  # absent otherwise: shards of a size-only writer keep their bytes
        fields["timed_shard_positions"] = int(timed_shard_positions)
    if id_bits is None:
        header_bytes, sections = _layout(fields, len(lengths), n_positions, id_rows.shape[1],
                                         prob_codes.shape[1] * prob_codes.dtype.itemsize)
        payload = {"offsets": offsets, "ids": np.ascontiguousarray(id_rows), "probs": np.ascontiguousarray(prob_codes)}
        chunks = [MAGIC, len(header_bytes).to_bytes(8, "little"), header_bytes]
        written = len(MAGIC) + 8 + len(header_bytes)
        for section, (start, nbytes) in sections.items():
            chunks += [bytes(start - written), memoryview(payload[section].reshape(-1).view(np.uint8))]  # also 0 rows
            written = start + nbytes
    else:
        chunks = _version_2(fields, lengths, id_rows, prob_codes, id_bits)

    name = shard_name(index, prefix)
    final = folder / name
    temporary = folder / f".{name}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    written = 0
    try:
        with open(temporary, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                written += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except Exception:  # an error of ours (a SIGKILL leaves the file: the next writer removes it)
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(folder)
    return ShardEntry(file=name, sha256=digest.hexdigest(), bytes=written, n_sequences=len(lengths),
                      n_positions=n_positions, first_sequence=first_sequence)


def _version_2(fields: dict, lengths: np.ndarray, id_rows: np.ndarray, prob_codes: np.ndarray,
               id_bits: int) -> list[bytes]:
    """The chunks of a version-2 shard (module docstring): header, then its sections back to back."""
    packing = IdPacking(k=prob_codes.shape[1], bits=id_bits)
    if packing.row_bytes != id_rows.shape[1]:
        raise ValueError(f"id rows of {id_rows.shape[1]} bytes are not {prob_codes.shape[1]} ids of {id_bits} bits")
    symbols, bit_fields, codec = ranked_codec.encode(packing.decode(id_rows), prob_codes, id_bits)
    stats = json.dumps(_dense_counts(fields.pop("stats")), separators=(",", ":")).encode("utf-8")
    payload = {"stats": _deflate(stats), "lengths": _deflate(lengths.astype("<u4").tobytes()),
               "symbols": symbols, "fields": bit_fields}
    sections, start = {}, 0
    for name, data in payload.items():
        sections[name] = [start, len(data)]
        start += len(data)
    header = json.dumps({"format": 2, **fields, "codec": codec, "sections": sections},
                        separators=(",", ":")).encode("utf-8")
    return [MAGIC_V2, len(header).to_bytes(8, "little"), header, *payload.values()]


def _dense_counts(value):
    """Stats with every {"<int>": count > 0} dict (a histogram) as {"dense_from": i0, "counts": [...]}: ~3x smaller
    deflated. ``_sparse_counts`` inverts it (keys ascending, as ``MassStats.to_dict`` writes them)."""
    if isinstance(value, dict):
        keys = list(value)
        if keys and all(isinstance(k, str) and k.lstrip("-").isdigit() and str(int(k)) == k for k in keys) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values()):
            first = min(int(k) for k in keys)
            counts = [0] * (max(int(k) for k in keys) - first + 1)
            for key, count in value.items():
                counts[int(key) - first] = count
            return {"dense_from": first, "counts": counts}
        return {key: _dense_counts(item) for key, item in value.items()}
    return value


def _sparse_counts(value):
    if isinstance(value, dict):
        if set(value) == {"dense_from", "counts"}:
            return {str(value["dense_from"] + i): count for i, count in enumerate(value["counts"]) if count}
        return {key: _sparse_counts(item) for key, item in value.items()}
    return value


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return compressor.compress(data) + compressor.flush()


def read_header(path: Path, stats: bool = True) -> ShardHeader:
    """Parse a shard's header; ``ShardFormatError`` if the file is not a whole shard of a version this code reads.

    ``stats=False`` leaves a version-2 shard's stats unread (``header.stats`` None): readers never need them.
    """
    size = path.stat().st_size
    if size < len(MAGIC) + 8:
        raise ShardFormatError(f"{path.name} is truncated: {size} bytes, too short for a header")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        return _parse_header(mapped, path.name, stats)


def _parse_header(data: mmap.mmap, name: str, stats: bool) -> ShardHeader:
    """The header of the shard file ``name`` whose bytes are ``data`` (at least magic and header length)."""
    size = len(data)
    magic = data[:len(MAGIC)]
    if magic not in FORMATS:
        if magic[:-1] == MAGIC[:-1]:
            raise ShardFormatError(f"{name} is a version-{magic[-1]} knowledge shard; this version of first "
                                   f"reads versions {min(FORMATS.values())}-{max(FORMATS.values())} (upgrade first)")
        raise ShardFormatError(f"{name} is not a knowledge shard (bad magic bytes {magic!r})")
    body = len(MAGIC) + 8
    header_length = int.from_bytes(data[len(MAGIC):body], "little")
    if body + header_length > size:
        raise ShardFormatError(f"{name} is truncated: {size} bytes, header alone needs {body + header_length}")
    version = FORMATS[magic]
    try:
        fields = json.loads(data[body:body + header_length].decode("utf-8"))
        sections = {k: (int(v[0]), int(v[1])) for k, v in fields["sections"].items()}
        if version == 2:  # sections count from the end of the header; the stats are one of them
            sections = {k: (start + body + header_length, n) for k, (start, n) in sections.items()}
            fields["stats"] = None
            if stats:
                start, nbytes = sections["stats"]
                fields["stats"] = _sparse_counts(json.loads(zlib.decompress(data[start:start + nbytes], wbits=-15)
                                                            .decode("utf-8")))
        header = ShardHeader(n_sequences=int(fields["n_sequences"]), n_positions=int(fields["n_positions"]),
                             first_sequence=int(fields["first_sequence"]), k=int(fields["k"]),
                             id_row_bytes=int(fields["id_row_bytes"]), prob_dtype=str(fields["prob_dtype"]),
                             identity_sha256=str(fields["identity_sha256"]), sections=sections,
                             stats=None if fields["stats"] is None else dict(fields["stats"]),
                             timed_shard_positions=(None if fields.get("timed_shard_positions") is None
                                                    else int(fields["timed_shard_positions"])),
                             version=version, codec=dict(fields["codec"]) if version == 2 else None)
    except (UnicodeDecodeError, json.JSONDecodeError, zlib.error, KeyError, TypeError, ValueError,
            IndexError) as bad:
        raise ShardFormatError(f"{name} has a corrupted header ({type(bad).__name__}: {bad})") from None
    if size < header.end:
        raise ShardFormatError(f"{name} is truncated: {size} bytes, expected {header.end}")
    return header


class MappedShard:
    """Read-only arrays of one shard: ``offsets`` (n_sequences + 1,), ``id_rows`` (n_positions, id_row_bytes) uint8
    (``IdPacking`` rows) and ``prob_codes`` (n_positions, k). Version 1: views of an ``mmap`` (pages are read on
    first touch). Version 2: decoded whole on the first use of ``arrays``, ``id_rows`` or ``prob_codes``, then kept."""

    def __init__(self, path: Path, expect_sha256: str | None = None):
        """Map ``path`` and parse its header (``ShardFormatError`` if it is not a whole shard); with
        ``expect_sha256``, the file's bytes are checked against it before anything in them is parsed."""
        self.path = path
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < len(MAGIC) + 8:
                raise ShardFormatError(f"{path.name} is truncated: {size} bytes, too short for a header")
            self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if expect_sha256 is not None and self.sha256() != expect_sha256:
            raise ShardFormatError(f"{path.name} is corrupted (sha256 mismatch)")
        self.header = header = _parse_header(self._mmap, path.name, stats=False)
        self._decoded: tuple[np.ndarray, np.ndarray] | None = None
        if header.version == 1:
            self.offsets = self._view("offsets", "<u8", (header.n_sequences + 1,)).astype(np.int64)
            self._decoded = (self._view("ids", "u1", (header.n_positions, header.id_row_bytes)),
                             self._view("probs", header.prob_dtype, (header.n_positions, header.k)))
        else:
            try:
                lengths = np.frombuffer(zlib.decompress(self._section("lengths"), wbits=-15), dtype="<u4")
            except zlib.error as bad:
                raise ShardFormatError(f"{path.name} is corrupted (sequence lengths: {bad})") from None
            if len(lengths) != header.n_sequences:
                raise ShardFormatError(f"{path.name} is corrupted ({len(lengths)} sequence lengths, "
                                       f"{header.n_sequences} sequences)")
            self.offsets = np.zeros(header.n_sequences + 1, dtype=np.int64)
            np.cumsum(lengths, dtype=np.int64, out=self.offsets[1:])  # of uint32 lengths: never decreasing
        if int(self.offsets[-1]) != header.n_positions or (header.version == 1 and np.any(np.diff(self.offsets) < 0)):
            raise ShardFormatError(f"{path.name} is corrupted (sequence offsets do not add up to {header.n_positions} positions)")

    @property
    def id_rows(self) -> np.ndarray:
        return self.arrays()[0]

    @property
    def prob_codes(self) -> np.ndarray:
        return self.arrays()[1]

    def sha256(self) -> str:
        return hashlib.sha256(self._mmap).hexdigest()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(id_rows, prob_codes); a version-2 shard is decoded on the first call."""
        if self._decoded is None:
            header = self.header
            try:
                ids, codes = ranked_codec.decode(self._section("symbols"), self._section("fields"),
                                                 header.n_positions, header.k, header.codec)
                rows = IdPacking(k=header.k, bits=int(header.codec["id_bits"])).encode(ids, copy=False)
            except (ValueError, KeyError, TypeError) as bad:
                raise ShardFormatError(f"{self.path.name} is corrupted ({bad})") from None
            if rows.shape[1] != header.id_row_bytes or codes.dtype.str != np.dtype(header.prob_dtype).str:
                raise ShardFormatError(f"{self.path.name} is corrupted (its payload decodes to other shapes than its header's)")
            self._decoded = (rows, codes)
        return self._decoded

    def _view(self, section: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        start, nbytes = self.header.sections[section]
        count = nbytes // np.dtype(dtype).itemsize
        return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=start).reshape(shape)

    def _section(self, name: str) -> memoryview:
        start, nbytes = self.header.sections[name]
        return memoryview(self._mmap)[start:start + nbytes]
