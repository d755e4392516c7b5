"""Summary statistics of a knowledge store: how much teacher mass the stored k tokens hold.

Accumulated while writing (one ``MassStats`` per shard, stored in the shard's header so a resumed
extraction can merge them without re-reading) and summarised into ``manifest.json`` ``stats``. Percentiles
come from a 1000-bin histogram of the per-position mass on [0, 1], so they are exact to 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MASS_BINS = 1000
PERCENTILES = (1, 5, 10, 50, 90, 95, 99)


@dataclass
class MassStats:
    """Running totals over positions of ``mass = sum_j p_j``, ``p_1`` and the number of non-zero entries."""

    n_positions: int = 0
    mass_sum: float = 0.0
    mass_min: float = float("inf")
    top1_sum: float = 0.0
    nonzero_sum: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(MASS_BINS, dtype=np.int64))

    def add(self, probs: np.ndarray) -> None:
        """probs (n, k), sorted descending for top-k (column 0 is then p_1)."""
        if len(probs) == 0:
            return
        mass = probs.sum(axis=1)
        self.n_positions += len(probs)
        self.mass_sum += float(mass.sum())
        self.mass_min = min(self.mass_min, float(mass.min()))
        self.top1_sum += float(probs.max(axis=1).sum())
        self.nonzero_sum += int(np.count_nonzero(probs))
        bins = np.clip((mass * MASS_BINS).astype(np.int64), 0, MASS_BINS - 1)
        self.histogram += np.bincount(bins, minlength=MASS_BINS)

    def merge(self, other: "MassStats") -> None:
        self.n_positions += other.n_positions
        self.mass_sum += other.mass_sum
        self.mass_min = min(self.mass_min, other.mass_min)
        self.top1_sum += other.top1_sum
        self.nonzero_sum += other.nonzero_sum
        self.histogram += other.histogram

    def to_dict(self) -> dict:
        """Raw totals (for a shard header); the histogram as {bin: count} for its non-empty bins."""
        nonzero_bins = np.flatnonzero(self.histogram)
        return {"n_positions": self.n_positions, "mass_sum": self.mass_sum,
                "mass_min": self.mass_min if self.n_positions else None, "top1_sum": self.top1_sum,
                "nonzero_sum": self.nonzero_sum,
                "histogram": {str(int(b)): int(self.histogram[b]) for b in nonzero_bins}}

    @classmethod
    def from_dict(cls, data: dict) -> "MassStats":
        histogram = np.zeros(MASS_BINS, dtype=np.int64)
        for b, count in data["histogram"].items():
            histogram[int(b)] = count
        mass_min = data["mass_min"]
        return cls(n_positions=int(data["n_positions"]), mass_sum=float(data["mass_sum"]),
                   mass_min=float("inf") if mass_min is None else float(mass_min), top1_sum=float(data["top1_sum"]),
                   nonzero_sum=int(data["nonzero_sum"]), histogram=histogram)

    def summary(self) -> dict:
        """Means and percentiles of the per-position mass, for ``manifest.json``."""
        n = self.n_positions
        if n == 0:
            return {"positions": 0, "topk_mass": None, "top1_prob_mean": None, "nonzero_entries_mean": None}
        cumulative = np.cumsum(self.histogram)
        percentiles = {}
        for q in PERCENTILES:
            upper_bin = int(np.searchsorted(cumulative, q / 100 * n))
            percentiles[f"p{q:02d}"] = round((upper_bin + 1) / MASS_BINS, 6)
        return {"positions": n,
                "topk_mass": {"mean": self.mass_sum / n, "min": self.mass_min, **percentiles,
                              "percentile_resolution": 1 / MASS_BINS},
                "top1_prob_mean": self.top1_sum / n,
                "nonzero_entries_mean": self.nonzero_sum / n}
