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
4. bisection on (0, 1] for the crossing ``sigma = smECE_sigma``: ``sigma*`` is the upper end of the
   bracket after 10 halvings (so ``sigma* >= smECE_sigma*``, within 2^-10 of the crossing), or 1 when
   ``smECE_1 > 1``; bandwidths below 0.001 count as too small. Exactly ``relplot.metrics.search_param``.

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


def sampled_kernel(n_grid: int, bandwidth: float) -> np.ndarray:
    """(G,) Gaussian density with sd ``bandwidth`` around 1/2, sampled on the grid (relplot ``kernel_ev``)."""
    points = np.linspace(0.0, 1.0, n_grid)
    return np.exp(-((points - 0.5) ** 2) / (2 * bandwidth**2)) / (np.sqrt(2 * np.pi) * bandwidth)


def smooth_on_grid(grid_values: np.ndarray, bandwidth: float) -> np.ndarray:
    """Reflected-Gaussian smoothing of grid values; (..., G) -> (..., G), relplot's recipe via FFT."""
    n_grid = grid_values.shape[-1]
    kernel = sampled_kernel(n_grid, bandwidth)
    mirrored = grid_values[..., ::-1]
    extended = np.concatenate([mirrored[..., :-1], grid_values, mirrored[..., 1:]], axis=-1)  # (..., 3G-2)
    full_size = extended.shape[-1] + n_grid - 1
    n_fft = _fast_length(full_size)
    full = np.fft.irfft(np.fft.rfft(extended, n_fft) * np.fft.rfft(kernel, n_fft), n_fft)
    # np.convolve(extended, kernel, "valid") is full[G-1 : 3G-2]; relplot keeps G values from G//2 on.
    start = n_grid - 1 + n_grid // 2
    return full[..., start : start + n_grid]


def smoothing_matrix(n_grid: int, bandwidth: float) -> np.ndarray:
    """(G, G) matrix ``S`` with ``smooth_on_grid(v) == v @ S``, built without FFTs.

    ``smooth_on_grid`` convolves the grid mirrored at both ends, so a unit weight on grid point g acts
    at g and at its two mirror images: ``S[g, a] = k(a - g) + k(a + g) + k(a + g - 2(G - 1))`` where
    ``k(d) = kernel[G//2 + d]`` is the sampled kernel, zero outside the sample (the mirror images exclude
    the end points themselves, which are not duplicated).
    """
    kernel = sampled_kernel(n_grid, bandwidth)
    # padded[j + offset] = kernel[j] for 0 <= j < G, zero elsewhere; offsets d run over -3G..3G.
    offset = 3 * n_grid
    padded = np.zeros(7 * n_grid)
    padded[offset : offset + n_grid] = kernel
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_grid)  # windows[s, a] = padded[s + a], no copy
    source = np.arange(n_grid)
    centre = n_grid // 2 + offset
    direct = windows[centre - source]  # padded[centre + target - source]
    low_mirror = np.where(source[:, None] >= 1, windows[centre + source], 0.0)
    high_mirror = np.where(source[:, None] <= n_grid - 2, windows[centre + source - 2 * (n_grid - 1)], 0.0)
    return direct + low_mirror + high_mirror


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


class SmoothEceAtBandwidth:
    """smECE at one fixed bandwidth for many weightings of the same grid (the bootstrap's use).

    Smoothing and interpolation are linear, so ``R(t) = residual_grid @ L`` with ``L`` (G, E) built once,
    and ``sum_t D(t) = count_grid @ L.sum(1)``: a resample costs two small matrix products instead of
    two FFT convolutions. ``L`` is only built up to ``MAX_DENSE_GRID`` grid points (bandwidth >= ~0.007);
    below that the FFT path of ``smooth_ece_from_grids`` is used. Same value as ``smooth_ece_from_grids``
    up to float rounding.
    """

    MAX_DENSE_GRID = 1501

    def __init__(self, bandwidth: float) -> None:
        self.bandwidth = float(bandwidth)
        self.n_grid = grid_size(self.bandwidth)
        self.n_mesh = mesh_size(self.bandwidth)
        self._to_mesh = None
        if self.n_grid <= self.MAX_DENSE_GRID:
            mesh = np.linspace(0.0, 1.0, self.n_mesh)
            # Row g: the smoothed, interpolated response to a unit weight on grid point g.
            self._to_mesh = interpolate_to_mesh(smoothing_matrix(self.n_grid, self.bandwidth), mesh)
            self._density_total = self._to_mesh.sum(axis=1)

    def __call__(self, count_grids: np.ndarray, residual_grids: np.ndarray) -> np.ndarray:
        """(R, G) grid values of the weights and of the weighted residuals -> (R,) smECE values."""
        if self._to_mesh is None:
            return np.atleast_1d(smooth_ece_from_grids(count_grids, residual_grids, self.bandwidth))
        residual = residual_grids @ self._to_mesh  # (R, E)
        density_total = count_grids @ self._density_total + DENSITY_EPS * self.n_mesh
        return np.abs(residual).sum(axis=1) / density_total


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
