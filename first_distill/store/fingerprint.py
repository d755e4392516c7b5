"""Content fingerprints (sha256) that tie a knowledge store to the tokenizer, teacher and bytes it came from.

``tokenizer_fingerprint`` hashes what decides which id means which token: the vocabulary (token -> id,
added tokens included) and, for BPE tokenizers, the merges. Two tokenizers with the same fingerprint map
text to the same ids (up to normalisation settings), so top-k ids extracted with one are valid targets for
a student using the other. It accepts a Hugging Face ``tokenizers.Tokenizer``, a transformers fast or slow
tokenizer, or anything with ``get_vocab()``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_READ_BLOCK = 1 << 22


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def canonical_json_sha256(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys, no spaces, UTF-8): same value, same hash."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _merges(tokenizer: Any) -> list[list[str]] | None:
    """BPE merges as [left, right] pairs, whichever ``tokenizers`` version wrote them; None if not BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    to_str = getattr(backend, "to_str", None)
    if to_str is None:
        ranks = getattr(tokenizer, "bpe_ranks", None)  # slow GPT-2 style tokenizers
        if ranks is None:
            return None
        return [list(pair) for pair, _ in sorted(ranks.items(), key=lambda item: item[1])]
    merges = json.loads(to_str()).get("model", {}).get("merges")
    if merges is None:
        return None
    return [merge.split(" ", 1) if isinstance(merge, str) else list(merge) for merge in merges]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 (hex) of the canonical JSON ``{"vocab": [[token, id], ...] sorted by id, "merges": [...]}``."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        raise ValueError(f"cannot fingerprint {type(tokenizer).__name__}: it has no get_vocab()")
    try:
        vocab = get_vocab(with_added_tokens=True)  # tokenizers.Tokenizer
    except TypeError:
        vocab = get_vocab()  # transformers tokenizers (added tokens included)
    ordered = sorted(vocab.items(), key=lambda item: (item[1], item[0]))
    return canonical_json_sha256({"vocab": [[token, int(index)] for token, index in ordered],
                                  "merges": _merges(tokenizer)})
