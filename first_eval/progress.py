"""One progress mechanism for every long step of `first` (audits, extraction, training, the demo world): a rich bar
on stderr; and the switch that keeps third-party bars and repeated warnings quiet unless ``--verbose``.

    with progress_bar(total=n, description="extracting", unit="positions") as bar:
        for batch in batches:
            ...
            bar.advance(len(batch), note=f"loss {loss:.3f}")

The bar shows only on a terminal (in a pipe or a CI log there is nothing to redraw, and an error stays the only line
on stderr); ``enabled=False`` turns it off. ``quiet_third_party()`` silences lm-eval's, transformers', datasets' and
huggingface_hub's own progress bars and info logs, and warnings that repeat per model load, unless
``FIRST_VERBOSE=1`` (set by ``first --verbose``) asks for everything. lm-eval's request loops ask tqdm for a bar
explicitly; the bridge shows them as this module's bar instead (``lm_eval_bridge``).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Iterator

VERBOSE_ENV = "FIRST_VERBOSE"
# Loggers whose info lines would drown first's own output (lm-eval's are the bridge's: quiet_lm_eval_logging).
NOISY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "accelerate", "filelock", "urllib3", "fsspec",
                 "evaluate", "sqlitedict", "httpx")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


class ProgressHandle:
    """What a ``progress_bar`` yields: ``advance(n, note=...)`` and ``describe(text)``; no-ops when disabled."""

    def __init__(self, progress=None, job=None, unit: str = ""):
        self._progress, self._job, self._unit = progress, job, unit
        self._started = time.perf_counter()
        self.done = 0

    def advance(self, n: float = 1, note: str | None = None) -> None:
        self.done += n
        if self._progress is None:
            return
        rate = self.done / max(time.perf_counter() - self._started, 1e-9)
        fields = {"rate": f"{rate:,.1f} {self._unit}/s" if self._unit else ""}
        if note is not None:
            fields["note"] = note
        self._progress.update(self._job, advance=n, **fields)

    def describe(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._job, description=description)


@contextmanager
def progress_bar(total: float | None, description: str, unit: str = "", enabled: bool = True,
                 transient: bool = True) -> Iterator[ProgressHandle]:
    """A rich bar over ``total`` units (None: unknown, a spinner with elapsed time) on stderr; see the module doc."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield ProgressHandle()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("{task.description}"), BarColumn() if total else SpinnerColumn(),
               MofNCompleteColumn() if total else TextColumn(""), TextColumn(unit), TextColumn("{task.fields[rate]}"),
               TextColumn("{task.fields[note]}"), TimeRemainingColumn() if total else TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=transient) as progress:
        job = progress.add_task(description, total=total, rate="", note="")
        yield ProgressHandle(progress, job, unit)


# Each library's own switch, read when it is imported (so they work before any of them is): tqdm's default
# (lm-eval's request loops, the Trainer's bar), huggingface_hub's and transformers' bars (checkpoint and GGUF
# loading, "Writing model shards"), datasets' bars, transformers' info logs and advisory warnings.
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
             "TOKENIZERS_PARALLELISM": "false"}


def quiet_third_party() -> None:
    """Third-party bars, info logs and repeated warnings off for this process and its children, unless
    ``FIRST_VERBOSE=1`` (``first --verbose``). Called once at the start of the ``first`` command; a variable the
    user set already is left as it is."""
    if verbose():
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
