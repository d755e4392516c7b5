"""One place for the checks every config repeats: a whole number at least N, a number in a range, one of a set.

Each returns the problem as one line (quoting the bad value and naming the flag) or ``None``, so a config's
``__post_init__`` can gather every problem and raise them together, or raise the first with ``require``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from first_eval.errors import InputError


def whole_number_problem(value: Any, flag: str, low: int = 1, optional: bool = False) -> str | None:
    """``"--top-k 0: must be a whole number >= 1"`` unless ``value`` is an int >= ``low`` (bools are not numbers);
    ``None`` passes when ``optional``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return f"{flag} {value!r}: must be a whole number >= {low}"
    return None


def number_problem(value: Any, flag: str, low: float = -math.inf, high: float = math.inf, *,
                   low_open: bool = False, high_open: bool = False, optional: bool = False) -> str | None:
    """A finite real number in [low, high] (``low_open``/``high_open`` exclude the ends); NaN and bools fail."""
    if optional and value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if ok:
        return None
    if high == math.inf and low > -math.inf:
        return f"{flag} {value!r}: must be a number {'>' if low_open else '>='} {low:g}"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{flag} {value!r}: must be a number in {left}{low:g}, {high:g}{right}"


def choice_problem(value: Any, flag: str, allowed: Iterable[Any]) -> str | None:
    """``"--prob-bits 12: must be 8 or 16"`` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value in allowed and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed)):
        return None
    names = [str(a) for a in allowed]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"{flag} {value!r}: must be {listed}"


def require(*problems: str | None) -> None:
    """Raise the given problems (``None`` entries are passes) as one InputError line, joined by '; '."""
    found = [problem for problem in problems if problem]
    if found:
        raise InputError("; ".join(found))
