"""Smooth ECE (Błasiok & Nakkiran 2023, "Smooth ECE: Principled Reliability Diagrams via Kernel Smoothing").

No bins: the residuals ``r_i = c_i - y_i`` are kernel-smoothed over the confidence axis with a Gaussian
kernel of bandwidth ``sigma`` reflected at 0 and 1, and

    smECE_sigma = sum_t |R(t)| / sum_t D(t),   R(t) = sum_i K(t, c_i) r_i,   D(t) = sum_i K(t, c_i) + 1e-4

over an evaluation mesh ``t``. The reported smooth ECE uses the self-consistent bandwidth
``sigma* ~= smECE_sigma*`` found by bisection, which the paper shows gives a consistent calibration measure.

This is a numpy re-implementation of the reference code ``relplot.smECE`` (Apple, relplot 1.0, default
configuration) that reproduces its numerical recipe step for step, so the two agree to float rounding:

1. linear-interpolate each question's weight onto a grid of ``G = max(2000, round(20/sigma)) // 2 + 1``
   points on [0, 1] (``smooth_round_to_grid``);
2. convolve with the kernel ``exp(-(s - 1/2)^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` sampled on the same
   grid, after mirroring the grid at both ends (``ReflectedGaussianKernel.convolve``); relplot uses a
   direct ``np.convolve``, we use an FFT (same result, ~1e-12 relative; much faster for small sigma);
3. linearly interpolate to the mesh ``t = linspace(0, 1, max(round(10/sigma), 200))``;
4. bisection: ``sigma* = `` the smallest of 1, 1/2, 3/4, ... (10 halvings) with ``sigma >= smECE_sigma``
   (or ``sigma < 0.001``), exactly as ``relplot.metrics.search_param``.

Inputs: ``confidences`` (n,) in [0, 1], ``correct`` (n,) bool or 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.metrics._validation import check_confidences_and_correct

DENSITY_EPS = 1e-4  # relplot BaseKernelMixin.smooth(eps=0.0001)
MIN_MESH_POINTS = 200  # relplot.config.smECE_mesh_pts
BANDWIDTH_FLOOR = 0.001  # relplot.metrics.smECE(eps=0.001)
BISECTION_STEPS = 10  # relplot.metrics.search_param(refine=10)


def grid_size(bandwidth: float) -> int:
    """Points of the smoothing grid for ``bandwidth`` (relplot ``GaussianKernel.apply``)."""
    return max(2000, round(20 / bandwidth)) // 2 + 1


def mesh_size(bandwidth: float) -> int:
    """Points of the evaluation mesh ``t`` for ``bandwidth`` (relplot ``smooth_ece``)."""
    return max(round(10 / bandwidth), MIN_MESH_POINTS)


def grid_assignment(confidences: np.ndarray, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Each confidence's left grid cell (n,) intp and its fraction (n,) towards the next grid point."""
    scaled = confidences * (n_grid - 1)
    cells = scaled.astype(np.intp).clip(0, n_grid - 2)
    return cells, scaled - cells


def round_to_grid(cells: np.ndarray, fractions: np.ndarray, weights: np.ndarray, n_grid: int) -> np.ndarray:
    """(G,) grid values: weight ``(1 - frac)`` to the left point, ``frac`` to the right (linear interpolation)."""
    left = np.bincount(cells, weights=(1.0 - fractions) * weights, minlength=n_grid)
    right = np.bincount(cells + 1, weights=fractions * weights, minlength=n_grid)
    return left + right


def smooth_on_grid(grid_values: np.ndarray, bandwidth: float) -> np.ndarray:
    """Reflected-Gaussian smoothing of grid values; (..., G) -> (..., G), relplot's recipe via FFT."""
    n_grid = grid_values.shape[-1]
    points = np.linspace(0.0, 1.0, n_grid)
    kernel = np.exp(-((points - 0.5) ** 2) / (2 * bandwidth**2)) / (np.sqrt(2 * np.pi) * bandwidth)
    mirrored = grid_values[..., ::-1]
    extended = np.concatenate([mirrored[..., :-1], grid_values, mirrored[..., 1:]], axis=-1)  # (..., 3G-2)
    full_size = extended.shape[-1] + n_grid - 1
    n_fft = _fast_length(full_size)
    full = np.fft.irfft(np.fft.rfft(extended, n_fft) * np.fft.rfft(kernel, n_fft), n_fft)
    # np.convolve(extended, kernel, "valid") is full[G-1 : 3G-2]; relplot keeps G values from G//2 on.
    start = n_grid - 1 + n_grid // 2
    return full[..., start : start + n_grid]


