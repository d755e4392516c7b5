"""Teacher knowledge for FIRST distillation: per completion position, the tempered teacher's top-k token ids and
probabilities (or sampled ids and weights), stored compactly on disk and read back memory-mapped.

- ``writer.py``: ``KnowledgeStoreWriter`` (atomic shards, manifest last) and ``resume_from``.
- ``reader.py``: ``KnowledgeStore.open`` (verification against the student's tokenizer) and ``KnowledgeBatch``.
- ``ranks.py``: several processes writing one store (``accelerate launch``): who takes which sequences.
- ``manifest.py``, ``shard.py``: the on-disk format; ``id_packing.py``, ``prob_quantization.py``: the encoding of
  one position (15 bytes at k = 5 for vocabularies up to 65536 tokens); ``stats.py``: top-k mass summaries.
- ``fingerprint.py``: ``tokenizer_fingerprint`` and file hashes, shared with extraction.
"""

from first_distill.store.fingerprint import file_sha256, tokenizer_fingerprint
from first_distill.store.id_packing import IdPacking
from first_distill.store.manifest import MANIFEST_NAME, SCHEMA, Manifest, ShardEntry, StoreIdentity
from first_distill.store.prob_quantization import ProbQuantization
from first_distill.store.reader import KnowledgeBatch, KnowledgeStore
from first_distill.store.writer import DEFAULT_SHARD_POSITIONS, KnowledgeStoreWriter, resume_from

__all__ = [
    "DEFAULT_SHARD_POSITIONS", "IdPacking", "KnowledgeBatch", "KnowledgeStore", "KnowledgeStoreWriter", "MANIFEST_NAME",
    "Manifest", "ProbQuantization", "SCHEMA", "ShardEntry", "StoreIdentity", "file_sha256", "resume_from",
    "tokenizer_fingerprint",
]
