"""Shared test set-up: offline Hugging Face, caches in a temp folder, paths to the shared real data; under CI
(``CI=true``) a skip for a missing tool (missing_tools.py) is a failure."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from missing_tools import MISSING_TOOL, in_ci, skip_missing_tool

_HF_HOME = tempfile.mkdtemp(prefix="first-tests-hf-")
os.environ.setdefault("HF_HOME", _HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

try:  # 2 cores shared by 2 xdist workers: one thread each (a tiny model's forward is ~100x faster)
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        skip_missing_tool(f"the real benchmark splits ({SHARED_DATASETS} not found)")
    return SHARED_DATASETS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a test skipped because a tool is missing fails instead, naming the tool."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci() and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    if MISSING_TOOL in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this test may not skip: {reason[reason.index(MISSING_TOOL):]}"
