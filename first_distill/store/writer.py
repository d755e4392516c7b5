"""Writing a knowledge store: sequences in order, shards renamed into place when complete, manifest last.

Usage (the extraction loop; a killed run is continued by running the same code again)::

    start = resume_from(folder)                       # 0 for a new folder
    writer = KnowledgeStoreWriter(folder, vocab_size=49152, k=5, tokenizer_sha256=..., teacher_path=...,
                                  teacher_config_sha256=..., temperature=1.31, temperature_source=...)
    for index in range(start, n_sequences):
        writer.add(index, topk_ids, topk_probs)       # (T, k) each: one row per completion position
        writer.close_shard_if_due()                   # with shard_seconds: bounds what a kill loses
    manifest = writer.close()

Several writers, one store (extraction under ``accelerate launch``): writer r takes consecutive sequences from
``first_sequence`` on and names its shards ``shard-rankRRR-NNNNN.bin`` (``shard_prefix``); each ends with
``finish()`` (its last shard, no manifest) and one of them, once every part is finished, calls
``write_manifest(parts)``: the shards of all parts, in sequence order, and which rank wrote which. Each writer
resumes, cleans up and fixes its clock-chosen shard size (below) on its own series alone.

Crash safety: the pending sequences of a shard live in memory until ``shard_positions`` positions are
buffered, then the shard is written to a temporary name, fsynced and renamed. A kill loses at most the
unfinished shard; temporary files are ignored (and removed by the next writer); ``manifest.json`` appears
only in ``close()``, so a folder with a manifest is always complete. A new writer on a folder that already
holds complete shards adopts them, after checking they were written with the same identity (teacher,
tokenizer, k, temperature, encoding: the ``StoreIdentity`` hash in every shard header).

Shards closed by time (``shard_seconds``): a size limit alone can make a kill expensive (the default 4.2 M
positions take over an hour of a CPU teacher). So the writer also watches a clock, but only once: the first
time ``close_shard_if_due()`` (called between batches of ``add``) finds the pending shard open for
``shard_seconds`` with a position in it, the shard is closed there and its position count P becomes the size
limit from then on (``min(shard_positions, P)``), recorded as ``timed_shard_positions`` in that shard's header
and every later one. A resumed writer takes P from its last complete shard and never consults the clock again.

Why once: byte-identical resumes. Were every shard closed by the clock, a resumed run would cut its shards
where its own clock said, not where the killed run would have. With P fixed, shard boundaries are a pure
function of the sequence lengths: a run killed after its first timed shard and resumed (on any machine, at any
speed) writes exactly the shard files and manifest the uninterrupted run would have written. A kill costs the
open shard, about ``shard_seconds`` of work while the rate stays steady (P is a count of positions, so a
slower stretch of data makes longer shards). A kill before the clock fires leaves P unchosen and the resumed
run chooses its own, as two independent runs may: their shard files and the manifest's ``shards`` list and
``bytes_per_position`` then differ, while every decoded sequence (``KnowledgeStore.sequence``), the identity,
``n_sequences``, ``n_positions`` and the mass statistics are equal. The clock is ``time.monotonic``; with
``shard_seconds=None`` (the default here) shards close by size alone and carry no ``timed_shard_positions``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Sequence

import numpy as np

from first_distill.store.fingerprint import file_sha256
from first_distill.store.id_packing import IdPacking
from first_distill.store.manifest import (
    MANIFEST_NAME, Manifest, RankEntry, ShardEntry, StoreIdentity, write_json_atomically)
from first_distill.store.prob_quantization import ProbQuantization
from first_distill.store.shard import ShardFormatError, read_header, shard_name, write_shard
from first_distill.store.stats import MassStats
from first_eval.errors import InputError

DEFAULT_SHARD_POSITIONS = 1 << 22  # ~4.2M positions, ~63 MB at 15 bytes per position
_SUM_TOLERANCE = 1e-3  # top-k probabilities may sum to a hair over 1 (float32 softmax)


def _complete_shards(folder: Path, prefix: str = "shard", first_sequence: int = 0) -> list[tuple[Path, object]]:
    """Consecutive complete shards <prefix>-00000, <prefix>-00001, ... holding sequences from ``first_sequence``
    on, with their headers (stops at the first gap)."""
    found = []
    index = 0
    while (path := folder / shard_name(index, prefix)).is_file():
        try:
            header = read_header(path)
        except ShardFormatError:
            break
        expected_first = found[-1][1].first_sequence + found[-1][1].n_sequences if found else first_sequence
        if header.first_sequence != expected_first:
            break
        found.append((path, header))
        index += 1
    return found


def resume_from(folder: str | Path, first_sequence: int = 0, shard_prefix: str = "shard") -> int:
    """Index of the first sequence not yet safely written to ``folder`` (0 for an empty or missing folder).

    Complete store (manifest present): its ``n_sequences``. Otherwise the sequences of the consecutive
    complete shards; temporary files and the unfinished shard do not count. ``first_sequence``,
    ``shard_prefix``: one writer's series of a store written by several (module docstring); it resumes at
    ``first_sequence`` when none of its shards is complete.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            return int(json.loads(manifest_path.read_text(encoding="utf-8"))["n_sequences"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as bad:
            raise InputError(f"{manifest_path} is unreadable ({type(bad).__name__}: {bad})") from None
    if not folder.is_dir():
        return first_sequence
    shards = _complete_shards(folder, shard_prefix, first_sequence)
    return shards[-1][1].first_sequence + shards[-1][1].n_sequences if shards else first_sequence


@dataclass(frozen=True)
class WriterPart:
    """What one finished writer holds: sequences ``first_sequence`` .. + ``n_sequences`` - 1 in ``shards``, their
    mass statistics, the identity hash its shards carry and its clock-chosen shard size (None: by size only)."""

    first_sequence: int
    n_sequences: int
    shards: tuple[ShardEntry, ...]
    stats: MassStats
    identity_sha256: str
    timed_shard_positions: int | None = None

    def to_dict(self) -> dict:
        return {"first_sequence": self.first_sequence, "n_sequences": self.n_sequences,
                "shards": [shard.to_dict() for shard in self.shards], "stats": self.stats.to_dict(),
                "identity_sha256": self.identity_sha256, "timed_shard_positions": self.timed_shard_positions}

    @classmethod
    def from_dict(cls, data: dict) -> "WriterPart":
        return cls(first_sequence=int(data["first_sequence"]), n_sequences=int(data["n_sequences"]),
                   shards=tuple(ShardEntry(**shard) for shard in data["shards"]),
                   stats=MassStats.from_dict(data["stats"]), identity_sha256=str(data["identity_sha256"]),
                   timed_shard_positions=data.get("timed_shard_positions"))


class KnowledgeStoreWriter:
    """Appends per-sequence teacher top-k (or sampled) knowledge to a store folder; see the module docstring.

    Args:
        folder: the store folder (created if missing).
        vocab_size: the teacher's vocabulary size (ids must lie in [0, vocab_size)).
        k: entries per position (top-k tokens, or sample slots for ``selection="sample"``); k <= vocab_size.
        tokenizer_sha256: ``tokenizer_fingerprint(tokenizer)`` of the teacher's tokenizer.
        teacher_path, teacher_config_sha256: where the teacher came from and a hash of its config.
        temperature: the temperature the probabilities were computed at (softmax(logits / T)).
        temperature_source: where T came from (a calibration file, "fixed", ...).
        selection: "topk" (probabilities, any order; stored sorted descending) or "sample" (weights count / S).
        samples_per_position: S, for "sample".
        prob_bits: 8 or 16 bits per top-k probability (see prob_quantization.py for the error bound).
        shard_positions: positions per shard (a shard never splits a sequence, so it may hold more).
        shard_seconds: close the first shard open this long and keep its size as the limit (module docstring);
            None: by size only.
        extra: free-form JSON-able provenance recorded in the manifest (dataset, prompt template, ...).
        first_sequence, shard_prefix: where this writer's sequences start and what its shard files are called, when
            several write one store (module docstring); 0 and ``shard`` for a store of one writer.
    """

    def __init__(self, folder: str | Path, *, vocab_size: int, k: int, tokenizer_sha256: str, teacher_path: str,
                 teacher_config_sha256: str, temperature: float, temperature_source: str, selection: str = "topk",
                 samples_per_position: int | None = None, prob_bits: int = 8,
                 shard_positions: int = DEFAULT_SHARD_POSITIONS, shard_seconds: float | None = None,
                 extra: dict | None = None, first_sequence: int = 0, shard_prefix: str = "shard"):
        for name, value in (("vocab_size", vocab_size), ("k", k), ("shard_positions", shard_positions)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if k > vocab_size:
            raise ValueError(f"k = {k} exceeds the vocabulary size {vocab_size}")
        if shard_seconds is not None and (isinstance(shard_seconds, bool) or not isinstance(shard_seconds, (int, float))
                                          or not 0 < shard_seconds < float("inf")):
            raise ValueError(f"shard_seconds must be a finite number > 0 or None, got {shard_seconds!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if selection == "topk" and samples_per_position is not None:
            raise ValueError(f"samples_per_position is only for selection 'sample', got {samples_per_position!r}")
        if isinstance(first_sequence, bool) or not isinstance(first_sequence, (int, np.integer)) or first_sequence < 0:
            raise ValueError(f"first_sequence must be an int >= 0, got {first_sequence!r}")
        self.folder = Path(folder)
        self.first_sequence = int(first_sequence)
        self.shard_prefix = str(shard_prefix)
        self.id_packing = IdPacking.for_vocab(int(vocab_size), int(k))
        self.quantization = ProbQuantization(k=int(k), selection=selection, bits=prob_bits,
                                             samples_per_position=samples_per_position)
        self.identity = StoreIdentity(
            teacher_path=str(teacher_path), teacher_config_sha256=str(teacher_config_sha256),
            tokenizer_sha256=str(tokenizer_sha256), vocab_size=int(vocab_size), k=int(k), selection=selection,
            samples_per_position=samples_per_position, temperature=float(temperature),
            temperature_source=str(temperature_source),
            quantization={"ids": self.id_packing.to_dict(), "probs": self.quantization.to_dict()},
            extra=dict(extra or {}))
        json.dumps(self.identity.to_dict())  # fail now, not at close(), if extra is not JSON-able
        self._identity_sha256 = self.identity.sha256
        self.shard_positions = int(shard_positions)
        self.shard_seconds = None if shard_seconds is None else float(shard_seconds)
        self.timed_shard_positions: int | None = None  # P, once the clock has chosen it (module docstring)
        self._shards: list[ShardEntry] = []
        self._shard_stats: list[MassStats] = []
        self._pending_ids: list[np.ndarray] = []
        self._pending_codes: list[np.ndarray] = []
        self._pending_lengths: list[int] = []
        self._pending_positions = 0
        self._pending_stats = MassStats()
        self._closed = False
        self._adopt_existing()
        self._shard_opened_at = monotonic()

    @property
    def next_sequence(self) -> int:
        """The index ``add`` expects next."""
        first = self._shards[-1].first_sequence + self._shards[-1].n_sequences if self._shards else self.first_sequence
        return first + len(self._pending_lengths)

    def _adopt_existing(self) -> None:
        if (self.folder / MANIFEST_NAME).exists():
            raise ValueError(f"{self.folder} already holds a complete knowledge store ({MANIFEST_NAME} exists); "
                             "choose another folder or delete it")
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(f".{self.shard_prefix}-[0-9]*.tmp"):
            leftover.unlink(missing_ok=True)  # an unfinished shard of a killed run (this writer's series only)
        for path, header in _complete_shards(self.folder, self.shard_prefix, self.first_sequence):
            if header.identity_sha256 != self._identity_sha256:
                raise ValueError(f"{path} was written with different settings (teacher, tokenizer, k, temperature "
                                 "or encoding) than this writer's; resume with the same settings or use a new folder")
            self._shards.append(ShardEntry(file=path.name, sha256=file_sha256(path), bytes=path.stat().st_size,
                                           n_sequences=header.n_sequences, n_positions=header.n_positions,
                                           first_sequence=header.first_sequence))
            self._shard_stats.append(MassStats.from_dict(header.stats))
            if header.timed_shard_positions is not None:
                self.timed_shard_positions = header.timed_shard_positions

    @property
    def shard_limit(self) -> int:
        """Positions at which the pending shard is closed: ``shard_positions``, or less once the clock chose P."""
        if self.timed_shard_positions is None:
            return self.shard_positions
        return min(self.shard_positions, self.timed_shard_positions)

    def add(self, sequence_index: int, topk_ids: np.ndarray, topk_probs: np.ndarray) -> None:
        """Record one sequence: ``topk_ids`` (T, k) ints and ``topk_probs`` (T, k) floats, one row per completion
        position (T may be 0). For "topk" the probabilities are the tempered teacher's, in any order; for
        "sample" the weights are count / S with padding entries (id 0, weight 0)."""
        if self._closed:
            raise ValueError("this writer is closed")
        if sequence_index != self.next_sequence:
            raise ValueError(f"expected sequence {self.next_sequence} next (sequences are added in order, starting "
                             f"at resume_from(folder)), got {sequence_index}")
        ids, probs = self._checked(topk_ids, topk_probs, sequence_index)
        if self.quantization.selection == "topk":
            order = np.argsort(-probs, axis=1, kind="stable")
            ids = np.take_along_axis(ids, order, axis=1)
            probs = np.take_along_axis(probs, order, axis=1)
        self._pending_ids.append(self.id_packing.encode(ids))
        self._pending_codes.append(self.quantization.encode(probs))
        self._pending_lengths.append(len(ids))
        self._pending_positions += len(ids)
        self._pending_stats.add(probs)
        if self._pending_positions >= self.shard_limit:
            self._flush()

    def close_shard_if_due(self) -> bool:
        """Close the pending shard if it has been open ``shard_seconds`` and the clock has not chosen P yet; its
        positions become P (module docstring). Call it between batches of ``add`` (extraction: after each window),
        so P is never a fraction of a batch that took long. Returns whether a shard was closed."""
        if (self._closed or self.shard_seconds is None or self.timed_shard_positions is not None
                or not self._pending_positions or monotonic() - self._shard_opened_at < self.shard_seconds):
            return False
        self.timed_shard_positions = self._pending_positions  # from now on a size limit: boundaries are data
        self._flush()
        return True

    def _checked(self, topk_ids, topk_probs, sequence_index: int) -> tuple[np.ndarray, np.ndarray]:
        k, vocab_size = self.identity.k, self.identity.vocab_size
        ids = np.asarray(topk_ids)
        probs = np.asarray(topk_probs, dtype=np.float64)
        where = f"sequence {sequence_index}"
        if ids.ndim != 2 or ids.shape[1] != k or probs.shape != ids.shape:
            raise ValueError(f"{where}: topk_ids and topk_probs must both have shape (T, {k}), "
                             f"got {ids.shape} and {probs.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{where}: topk_ids must be integers, got {ids.dtype}")
        if ids.size == 0:
            return ids.astype(np.int64).reshape(0, k), probs.reshape(0, k)
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(f"{where}: token ids must lie in [0, {vocab_size}), got min {ids.min()} max {ids.max()}")
        if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 + _SUM_TOLERANCE:
            raise ValueError(f"{where}: probabilities must be finite and in [0, 1], got min {probs.min()} max {probs.max()}")
        sums = probs.sum(axis=1)
        if sums.max() > 1 + _SUM_TOLERANCE:
            row = int(sums.argmax())
            raise ValueError(f"{where}: position {row} has probabilities summing to {sums[row]:.6f} > 1")
        if self.quantization.selection == "topk":
            sorted_ids = np.sort(ids, axis=1)
            if np.any(sorted_ids[:, 1:] == sorted_ids[:, :-1]):
                row = int(np.flatnonzero(np.any(sorted_ids[:, 1:] == sorted_ids[:, :-1], axis=1))[0])
                raise ValueError(f"{where}: position {row} repeats a token id: {ids[row].tolist()}")
        else:
            counts = probs * self.quantization.samples_per_position
            if np.abs(counts - np.rint(counts)).max() > 1e-3:
                raise ValueError(f"{where}: sample weights must be multiples of 1/{self.quantization.samples_per_position}"
                                 f" (count / samples_per_position), got {probs[np.abs(counts - np.rint(counts)) > 1e-3][0]}")
        return ids.astype(np.int64), probs

    def _flush(self) -> None:
        if not self._pending_lengths:
            return
        first = self.next_sequence - len(self._pending_lengths)
        entry = write_shard(self.folder, len(self._shards), first_sequence=first,
                            lengths=np.asarray(self._pending_lengths),
                            id_rows=np.concatenate(self._pending_ids) if self._pending_positions else
                            np.zeros((0, self.id_packing.row_bytes), np.uint8),
                            prob_codes=np.concatenate(self._pending_codes) if self._pending_positions else
                            np.zeros((0, self.identity.k), self.quantization.dtype),
                            identity_sha256=self._identity_sha256, stats=self._pending_stats.to_dict(),
                            timed_shard_positions=self.timed_shard_positions, prefix=self.shard_prefix,
                            id_bits=self.id_packing.bits)  # version-2 shard (shard.py)
        self._shards.append(entry)
        self._shard_stats.append(self._pending_stats)
        self._pending_ids, self._pending_codes, self._pending_lengths = [], [], []
        self._pending_positions = 0
        self._pending_stats = MassStats()
        self._shard_opened_at = monotonic()

    def finish(self) -> WriterPart:
        """Write the last shard and close the writer, without a manifest (one of several writers); its part."""
        if self._closed:
            raise ValueError("this writer is already closed")
        self._flush()
        self._closed = True
        total = MassStats()
        for stats in self._shard_stats:
            total.merge(stats)
        return WriterPart(first_sequence=self.first_sequence, n_sequences=self.next_sequence - self.first_sequence,
                          shards=tuple(self._shards), stats=total, identity_sha256=self._identity_sha256,
                          timed_shard_positions=self.timed_shard_positions)

    def write_manifest(self, parts: Sequence[WriterPart], extra_stats: dict | None = None) -> Manifest:
        """``manifest.json`` (atomically) of the finished ``parts`` of every writer, in rank order (rank i wrote
        ``parts[i]``); returns it. ``extra_stats`` are merged into its ``stats``. Parts written with another
        identity, or that do not tile the sequences from 0 on, are refused (``ValueError``)."""
        total = MassStats()
        for rank, part in enumerate(parts):
            if part.identity_sha256 != self._identity_sha256:
                raise ValueError(f"rank {rank} wrote its shards with different settings (teacher, tokenizer, k, "
                                 "temperature or encoding) than rank 0")
            total.merge(part.stats)
        shards = tuple(shard for part in parts for shard in part.shards)
        n_positions = sum(shard.n_positions for shard in shards)
        stats = total.summary()
        stats["bytes_per_position"] = sum(shard.bytes for shard in shards) / n_positions if n_positions else None
        stats["payload_bytes_per_position"] = self.id_packing.row_bytes + self.quantization.row_bytes
        ranks = tuple(RankEntry(rank=rank, first_sequence=part.first_sequence, n_sequences=part.n_sequences,
                                shards=tuple(shard.file for shard in part.shards)) for rank, part in enumerate(parts))
        manifest = Manifest(identity=self.identity, n_sequences=sum(part.n_sequences for part in parts),
                            n_positions=n_positions, shards=shards, stats={**stats, **(extra_stats or {})},
                            world_size=len(parts), ranks=ranks)
        manifest.check_consistent()
        write_json_atomically(self.folder / MANIFEST_NAME, manifest.to_dict())
        return manifest

    def close(self) -> Manifest:
        """Write the last shard and then ``manifest.json`` (atomically); return the manifest (a store of one writer)."""
        if self.first_sequence != 0:
            raise ValueError(f"this writer starts at sequence {self.first_sequence}: finish() it and write the "
                             "manifest of every writer's part with write_manifest")
        return self.write_manifest([self.finish()])

    def __enter__(self) -> "KnowledgeStoreWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # On an exception the manifest is not written: the complete shards stay for resume_from.
        if exc_type is None and not self._closed:
            self.close()
