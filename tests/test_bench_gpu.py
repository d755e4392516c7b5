"""``benchmarks/bench_gpu.py --device cpu --tiny``: the GPU benchmark runs end to end on a CPU with a tiny random Llama
and writes every figure (training tokens/s and MFU of ce and first, extraction against a bare forward, `first
report` against bare lm-eval) as a finite positive number. No time is asserted.

Slow: about 100 s on 2 loaded cores (two lm-eval processes, each importing torch and lm-eval); skipped without
../shared/datasets (the ARC-Easy task files the audit part reads).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks" / "bench_gpu.py"
FIGURES = {"extract_s", "bare_forward_s", "extract_over_bare", "train_ce_tokens_per_s", "train_ce_mfu",
           "train_first_tokens_per_s", "train_first_mfu", "train_first_over_ce", "first_report_s", "bare_lm_eval_s",
           "report_over_bare"}


def test_tiny_cpu_run_writes_every_figure(shared_datasets, tmp_path):
    out = tmp_path / "x.json"
    done = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--tiny", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    results = json.loads(out.read_text(encoding="utf-8"))
    figures = results["figures"]
    assert set(figures) == FIGURES
    for name, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (name, value)
    assert results["environment"]["torch"] and results["environment"]["device"] == "cpu"
    assert "extraction, top-5" in done.stdout and "MFU" in done.stdout and "first report" in done.stdout
