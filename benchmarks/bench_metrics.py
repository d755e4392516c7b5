"""Speed of the metrics package against torchmetrics, with the project's goals beside.

    python benchmarks/bench_metrics.py [--quick]

1. Plain ECE (15 equal-width bins) on 1M questions: ``first_eval.metrics.ece`` vs torchmetrics'
   ``binary_calibration_error`` on the same arrays (goal: <= 10 ms).
2. The full metric set with a 1000-resample percentile bootstrap on 100k questions (``compute_metrics``;
   goal: <= 1 s) vs torchmetrics computing only ECE on 1000 bootstrap resamples of the same data (a
   resample = ``torch.randint`` indices + ``binary_calibration_error(..., validate_args=False)`` on the
   gathered tensors; timed on 100 resamples and scaled to 1000), and vs a naive numpy loop calling our
   plain metric functions on each resample (timed on 20 resamples and scaled to 1000).

Times are medians of a few repeats after a warm-up (wall clock, ``time.perf_counter``); the best wall
time and the process CPU time (all threads) are printed beside ours, and the goals are judged on the median.
Ours evaluates blocks of resamples on one thread per core (``resampled.MAX_WORKERS`` at most), with BLAS held
to one thread meanwhile; nothing here pins the thread counts. The machine may be shared with other work: the
load average is printed before and after the runs (on a busy machine the CPU time is the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from statistics import median

import numpy as np

from first_eval.metrics import (
    aurc,
    auroc,
    compute_metrics,
    debiased_calibration_error,
    ece,
    ece_equal_mass,
    equal_width_calibration_errors,
    resampled,
    selective_accuracy,
    smooth_ece_at,
)
from first_eval.scores import ChoiceScores

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Timing:
    """Seconds: median and best wall time over the repeats, and the median CPU time of this process
    (all its threads; on a shared machine CPU time shows the work, wall time also the waiting)."""

    wall: float
    best: float
    cpu: float

    def scaled(self, factor: float) -> "Timing":
        return Timing(self.wall * factor, self.best * factor, self.cpu * factor)


def timed(function, repeats: int, warm_up=None) -> Timing:
    """Time ``repeats`` calls of ``function`` after one warm-up call (of ``warm_up`` if given)."""
    (warm_up or function)()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(median(walls), min(walls), median(cpus))


def synthetic_questions(n: int, seed: int = 0):
    """Four-choice questions whose scores are 2x too sharp (an over-confident model)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, size=(n, 4))
    gold = rng.integers(0, 4, n)
    logits[np.arange(n), gold] += 1.0
    return ChoiceScores(2.0 * logits.ravel(), np.arange(0, 4 * n + 1, 4), gold).probabilities()


def bench_ece_1m(repeats: int) -> dict[str, Timing]:
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    probs = synthetic_questions(1_000_000)
    confidences, correct = probs.confidences, probs.correct
    preds, target = torch.from_numpy(confidences), torch.from_numpy(correct.astype(np.int64))
    return {
        "ours": timed(lambda: ece(confidences, correct, n_bins=15), repeats),
        "torchmetrics": timed(lambda: binary_calibration_error(preds, target, n_bins=15), repeats),
        "torchmetrics_unchecked": timed(
            lambda: binary_calibration_error(preds, target, n_bins=15, validate_args=False), repeats),
    }


def bench_bootstrap_100k(repeats: int, n_resamples: int = 1000) -> dict[str, Timing]:
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    n = 100_000
    probs = synthetic_questions(n, seed=1)
    confidences, correct = probs.confidences, probs.correct
    out = {
        "ours_full": timed(lambda: compute_metrics(probs, n_bootstrap=n_resamples, seed=0), repeats),
        "ours_points": timed(lambda: compute_metrics(probs, n_bootstrap=0), repeats),
    }

    preds, target = torch.from_numpy(confidences), torch.from_numpy(correct.astype(np.int64))

    def torchmetrics_bootstrap(n_loop: int) -> None:
        generator = torch.Generator().manual_seed(0)
        for _ in range(n_loop):
            index = torch.randint(0, n, (n,), generator=generator)
            binary_calibration_error(preds[index], target[index], n_bins=15, validate_args=False)

    n_torch = 100
    out["torchmetrics_ece_bootstrap"] = timed(lambda: torchmetrics_bootstrap(n_torch), repeats,
                                              warm_up=lambda: torchmetrics_bootstrap(2)).scaled(n_resamples / n_torch)

    bandwidth = compute_metrics(probs, n_bootstrap=0).smooth_ece_bandwidth

    def naive_loop(n_loop: int) -> None:
        rng = np.random.default_rng(0)
        for _ in range(n_loop):
            index = rng.integers(0, n, n)
            c, y = confidences[index], correct[index]
            equal_width_calibration_errors(c, y)
            ece_equal_mass(c, y)
            debiased_calibration_error(c, y)
            smooth_ece_at(c, y, bandwidth)
            auroc(c, y)
            aurc(c, y)
            selective_accuracy(c, y, 0.5)
            selective_accuracy(c, y, 0.8)

    n_loop = 20
    out["naive_numpy_loop"] = timed(lambda: naive_loop(n_loop), 1, warm_up=lambda: naive_loop(1)).scaled(
        n_resamples / n_loop)
    return out


def row(name: str, ours: Timing, anchor_name: str, anchor: Timing, goal: float | None) -> str:
    verdict = "" if goal is None else ("met" if ours.wall <= goal else "MISSED")
    goal_text = "" if goal is None else f"<= {goal * 1e3:.0f} ms"
    speedup = anchor.wall / ours.wall
    return (f"{name:<40} {ours.wall * 1e3:>8.1f} {ours.best * 1e3:>8.1f} {ours.cpu * 1e3:>8.1f}   "
            f"{anchor_name:<38} {anchor.wall * 1e3:>9.1f}   {speedup:>7.1f}x   {goal_text:<10} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each (for a smoke run)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5

    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    ece_times = bench_ece_1m(repeats=max(repeats, 3) * 3)
    boot = bench_bootstrap_100k(repeats=repeats)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    workers = min(resampled.MAX_WORKERS, os.cpu_count() or 1)
    threads = ", ".join(f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if name in os.environ) or "none set"
    print(f"bench_metrics: {os.cpu_count()} CPUs, load average {load_before} before and {load} after, "
          f"numpy {np.__version__}; bootstrap on {workers} threads; thread variables: {threads}; times in ms")
    header = (f"{'ours':<40} {'median':>8} {'best':>8} {'cpu':>8}   {'anchor (median)':<38} {'median':>9}   "
              f"{'speedup':>8}   {'goal':<10}")
    print(header)
    print("-" * len(header))
    print(row("ECE, 1M questions", ece_times["ours"], "torchmetrics binary_calibration_error",
              ece_times["torchmetrics"], 0.010))
    print(row("ECE, 1M questions", ece_times["ours"], "  the same, validate_args=False",
              ece_times["torchmetrics_unchecked"], 0.010))
    print(row("metric set + 1000 bootstraps, 100k", boot["ours_full"], "torchmetrics ECE x 1000 (100 x 10)",
              boot["torchmetrics_ece_bootstrap"], 1.0))
    print(row("metric set + 1000 bootstraps, 100k", boot["ours_full"], "naive numpy loop (20 x 50 resamples)",
              boot["naive_numpy_loop"], None))
    points = boot["ours_points"]
    print(f"point estimates alone, 100k: median {points.wall * 1e3:.1f} ms, best {points.best * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
