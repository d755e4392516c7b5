"""Reading a knowledge store: verified once, memory-mapped, decoded per sequence or per batch.

    store = KnowledgeStore.open(folder, expect_vocab_size=len(tokenizer),
                                expect_tokenizer_sha256=tokenizer_fingerprint(tokenizer))
    topk_ids, topk_probs = store.sequence(7)          # (T, k) int64, (T, k) float32
    batch = store.gather([3, 9, 4])                   # ragged: batch.topk_ids (P, k), batch.offsets (4,)
    ids_btk, probs_btk = batch.to_padded(completion_mask)   # (B, T, k) at the mask's True positions

Everything that can be wrong with a store on disk is reported as one ``InputError`` line naming the file
and both values: a different tokenizer or vocabulary, a missing, truncated or corrupted shard.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from first_distill.store.id_packing import IdPacking
from first_distill.store.manifest import MANIFEST_NAME, Manifest
from first_distill.store.prob_quantization import ProbQuantization
from first_distill.store.shard import MappedShard, ShardFormatError
from first_eval.errors import InputError

VERIFY_MODES = ("eager", "lazy", "size")


def _short(sha: str) -> str:
    return f"{sha[:12]}…" if len(sha) > 12 else sha


@dataclass(frozen=True)
class KnowledgeBatch:
    """Teacher knowledge of a batch of sequences, flat: sequence b owns rows ``offsets[b]:offsets[b + 1]``.

    topk_ids (P, k) int64, topk_probs (P, k) float32, offsets (B + 1,) int64.
    """

    topk_ids: np.ndarray
    topk_probs: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """(B,) stored positions per sequence."""
        return np.diff(self.offsets)

    @property
    def tail_mass(self) -> np.ndarray:
        """(P,) ``max(0, 1 - sum_j p_j)``: the teacher mass outside the stored k tokens (top-k stores)."""
        return np.clip(1.0 - self.topk_probs.sum(axis=1), 0.0, None)

    def to_padded(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place the rows at the True positions of ``mask`` (B, T), in order; -> ids (B, T, k), probs (B, T, k).

        Positions where ``mask`` is False get id 0 and probability 0. ``mask[b].sum()`` must equal sequence b's
        stored length (the completion positions the teacher was run on).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2 or mask.shape[0] != len(self.lengths):
            raise ValueError(f"mask must have shape (B, T) with B = {len(self.lengths)}, got {mask.shape}")
        counts = mask.sum(axis=1)
        if not np.array_equal(counts, self.lengths):
            bad = int(np.flatnonzero(counts != self.lengths)[0])
            raise ValueError(f"sequence {bad} of the batch has {self.lengths[bad]} stored positions but its mask "
                             f"selects {counts[bad]}")
        k = self.topk_ids.shape[1]
        ids = np.zeros(mask.shape + (k,), dtype=np.int64)
        probs = np.zeros(mask.shape + (k,), dtype=np.float32)
        ids[mask] = self.topk_ids  # boolean assignment walks rows in C order: sequence by sequence
        probs[mask] = self.topk_probs
        return ids, probs


class KnowledgeStore:
    """A complete knowledge store folder, opened read-only (see the module docstring). Use ``open``."""

    def __init__(self, folder: Path, manifest: Manifest, shards: list[MappedShard], verify: str,
                 id_packing: IdPacking, quantization: ProbQuantization):
        self.folder = folder
        self.manifest = manifest
        self.id_packing = id_packing
        self.quantization = quantization
        self._shards = shards
        self._first_sequences = [shard.first_sequence for shard in manifest.shards]
        self._n_sequences = manifest.n_sequences
        self._verified = [verify != "lazy"] * len(shards)
        # Per shard once read, (ids, prob_codes) as reads slice them: ids (n, k) unsigned for a byte-aligned id
        # packing (a view of the rows: a read is one astype), else the packed rows (``_ids`` unpacks them).
        self._arrays: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(shards)
        self._ids = _as_int64 if id_packing.aligned else id_packing.decode

    @classmethod
    def open(cls, folder: str | Path, *, expect_vocab_size: int | None = None,
             expect_tokenizer_sha256: str | None = None, expect_teacher_sha256: str | None = None,
             verify: str = "eager") -> "KnowledgeStore":
        """Open and check a store.

        ``expect_*``: the student's vocabulary size and tokenizer fingerprint (and optionally the teacher
        config hash) the store must have been made with. ``verify``: "eager" hashes every shard now, "lazy"
        hashes a shard on its first read, "size" only checks sizes. Problems raise ``InputError``.
        """
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        folder = Path(folder)
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            hint = " (an extraction was started here but never finished: resume it)" if any(folder.glob("shard-*.bin")) else ""
            raise InputError(f"no {MANIFEST_NAME} in knowledge store folder {folder}{hint}")
        try:
            manifest = Manifest.from_dict(json.loads(manifest_path.read_text(encoding="utf-8")), where=str(manifest_path))
        except json.JSONDecodeError as bad:
            raise InputError(f"{manifest_path} is not valid JSON ({bad})") from None
        except ValueError as bad:
            raise InputError(str(bad)) from None
        identity = manifest.identity
        try:
            id_packing = IdPacking(k=identity.k, bits=int(identity.quantization["ids"]["bits"]))
            quantization = ProbQuantization(k=identity.k, selection=identity.selection,
                                            bits=int(identity.quantization["probs"].get("bits", 8)),
                                            samples_per_position=identity.samples_per_position)
        except (KeyError, TypeError, ValueError) as bad:
            raise InputError(f"{manifest_path}: unreadable quantization settings ({bad})") from None
        if expect_tokenizer_sha256 is not None and identity.tokenizer_sha256 != expect_tokenizer_sha256:
            raise InputError(f"knowledge store was made with tokenizer sha256 {_short(identity.tokenizer_sha256)} "
                             f"but the student's is {_short(expect_tokenizer_sha256)}")
        if expect_vocab_size is not None and identity.vocab_size != expect_vocab_size:
            raise InputError(f"vocab sizes differ: teacher {identity.vocab_size}, student {expect_vocab_size}")
        if expect_teacher_sha256 is not None and identity.teacher_config_sha256 != expect_teacher_sha256:
            raise InputError(f"knowledge store was made with teacher config sha256 "
                             f"{_short(identity.teacher_config_sha256)} but {_short(expect_teacher_sha256)} was expected")
        identity_sha256 = identity.sha256  # canonical JSON hashed once, not per shard
        shards = []
        for entry in manifest.shards:
            path = folder / entry.file
            if not path.is_file():
                raise InputError(f"{entry.file} is missing from knowledge store {folder}")
            size = path.stat().st_size
            if size < entry.bytes:
                raise InputError(f"{entry.file} is truncated: {size} bytes, expected {entry.bytes}")
            if size > entry.bytes:
                raise InputError(f"{entry.file} is corrupted: {size} bytes, expected {entry.bytes}")
            try:  # eager: the bytes are hashed before anything in them is parsed
                shard = MappedShard(path, expect_sha256=entry.sha256 if verify == "eager" else None)
            except ShardFormatError as bad:
                raise InputError(str(bad)) from None
            except (ValueError, TypeError) as bad:  # a damaged header that still parses (lazy or size mode)
                raise InputError(f"{entry.file} is corrupted ({bad})") from None
            header = shard.header
            if header.identity_sha256 != identity_sha256 or (header.k, header.id_row_bytes, header.prob_dtype) != (
                    identity.k, id_packing.row_bytes, quantization.dtype.str):
                raise InputError(f"{entry.file} belongs to a different knowledge store than {MANIFEST_NAME} "
                                 "(teacher, tokenizer or encoding settings differ)")
            if (header.first_sequence, header.n_sequences, header.n_positions) != (
                    entry.first_sequence, entry.n_sequences, entry.n_positions):
                raise InputError(f"{entry.file} does not match {MANIFEST_NAME} (sequences {header.first_sequence}+"
                                 f"{header.n_sequences}, expected {entry.first_sequence}+{entry.n_sequences})")
            shards.append(shard)
        return cls(folder, manifest, shards, verify, id_packing, quantization)

    # ------------------------------------------------------------------------------------ properties

    @property
    def n_sequences(self) -> int:
        return self.manifest.n_sequences

    @property
    def n_positions(self) -> int:
        return self.manifest.n_positions

    @property
    def k(self) -> int:
        return self.manifest.identity.k

    @property
    def vocab_size(self) -> int:
        return self.manifest.identity.vocab_size

    @property
    def selection(self) -> str:
        return self.manifest.identity.selection

    @property
    def temperature(self) -> float:
        return self.manifest.identity.temperature

    @property
    def stats(self) -> dict:
        """Manifest stats: top-k mass mean/min/percentiles, mean p_1, bytes per position."""
        return dict(self.manifest.stats)

    def __len__(self) -> int:
        return self.n_sequences

    # ----------------------------------------------------------------------------------------- reads

    def _locate(self, index: int) -> tuple[int, int, int]:
        """(shard index, first row, end row) of sequence ``index`` (runs per read: kept lean)."""
        if not 0 <= index < self._n_sequences:
            raise IndexError(f"sequence {index} out of range: the store holds {self.n_sequences} sequences")
        shard_index = bisect.bisect_right(self._first_sequences, index) - 1
        if not self._verified[shard_index]:
            self._verify(shard_index)
        offsets = self._shards[shard_index].offsets
        local = index - self._first_sequences[shard_index]
        return shard_index, offsets.item(local), offsets.item(local + 1)

    def _verify(self, shard_index: int) -> None:
        entry = self.manifest.shards[shard_index]
        if self._shards[shard_index].sha256() != entry.sha256:
            raise InputError(f"{entry.file} is corrupted (sha256 mismatch)")
        self._verified[shard_index] = True

    def _load(self, shard_index: int) -> tuple[np.ndarray, np.ndarray]:
        """A shard's ``_arrays`` entry, made on its first read (a version-2 shard is decoded then)."""
        id_rows, prob_codes = self._shards[shard_index].arrays()
        arrays = (self.id_packing.values(id_rows) if self.id_packing.aligned else id_rows, prob_codes)
        self._arrays[shard_index] = arrays
        return arrays

    def sequence_length(self, index: int) -> int:
        """Stored positions of sequence ``index``."""
        _, start, stop = self._locate(index)
        return stop - start

    def sequence(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence ``index``: topk_ids (T, k) int64, topk_probs (T, k) float32 (top-k sorted descending)."""
        shard_index, start, stop = self._locate(index)
        ids, prob_codes = self._arrays[shard_index] or self._load(shard_index)
        return self._ids(ids[start:stop]), self.quantization.decode(prob_codes[start:stop])

    def gather(self, indices: Sequence[int]) -> KnowledgeBatch:
        """Several sequences at once (the collator's call), decoded in one pass."""
        id_parts, code_parts, lengths = [], [], []
        for index in indices:
            shard_index, start, stop = self._locate(int(index))
            ids, prob_codes = self._arrays[shard_index] or self._load(shard_index)
            id_parts.append(ids[start:stop])
            code_parts.append(prob_codes[start:stop])
            lengths.append(stop - start)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not id_parts:
            return KnowledgeBatch(np.zeros((0, self.k), np.int64), np.zeros((0, self.k), np.float32), offsets)
        return KnowledgeBatch(self._ids(np.concatenate(id_parts)), self.quantization.decode(np.concatenate(code_parts)),
                              offsets)


def _as_int64(ids: np.ndarray) -> np.ndarray:
    return ids.astype(np.int64)