def interpolate_to_mesh(smoothed: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Linear interpolation of grid values (..., G) at mesh points (E,) -> (..., E) (relplot ``interpolate``)."""
    n_grid = smoothed.shape[-1]
    step = 1 / (n_grid - 1)
    indices = (mesh * (n_grid - 1)).astype(np.intp).clip(0, n_grid - 2)
    residual = (mesh - indices * step) / step
    return smoothed[..., indices] * (1 - residual) + smoothed[..., indices + 1] * residual


def smooth_ece_from_grids(count_grid: np.ndarray, residual_grid: np.ndarray, bandwidth: float) -> np.ndarray | float:
    """smECE at ``bandwidth`` from grid values of the weights and of the residuals, (..., G) -> (...).

    ``|R/D| * D = |R|``, so the ratio of relplot's ``sum |rs| * density / sum density`` is computed directly.
    """
    mesh = np.linspace(0.0, 1.0, mesh_size(bandwidth))
    smoothed = smooth_on_grid(np.stack([residual_grid, count_grid]), bandwidth)
    residual, density = interpolate_to_mesh(smoothed, mesh)
    density = density + DENSITY_EPS
    ratio = residual / density
    result = (np.abs(ratio) * density).sum(axis=-1) / density.sum(axis=-1)
    return float(result) if np.ndim(result) == 0 else result


@dataclass(frozen=True)
class SmoothEce:
    """Smooth ECE and the self-consistent kernel bandwidth it was computed at."""

    value: float
    bandwidth: float


class _GridCache:
    """Grid values of one data set, kept per grid size so the bisection smooths but never re-bins."""

    def __init__(self, confidences: np.ndarray, correct: np.ndarray) -> None:
        self.confidences = confidences
        self.residuals = confidences - correct
        self._grids: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def smooth_ece_at(self, bandwidth: float) -> float:
        n_grid = grid_size(bandwidth)
        if n_grid not in self._grids:
            cells, fractions = grid_assignment(self.confidences, n_grid)
            counts = round_to_grid(cells, fractions, np.ones_like(self.confidences), n_grid)
            residuals = round_to_grid(cells, fractions, self.residuals, n_grid)
            self._grids[n_grid] = (counts, residuals)
        counts, residuals = self._grids[n_grid]
        return smooth_ece_from_grids(counts, residuals, bandwidth)


def smooth_ece_at(confidences, correct, bandwidth: float) -> float:
    """smECE at a fixed kernel bandwidth (``relplot.smECE_sigma``)."""
    if not 0 < bandwidth <= 1:
        raise ValueError(f"bandwidth must be in (0, 1]; got {bandwidth!r}")
    confidences, correct = check_confidences_and_correct(confidences, correct)
    return _GridCache(confidences, correct.astype(np.float64)).smooth_ece_at(float(bandwidth))


def fit_smooth_ece(confidences, correct) -> SmoothEce:
    """Smooth ECE at the self-consistent bandwidth, with that bandwidth (``relplot.smECE(..., return_width=True)``)."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    cache = _GridCache(confidences, correct.astype(np.float64))

    def too_small(bandwidth: float) -> bool:
        return bandwidth < BANDWIDTH_FLOOR or bandwidth < cache.smooth_ece_at(bandwidth)

    bandwidth = 1.0
    if not too_small(bandwidth):
        upper, lower = 1.0, 0.0
        for _ in range(BISECTION_STEPS):
            middle = (upper + lower) / 2
            if too_small(middle):
                lower = middle
            else:
                upper = middle
        bandwidth = upper
    return SmoothEce(cache.smooth_ece_at(bandwidth), bandwidth)


def smooth_ece(confidences, correct) -> float:
    """Smooth ECE (Błasiok & Nakkiran 2023); matches ``relplot.smECE(confidences, correct)``."""
    return fit_smooth_ece(confidences, correct).value


def _fast_length(size: int) -> int:
    """Smallest 2^a 3^b 5^c >= size (a fast FFT length)."""
    best = 1 << (size - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < size:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best
