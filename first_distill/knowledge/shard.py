"""One shard file of a knowledge store: its byte layout, its atomic writing, and a memory-mapped view of it.

Layout of ``shard-NNNNN.bin`` (all integers little-endian; every section starts on a 64-byte boundary so
numpy views of it are aligned)::

    magic           8 bytes   b"FIRSTKN\\x01"
    header_length   uint64
    header          JSON (UTF-8): n_sequences, n_positions, first_sequence, k, id_row_bytes, prob_dtype,
                    identity_sha256, sections {name: [start, nbytes]}, stats; and timed_shard_positions
                    once the writer's clock has fixed the shard size (writer.py), absent before
    offsets         (n_sequences + 1,) uint64   positions of sequence i are rows offsets[i]:offsets[i+1]
    ids             (n_positions, id_row_bytes) uint8   packed top-k ids (see id_packing.py)
    probs           (n_positions, k) uint8/uint16       quantised probabilities (see prob_quantization.py)

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from first_distill.knowledge.manifest import ShardEntry, fsync_folder

MAGIC = b"FIRSTKN\x01"
ALIGN = 64
SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.bin$")


class ShardFormatError(ValueError):
    """A shard file is not what its header or the manifest says (truncated, not a shard, ...)."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.bin"


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
    stats: dict
    timed_shard_positions: int | None = None  # the size limit the writer's clock chose (writer.py), once it has

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
                timed_shard_positions: int | None = None) -> ShardEntry:
    """Write ``shard-<index>.bin`` atomically (temporary name, fsync, rename) and return its manifest entry.

    Sections may be empty (a shard of sequences without positions). On any error the temporary file is removed.
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
    header_bytes, sections = _layout(fields, len(lengths), n_positions, id_rows.shape[1],
                                     prob_codes.shape[1] * prob_codes.dtype.itemsize)
    payload = {"offsets": offsets, "ids": np.ascontiguousarray(id_rows), "probs": np.ascontiguousarray(prob_codes)}

    name = shard_name(index)
    final = folder / name
    temporary = folder / f".{name}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    written = 0
    try:
        with open(temporary, "wb") as handle:
            def put(chunk: bytes | memoryview) -> None:
                nonlocal written
                handle.write(chunk)
                digest.update(chunk)
                written += len(chunk)

            put(MAGIC)
            put(len(header_bytes).to_bytes(8, "little"))
            put(header_bytes)
            for section, (start, nbytes) in sections.items():
                put(bytes(start - written))
                put(memoryview(payload[section].reshape(-1).view(np.uint8)))  # flat bytes; also for 0 rows
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except Exception:  # an error of ours (a SIGKILL leaves the file: the next writer removes it)
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(folder)
    return ShardEntry(file=name, sha256=digest.hexdigest(), bytes=written, n_sequences=len(lengths),
                      n_positions=n_positions, first_sequence=first_sequence)


def read_header(path: Path) -> ShardHeader:
    """Parse a shard's header; ``ShardFormatError`` if the file is not a whole shard."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(len(MAGIC) + 8)
        if len(head) < len(MAGIC) + 8:
            raise ShardFormatError(f"{path.name} is truncated: {size} bytes, too short for a header")
        if head[:len(MAGIC)] != MAGIC:
            raise ShardFormatError(f"{path.name} is not a knowledge shard (bad magic bytes {head[:len(MAGIC)]!r})")
        header_length = int.from_bytes(head[len(MAGIC):], "little")
        if len(MAGIC) + 8 + header_length > size:
            raise ShardFormatError(f"{path.name} is truncated: {size} bytes, header alone needs "
                                   f"{len(MAGIC) + 8 + header_length}")
        raw = handle.read(header_length)
    try:
        data = json.loads(raw.decode("utf-8"))
        header = ShardHeader(n_sequences=int(data["n_sequences"]), n_positions=int(data["n_positions"]),
                             first_sequence=int(data["first_sequence"]), k=int(data["k"]),
                             id_row_bytes=int(data["id_row_bytes"]), prob_dtype=str(data["prob_dtype"]),
                             identity_sha256=str(data["identity_sha256"]),
                             sections={k: (int(v[0]), int(v[1])) for k, v in data["sections"].items()},
                             stats=dict(data["stats"]),
                             timed_shard_positions=(None if data.get("timed_shard_positions") is None
                                                    else int(data["timed_shard_positions"])))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as bad:
        raise ShardFormatError(f"{path.name} has a corrupted header ({type(bad).__name__}: {bad})") from None
    if size < header.end:
        raise ShardFormatError(f"{path.name} is truncated: {size} bytes, expected {header.end}")
    return header


class MappedShard:
    """Read-only numpy views of one shard, backed by ``mmap`` (pages are read on first touch)."""

    def __init__(self, path: Path, header: ShardHeader):
        self.path = path
        self.header = header
        with open(path, "rb") as handle:
            self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        buffer = self._mmap

        def view(section: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            start, nbytes = header.sections[section]
            count = nbytes // np.dtype(dtype).itemsize
            return np.frombuffer(buffer, dtype=dtype, count=count, offset=start).reshape(shape)

        self.offsets = view("offsets", "<u8", (header.n_sequences + 1,)).astype(np.int64)
        self.id_rows = view("ids", "u1", (header.n_positions, header.id_row_bytes))
        self.prob_codes = view("probs", header.prob_dtype, (header.n_positions, header.k))
        if int(self.offsets[-1]) != header.n_positions or np.any(np.diff(self.offsets) < 0):
            raise ShardFormatError(f"{path.name} is corrupted (sequence offsets do not add up to {header.n_positions} positions)")

    def sha256(self) -> str:
        return hashlib.sha256(self._mmap).hexdigest()
