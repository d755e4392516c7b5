"""What is stored per completion position: the tempered teacher ``q_T = softmax(z / T)`` reduced to k entries.

``topk`` keeps the k most likely tokens and their exact probabilities (the tail mass 1 - sum is implicit);
``sample`` (random-sampling KD, Anshumann et al., ACL 2025) draws S tokens with replacement from q_T and stores
the distinct ids with weights count / S. The temperature is applied before the selection, so stored
probabilities and tail mass are those of q_T itself. Sampling uses one generator per example, seeded by
(seed, index), so the draws do not depend on batching.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from first_distill.teacher.forward import TeacherBatch

SELECTIONS = ("topk", "sample")


def tempered_topk(logits: Any, temperature: float, k: int, overwrite: bool = False) -> tuple[Any, Any]:
    """Top-k of ``q_T = softmax(logits / T)`` over the vocabulary (last dim): ids (..., k) int64, probs (..., k)
    fp32, descending. ``overwrite``: fp32 ``logits`` may be used as scratch space (saves a copy of them).

    The top-k ids of q_T are those of the logits (T > 0 keeps the order); with ``z_1`` the largest logit,
    ``p_j = exp((z_j - z_1) / T) / sum_v exp((z_v - z_1) / T)``: exact, one pass over the vocabulary after top-k.
    """
    import torch

    top_logits, top_ids = logits.topk(k, dim=-1)  # (..., k), sorted descending
    top_logits = top_logits.float()
    largest = top_logits[..., :1]  # (..., 1)
    if logits.dtype == torch.float32:
        scratch = logits if overwrite else logits.clone()
    else:
        scratch = logits.float()  # bf16 on a GPU: the fp32 copy is the scratch space
    normaliser = scratch.sub_(largest).mul_(1.0 / temperature).exp_().sum(dim=-1, keepdim=True)  # (..., 1)
    return top_ids, ((top_logits - largest) * (1.0 / temperature)).exp() / normaliser


def tempered_sample(logits: Any, temperature: float, samples: int, generator: Any) -> tuple[Any, Any, Any]:
    """S draws with replacement from ``q_T`` per row: distinct ids (N, S) (ascending, padded with id 0), weights
    count / S (N, S) (0 on padding), and the teacher mass q_T of the distinct ids (N,)."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (N, V)
    draws = torch.multinomial(probs, samples, replacement=True, generator=generator).sort(dim=-1).values  # (N, S)
    new = torch.ones_like(draws, dtype=torch.bool)
    new[:, 1:] = draws[:, 1:] != draws[:, :-1]
    slot = new.long().cumsum(-1) - 1  # (N, S): which distinct id each draw belongs to
    ids = torch.zeros_like(draws).scatter_(1, slot, draws)
    counts = torch.zeros_like(draws).scatter_add_(1, slot, torch.ones_like(draws))
    present = counts > 0
    covered = (probs.gather(1, ids) * present).sum(-1)
    return ids, counts.float() / samples, covered


def sequence_seed(seed: int, index: int) -> int:
    """A per-example seed independent of batching (splitmix-style mix of seed and index)."""
    mixed = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    return mixed >> 1


def select_knowledge(logits: Any, batch: TeacherBatch, temperature: float, k: int, selection: str,
                     samples_per_position: int | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(B, m, V) logits -> stored ids (N, k), probabilities or weights (N, k), and (sample) the covered mass (N,);
    N = the batch's completion positions, in order. ``selection``: one of ``SELECTIONS``."""
    import torch

    if selection == "topk":
        ids, probs = tempered_topk(logits, temperature, k, overwrite=True)  # (B, m, k) each
        return ids[batch.keep].cpu().numpy(), probs[batch.keep].cpu().numpy(), None
    parts, m = [], logits.shape[1]
    for row, index in enumerate(batch.indices):  # one generator per example: draws do not depend on batching
        generator = torch.Generator(device=logits.device).manual_seed(sequence_seed(seed, int(index)))
        parts.append(tempered_sample(logits[row, m - batch.n_completion[row]:], temperature,
                                     samples_per_position, generator))
    ids, weights, covered = (torch.cat(column) for column in zip(*parts))
    # at most min(S, V) distinct ids: the slots past k are always padding
    return ids[:, :k].cpu().numpy(), weights[:, :k].cpu().numpy(), covered.cpu().numpy()
