"""``manifest.json`` of a knowledge store: what the teacher knowledge is, where it came from, which shards hold it.

Written last, atomically, once every shard is complete: a folder without a manifest is an unfinished
extraction (``resume_from`` continues it), never a store. Example::

    {"schema": "first.knowledge/1",
     "teacher": {"path": "HuggingFaceTB/SmolLM2-1.7B-Instruct", "config_sha256": "9f2c..."},
     "tokenizer_sha256": "ab12...", "vocab_size": 49152, "k": 5,
     "selection": "topk", "samples_per_position": null,
     "temperature": 1.31, "temperature_source": "runs/teacher/calibration.json",
     "n_sequences": 12000, "n_positions": 1048576,
     "quantization": {"ids": {"bits": 16, ...}, "probs": {"method": "rank-scaled uniform", "max_abs_error": [...], ...}},
     "shards": [{"file": "shard-00000.bin", "sha256": "...", "bytes": 15729152, "n_sequences": 12000,
                 "n_positions": 1048576, "first_sequence": 0}],
     "world_size": 1,
     "ranks": [{"rank": 0, "first_sequence": 0, "n_sequences": 12000, "shards": ["shard-00000.bin"]}],
     "stats": {"topk_mass": {"mean": 0.97, "p01": 0.71, ...}, "bytes_per_position": 15.0, ...},
     "extra": {}}

``world_size``: how many processes wrote the store; ``ranks``: the consecutive sequences each took and the shards
it wrote (``shard-rankRRR-NNNNN.bin`` when there were several). ``shards`` lists every shard in sequence order
whatever wrote it, so a reader never needs ``ranks``. (Manifests written before ``ranks`` existed: one writer.)

``identity`` (everything that decides what the numbers mean, not how many there are) is also hashed into
every shard's header, so a resumed extraction cannot mix shards of two different teachers or settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from first_distill.store.fingerprint import canonical_json_sha256

SCHEMA = "first.knowledge/1"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ShardEntry:
    """One complete shard file: its name, content hash, size and the sequences it holds."""

    file: str
    sha256: str
    bytes: int
    n_sequences: int
    n_positions: int
    first_sequence: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RankEntry:
    """What one process of the extraction wrote: sequences ``first_sequence`` .. + ``n_sequences`` - 1, in
    ``shards`` (file names, in order)."""

    rank: int
    first_sequence: int
    n_sequences: int
    shards: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"rank": self.rank, "first_sequence": self.first_sequence, "n_sequences": self.n_sequences,
                "shards": list(self.shards)}


@dataclass(frozen=True)
class StoreIdentity:
    """What the stored numbers mean: teacher, tokenizer, vocabulary, k, selection, temperature, encoding."""

    teacher_path: str
    teacher_config_sha256: str
    tokenizer_sha256: str
    vocab_size: int
    k: int
    selection: str
    samples_per_position: int | None
    temperature: float
    temperature_source: str
    quantization: dict
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA,
                "teacher": {"path": self.teacher_path, "config_sha256": self.teacher_config_sha256},
                "tokenizer_sha256": self.tokenizer_sha256, "vocab_size": self.vocab_size, "k": self.k,
                "selection": self.selection, "samples_per_position": self.samples_per_position,
                "temperature": self.temperature, "temperature_source": self.temperature_source,
                "quantization": self.quantization, "extra": self.extra}

    @property
    def sha256(self) -> str:
        return canonical_json_sha256(self.to_dict())


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    identity: StoreIdentity
    n_sequences: int
    n_positions: int
    shards: tuple[ShardEntry, ...]
    stats: dict
    world_size: int = 1
    ranks: tuple[RankEntry, ...] = ()  # () only for manifests written before ranks were recorded

    def to_dict(self) -> dict:
        data = self.identity.to_dict()
        extra = data.pop("extra")
        data.update({"n_sequences": self.n_sequences, "n_positions": self.n_positions,
                     "shards": [shard.to_dict() for shard in self.shards], "world_size": self.world_size,
                     "ranks": [rank.to_dict() for rank in self.ranks], "stats": self.stats, "extra": extra})
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = MANIFEST_NAME) -> "Manifest":
        """Parse; ``ValueError`` naming the missing or malformed field."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{where}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        try:
            teacher = data["teacher"]
            identity = StoreIdentity(
                teacher_path=str(teacher["path"]), teacher_config_sha256=str(teacher["config_sha256"]),
                tokenizer_sha256=str(data["tokenizer_sha256"]), vocab_size=int(data["vocab_size"]), k=int(data["k"]),
                selection=str(data["selection"]), samples_per_position=data.get("samples_per_position"),
                temperature=float(data["temperature"]), temperature_source=str(data["temperature_source"]),
                quantization=dict(data["quantization"]), extra=dict(data.get("extra") or {}))
            shards = tuple(ShardEntry(file=str(s["file"]), sha256=str(s["sha256"]), bytes=int(s["bytes"]),
                                      n_sequences=int(s["n_sequences"]), n_positions=int(s["n_positions"]),
                                      first_sequence=int(s["first_sequence"])) for s in data["shards"])
            ranks = tuple(RankEntry(rank=int(r["rank"]), first_sequence=int(r["first_sequence"]),
                                    n_sequences=int(r["n_sequences"]), shards=tuple(str(f) for f in r["shards"]))
                          for r in data.get("ranks") or ())
            manifest = cls(identity=identity, n_sequences=int(data["n_sequences"]),
                           n_positions=int(data["n_positions"]), shards=shards, stats=dict(data.get("stats") or {}),
                           world_size=int(data.get("world_size", 1)), ranks=ranks)
        except KeyError as missing:
            raise ValueError(f"{where}: missing field {missing.args[0]!r}") from None
        except (TypeError, ValueError) as bad:
            raise ValueError(f"{where}: malformed field ({bad})") from None
        manifest.check_consistent(where)
        return manifest

    def check_consistent(self, where: str = MANIFEST_NAME) -> None:
        """Shards must tile sequences 0..n_sequences-1 in order and add up to the totals; ranks 0..world_size-1 must
        tile them too, each listing exactly the shards that hold its sequences."""
        expected_first = 0
        for shard in self.shards:
            if shard.first_sequence != expected_first:
                raise ValueError(f"{where}: {shard.file} starts at sequence {shard.first_sequence}, "
                                 f"expected {expected_first}")
            expected_first += shard.n_sequences
        if expected_first != self.n_sequences:
            raise ValueError(f"{where}: shards hold {expected_first} sequences but n_sequences is {self.n_sequences}")
        positions = sum(shard.n_positions for shard in self.shards)
        if positions != self.n_positions:
            raise ValueError(f"{where}: shards hold {positions} positions but n_positions is {self.n_positions}")
        if self.world_size < 1:
            raise ValueError(f"{where}: world_size is {self.world_size}, expected a whole number >= 1")
        if not self.ranks:
            return
        if [rank.rank for rank in self.ranks] != list(range(self.world_size)):
            raise ValueError(f"{where}: ranks are {[rank.rank for rank in self.ranks]}, "
                             f"expected 0..{self.world_size - 1}")
        expected_first = 0
        for rank in self.ranks:
            held = [shard.file for shard in self.shards
                    if rank.first_sequence <= shard.first_sequence < rank.first_sequence + rank.n_sequences]
            if rank.first_sequence != expected_first or list(rank.shards) != held:
                raise ValueError(f"{where}: rank {rank.rank} (sequences {rank.first_sequence}+{rank.n_sequences}, "
                                 f"shards {list(rank.shards)}) does not match the shards list")
            expected_first += rank.n_sequences
        if expected_first != self.n_sequences:
            raise ValueError(f"{where}: ranks hold {expected_first} sequences but n_sequences is {self.n_sequences}")


def write_json_atomically(path: Path, value: Any) -> None:
    """Write to a temporary name in the same folder, fsync, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
