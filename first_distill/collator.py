"""Training examples -> padded batches whose targets line up with the student's logits.

Alignment (the one rule every loss relies on): the logits at position t predict token t + 1. So

    labels[b, t]    = input_ids[b, t + 1]            (-100 where no loss is taken)
    loss_mask[b, t] = completion_mask[b, t + 1]      (the last position never carries loss)

and a knowledge store row goes where its token is predicted: sequence b's stored row j belongs to its j-th
completion token, at input position ``completion_start + j``, so it lands at logits position
``completion_start + j - 1`` — exactly the j-th True of ``loss_mask[b]`` (``KnowledgeBatch.to_padded``).
Targets are shifted instead of slicing ``logits[:, :-1]``, whose backward would copy the whole logits
gradient once more (see first_distill/losses/).

Batches are right-padded (pad token, attention 0, no loss), so positions are the same as in an unpadded
forward and no ``position_ids`` are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from first_distill.training_data import TokenizedExample

if TYPE_CHECKING:
    from first_distill.store import KnowledgeStore

IGNORE_INDEX = -100


class ExampleDataset:
    """Tokenized examples as the per-example dicts the collator takes (a map-style dataset for ``Trainer``).

    Item i: ``input_ids`` (L,) int64, ``completion_mask`` (L,) bool, ``sequence_index`` (the example's row in
    the knowledge store, i.e. its index in the training set, kept even when other examples are left out).
    """

    def __init__(self, examples: Sequence[TokenizedExample], sequence_indices: Sequence[int] | None = None):
        self.examples = list(examples)
        self.sequence_indices = (list(range(len(self.examples))) if sequence_indices is None
                                 else [int(i) for i in sequence_indices])
        if len(self.sequence_indices) != len(self.examples):
            raise ValueError(f"{len(self.sequence_indices)} sequence indices for {len(self.examples)} examples")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "completion_mask": example.completion_mask,
                "sequence_index": self.sequence_indices[index]}


def pad_right(features: Sequence[dict[str, Any]], pad_token_id: int,
              pad_to_multiple_of: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad a batch: input_ids (B, T) int64, attention_mask (B, T) int64, completion_mask (B, T) bool.

    T is the longest example, rounded up to a multiple of ``pad_to_multiple_of`` when given.
    """
    lengths = [len(f["input_ids"]) for f in features]
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(features), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(features), width), dtype=np.int64)
    completion_mask = np.zeros((len(features), width), dtype=bool)
    for row, (feature, length) in enumerate(zip(features, lengths)):
        input_ids[row, :length] = feature["input_ids"]
        attention_mask[row, :length] = 1
        completion_mask[row, :length] = feature["completion_mask"]
    return input_ids, attention_mask, completion_mask


def next_token_targets(input_ids: np.ndarray, completion_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets aligned with the logits (module docstring): labels (B, T) int64, loss_mask (B, T) bool.

    ``loss_mask[:, t] = completion_mask[:, t + 1]``, False at t = T - 1; ``labels`` is ``input_ids`` shifted
    left by one, ``IGNORE_INDEX`` wherever ``loss_mask`` is False.
    """
    loss_mask = np.zeros_like(completion_mask, dtype=bool)
    loss_mask[:, :-1] = completion_mask[:, 1:]
    labels = np.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    labels[~loss_mask] = IGNORE_INDEX
    return labels, loss_mask


@dataclass(frozen=True)
class DistillationCollator:
    """Collate ``ExampleDataset`` items into a batch of torch tensors.

    Output keys: ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) (already shifted: the
    token each position's logits predict; -100 where masked — do not pass them to a Hugging Face model,
    which would shift them again), ``loss_mask`` (B, T) bool, ``sequence_index`` (B,), and with a ``store``
    ``topk_ids`` (B, T, k) int64 and ``topk_probs`` (B, T, k) float32 at the ``loss_mask`` positions (id 0,
    probability 0 elsewhere; for a ``sample`` store these are the sampled ids and their weights).
    """

    pad_token_id: int
    store: "KnowledgeStore | None" = None
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not features:
            raise ValueError("cannot collate an empty batch")
        input_ids, attention_mask, completion_mask = pad_right(features, self.pad_token_id, self.pad_to_multiple_of)
        labels, loss_mask = next_token_targets(input_ids, completion_mask)
        sequence_index = np.asarray([int(f["sequence_index"]) for f in features], dtype=np.int64)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask),
                 "labels": torch.from_numpy(labels), "loss_mask": torch.from_numpy(loss_mask),
                 "sequence_index": torch.from_numpy(sequence_index)}
        if self.store is not None:
            topk_ids, topk_probs = self.store.gather(sequence_index).to_padded(loss_mask)  # (B, T, k) each
            batch["topk_ids"] = torch.from_numpy(topk_ids)
            batch["topk_probs"] = torch.from_numpy(topk_probs)
        return batch
