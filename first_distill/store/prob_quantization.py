"""Teacher probabilities as small integer codes, with a stated maximum error.

Two selections, two codes:

- ``topk``: the k probabilities of a position sorted descending, ``p_1 >= ... >= p_k``, sum <= 1. Then
  ``j p_j <= p_1 + ... + p_j <= 1``, so ``p_j`` lies in ``[0, 1/j]`` and is stored on that range:

      code_j = round(p_j * j * L),    p_j ~ code_j / (j * L),    L = 2**bits - 1

  with max abs error ``1 / (2 j L)`` (+ float32 rounding of the decoded value, <= 2**-23). Rank-scaling
  spends the codes where the values can be: with 8 bits the error is 2.0e-3 on p_1 and 3.9e-4 on p_5 (a flat
  [0, 1] range would give 2.0e-3 on all five). The tail mass ``1 - sum_j p_j`` is implicit; its error is at
  most the sum of the k bounds (``max_abs_error_tail``).

- ``sample``: weights ``count / S`` of S draws (Anshumann et al., 2025) are stored exactly as the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

FLOAT32_ROUNDING = 2.0**-23  # float32 rounding of code * scale (scale and product each <= 2**-24 relative), value <= 1
PROB_BITS = (8, 16)
SCALE_ROWS = 4096  # decodes of up to this many positions multiply by a pre-tiled scale (``_scale_rows``)
SELECTIONS = ("topk", "sample")


@dataclass(frozen=True)
class ProbQuantization:
    """Codes for one position's k probabilities (``topk``) or sample weights (``sample``)."""

    k: int
    selection: str = "topk"
    bits: int = 8
    samples_per_position: int | None = None

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selection == "topk" and self.bits not in PROB_BITS:
            raise ValueError(f"prob_bits must be one of {PROB_BITS}, got {self.bits!r}")
        if self.selection == "sample":
            s = self.samples_per_position
            if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 65535:
                raise ValueError(f"samples_per_position must be an int in [1, 65535] for selection 'sample', got {s!r}")

    @property
    def dtype(self) -> np.dtype:
        if self.selection == "sample":
            return np.dtype("<u1") if self.samples_per_position <= 255 else np.dtype("<u2")
        return np.dtype("<u1") if self.bits == 8 else np.dtype("<u2")

    @property
    def row_bytes(self) -> int:
        return self.k * self.dtype.itemsize

    @property
    def max_abs_error(self) -> list[float]:
        """Per rank j = 1..k: the largest |decoded - original| for valid input."""
        if self.selection == "sample":
            return [FLOAT32_ROUNDING] * self.k
        levels = 2**self.bits - 1
        return [1.0 / (2 * j * levels) + FLOAT32_ROUNDING for j in range(1, self.k + 1)]

    @cached_property
    def _scale(self) -> np.ndarray:
        """(k,) float32 multipliers, decoded = code * scale (computed once: ``decode`` runs per sequence)."""
        if self.selection == "sample":
            scale = np.full(self.k, 1.0 / self.samples_per_position, dtype=np.float32)
        else:
            scale = (1.0 / (np.arange(1, self.k + 1, dtype=np.float64) * (2**self.bits - 1))).astype(np.float32)
        scale.flags.writeable = False
        return scale

    def to_dict(self) -> dict:
        if self.selection == "sample":
            return {"method": "sample counts", "dtype": self.dtype.str, "samples_per_position": self.samples_per_position,
                    "decode": "w_j = code_j / samples_per_position", "max_abs_error": self.max_abs_error}
        levels = 2**self.bits - 1
        errors = self.max_abs_error
        return {"method": "rank-scaled uniform", "bits": self.bits, "dtype": self.dtype.str,
                "decode": f"p_j = code_j / ({levels} * j), j = 1..k, probabilities sorted descending",
                "max_abs_error": errors, "max_abs_error_tail": float(sum(errors))}

    def encode(self, probs: np.ndarray) -> np.ndarray:
        """probs (n, k) float (``topk``: sorted descending) -> codes (n, k)."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.selection == "sample":
            codes = np.rint(probs * self.samples_per_position)
        else:
            levels = 2**self.bits - 1
            codes = np.rint(probs * (np.arange(1, self.k + 1) * levels))
            codes = np.clip(codes, 0, levels)  # p_j a hair above 1/j from float noise
        return codes.astype(self.dtype)

    @cached_property
    def _scale_rows(self) -> np.ndarray:
        """(SCALE_ROWS, k) float32: ``_scale`` repeated, so a short decode multiplies equal shapes (numpy runs a
        (n, k) * (k,) broadcast as n inner loops of k: the larger cost of decoding one sequence)."""
        rows = np.tile(self._scale, (SCALE_ROWS, 1))
        rows.flags.writeable = False
        return rows

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes (n, k) -> probabilities (n, k) float32."""
        probs = codes.astype(np.float32)
        probs *= self._scale_rows[:len(probs)] if probs.ndim == 2 and len(probs) <= SCALE_ROWS else self._scale
        return probs
