"""Distillation and baseline losses on a student's next-token logits: pure torch functions.

Every loss takes ``student_logits (B, T, V)`` (any float dtype), per-position targets and ``mask (B, T)``
(bool, True = this position carries loss; only completion tokens do) and returns a float32 scalar
(float64 for float64 logits): the mean over the N unmasked positions. With N = 0 the result is 0.0 and
the gradient a finite zero.

    checks.py       input checks shared by every loss; the compute dtype
    engine.py       the chunked autograd engine of the full-vocabulary losses (memory notes there)
    topk.py         topk_kl, topk_kl_from_hidden (FIRST), topk_tail_kl
    sampled.py      sampled_kl (random-sampling KD)
    full_vocab.py   full_kl (online teacher)
    supervised.py   cross_entropy, label_smoothing (the baselines)

Callers should align targets with the logits (shift labels and masks left, mask the last position) rather
than pass ``logits[:, :-1]``: slicing works but its backward copies the whole logits gradient once more.

Closed-form gradients (z = logits of a row, s = softmax(z) over the full vocabulary, e_v = one-hot of v):

- weighted cross-entropy ``-sum_j w_j log s_{id_j}``  ->  ``(sum_j w_j) s - sum_j w_j e_{id_j}``
  (``cross_entropy``, ``sampled_kl``; ``full_kl`` -> ``s - p``; ``label_smoothing`` -> ``s - target``);
- ``topk_tail_kl``: see its docstring.

All are checked against finite differences (``torch.autograd.gradcheck``, float64) in the tests.

References: FIRST — Shum et al., "FIRST: Teach A Reliable Large Language Model Through Efficient Trustworthy
Distillation", EMNLP 2024; sparse logit sampling — Anshumann et al., "Sparse Logit Sampling: Accelerating
Knowledge Distillation in LLMs", ACL 2025; label smoothing — Szegedy et al., CVPR 2016.
"""

from first_distill.losses.engine import RowKernel, auto_chunk_size
from first_distill.losses.full_vocab import full_kl
from first_distill.losses.sampled import sampled_kl
from first_distill.losses.supervised import cross_entropy, label_smoothing
from first_distill.losses.topk import TAIL_FLOOR, topk_kl, topk_kl_from_hidden, topk_tail_kl

__all__ = ["TAIL_FLOOR", "RowKernel", "auto_chunk_size", "cross_entropy", "full_kl", "label_smoothing", "sampled_kl",
           "topk_kl", "topk_kl_from_hidden", "topk_tail_kl"]
