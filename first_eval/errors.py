"""User-facing errors: problems with what the user gave us (files, flags, models), not bugs.

The CLI prints ``str(error)`` as one line and exits with code 2. Messages name the file, line,
field or flag, and quote the bad value.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user; the message is one self-contained line."""


def did_you_mean(name: str, known: list[str] | tuple[str, ...], what: str = "name") -> str:
    """"Unknown task 'arc_esay'. Did you mean 'arc_easy'? Available: ..." (lm-eval registry style)."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if len(known) > 30:  # e.g. lm-eval's ~15k task names: a list would drown the hint
        return f"unknown {what} {name!r}.{hint}" + ("" if close else f" ({len(known)} known; check the spelling)")
    return f"unknown {what} {name!r}.{hint} Available: {', '.join(sorted(known))}"
