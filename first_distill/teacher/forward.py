"""The teacher's forward pass over training completions: left-padded batches whose completions end in the last
column, so only the last ``max n_completion`` logit rows are computed (``logits_to_keep``).

For every completion position p of an example, the token at p is predicted by the logits at p - 1; row b's last
n_b rows of ``completion_logits`` are exactly those predictions, in order. Used by the extraction driver
(``extract.py``) and by the token-level temperature fit (``token_temperature.py``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from first_distill.training_data import TokenizedExample


@dataclass(frozen=True)
class TeacherBatch:
    """Left-padded teacher inputs of B sequences; their completions end in the last column.

    input_ids, attention_mask, position_ids (B, P - 1): the sequences without their last token.
    keep (B, m) bool: which of the last m logit rows are completion predictions (row b: its last n_b).
    indices (B,): the sequences' indices in the training set.
    """

    input_ids: Any
    attention_mask: Any
    position_ids: Any
    keep: Any
    n_completion: np.ndarray
    indices: np.ndarray


def collate_teacher_batch(examples: Sequence[TokenizedExample], indices: Sequence[int], pad_id: int,
                          device: Any = "cpu") -> TeacherBatch:
    """Left-pad ``examples[indices]`` (each with >= 1 completion token) into a ``TeacherBatch``."""
    import torch

    chosen = [examples[i] for i in indices]
    width = max(len(e.input_ids) for e in chosen) - 1
    input_ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(chosen), width), dtype=torch.long)
    for row, example in enumerate(chosen):
        tokens = torch.from_numpy(example.input_ids[:-1])
        input_ids[row, width - len(tokens):] = tokens
        attention_mask[row, width - len(tokens):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    n_completion = np.asarray([e.n_completion for e in chosen], dtype=np.int64)
    m = int(n_completion.max())
    keep = torch.arange(m)[None, :] >= torch.from_numpy(m - n_completion)[:, None]  # (B, m)
    return TeacherBatch(input_ids.to(device), attention_mask.to(device), position_ids.to(device), keep.to(device),
                        n_completion, np.asarray(indices, dtype=np.int64))


def completion_logits(model: Any, batch: TeacherBatch) -> Any:
    """(B, m, V) teacher logits of the last m positions; row b's last n_b rows (``batch.keep``) predict its
    completion tokens in order. A view of the model output: no (N, V) gather is copied."""
    m = batch.keep.shape[1]
    kwargs = {"logits_to_keep": m} if _accepts_logits_to_keep(model) else {}
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, use_cache=False, **kwargs).logits  # (B, m or P - 1, V)
    return logits[:, -m:]


def _accepts_logits_to_keep(model: Any) -> bool:
    cached = getattr(model, "_first_accepts_logits_to_keep", None)
    if cached is None:
        cached = "logits_to_keep" in inspect.signature(model.forward).parameters
        model._first_accepts_logits_to_keep = cached
    return cached
