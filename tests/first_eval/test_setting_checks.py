"""The shared setting checks: hand-worked cases, the exact messages users see."""

import math

import pytest

from first_eval.errors import InputError
from first_eval.setting_checks import choice_problem, number_problem, require, whole_number_problem


@pytest.mark.parametrize("value", [0, -3, 1.0, "5", True, None, float("nan")])
def test_whole_number_refuses(value):
    assert whole_number_problem(value, "--top-k") == f"--top-k {value!r}: must be a whole number >= 1"


def test_whole_number_passes_and_optional():
    assert whole_number_problem(1, "--top-k") is None
    assert whole_number_problem(0, "--seed", low=0) is None
    assert whole_number_problem(None, "--limit", optional=True) is None


@pytest.mark.parametrize("value", [0.0, 1.5, math.nan, math.inf, True, "0.5"])
def test_number_in_open_unit_interval_refuses(value):
    assert number_problem(value, "--x", 0, 1, low_open=True) == f"--x {value!r}: must be a number in (0, 1]"


@pytest.mark.parametrize("value, message", [(0, "must be a number > 0"), (-1.5, "must be a number > 0"),
                                            (math.nan, "must be a number > 0")])
def test_one_sided_number_message(value, message):
    assert number_problem(value, "--lr", 0, low_open=True) == f"--lr {value!r}: {message}"
    assert number_problem(0, "--decay", 0) is None


def test_number_passes():
    assert number_problem(1, "--x", 0, 1, low_open=True) is None
    assert number_problem(0.25, "--x", 0, 1) is None
    assert number_problem(None, "--x", optional=True) is None


def test_choice():
    assert choice_problem(16, "--prob-bits", (8, 16)) is None
    assert choice_problem(12, "--prob-bits", (8, 16)) == "--prob-bits 12: must be 8 or 16"
    assert choice_problem(True, "--n", (1, 2)) == "--n True: must be 1 or 2"
    assert choice_problem("x", "--level", ("choice", "token")) == "--level 'x': must be choice or token"


def test_require_joins_every_problem():
    require(None, None)
    with pytest.raises(InputError, match=r"^--a 0: must be a whole number >= 1; --b 12: must be 8 or 16$"):
        require(whole_number_problem(0, "--a"), None, choice_problem(12, "--b", (8, 16)))
