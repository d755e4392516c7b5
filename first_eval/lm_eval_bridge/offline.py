"""An offline Hugging Face environment for one lm-eval run, and quieter lm-eval logging.

``offline_hf(hf_home)`` sets, for the duration of a ``with`` block:

- ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``: no library tries the network;
- ``HF_HOME=hf_home`` unless the user set ``HF_HOME`` (their cache, with any models and datasets in it,
  is then used); ``HF_DATASETS_CACHE`` follows ``HF_HOME`` unless the user set it.

``huggingface_hub`` and ``datasets`` read these variables once, when first imported. When they were
imported before the block (by a caller, or an earlier run in the same process), their module-level
copies are set too, and restored afterwards, so the block is offline whatever the import order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# Loggers whose INFO lines (task lists, seeds, "Building contexts ...") we hide unless verbose.
NOISY_LOGGERS = ("lm_eval", "lm-eval")


def user_hf_home() -> Path | None:
    """The user's ``HF_HOME`` when set, else None."""
    value = os.environ.get("HF_HOME")
    return Path(value).expanduser() if value else None


@contextlib.contextmanager
def offline_hf(hf_home: Path) -> Iterator[Path]:
    """Run the block offline with Hugging Face caches under ``hf_home`` (or the user's ``HF_HOME``); yields the one in use."""
    home = user_hf_home() or Path(hf_home)
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    wanted = {name: "1" for name in OFFLINE_VARIABLES}
    wanted["HF_HOME"] = str(home)
    wanted["HF_DATASETS_CACHE"] = str(datasets_cache)
    saved_env = {name: os.environ.get(name) for name in wanted}
    saved_attrs: list[tuple[object, str, object]] = []

    def set_attr(module_name: str, attribute: str, value: object) -> None:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            saved_attrs.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, value)

    os.environ.update(wanted)
    set_attr("huggingface_hub.constants", "HF_HUB_OFFLINE", True)
    set_attr("datasets.config", "HF_HUB_OFFLINE", True)
    set_attr("datasets.config", "HF_DATASETS_OFFLINE", True)
    set_attr("datasets.config", "HF_DATASETS_CACHE", datasets_cache)
    try:
        yield home
    finally:
        for module, attribute, value in reversed(saved_attrs):
            setattr(module, attribute, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def quiet_lm_eval_logging(verbose: bool) -> Iterator[None]:
    """Raise lm-eval's loggers to WARNING for the block; ``verbose`` (or ``first --verbose``) shows its INFO lines
    and its own bars instead (lm-eval's format).

    Quiet, lm-eval's request loop shows as first's one progress bar (first_eval.progress) instead of its tqdm bar,
    its per-document "building contexts" bar is dropped, and the datasets library's bars for reading the task
    files are hidden.
    """
    from first_eval.progress import verbose as verbose_env

    if verbose or verbose_env():
        from lm_eval.utils import setup_logging

        setup_logging(logging.INFO)
        yield
        return
    import sys

    import lm_eval.api.model  # noqa: F401  (the modules whose tqdm is replaced below)
    import lm_eval.api.task  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401  (imported here so its tqdm is replaced too)
    import tqdm as tqdm_module
    from datasets.utils import logging as datasets_logging

    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    # lm-eval warns once per task per run that num_fewshot 0 overrides a default of None: first always asks for 0.
    evaluator_logger = logging.getLogger("lm_eval.evaluator")
    evaluator_logger.addFilter(_drop_repeated_warnings)
    # "Generating train split: 100 examples" bars of local JSON files: noise, not progress on long work
    bars_were_on = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    # Every loaded lm-eval module that took tqdm's class by name (api.model's "Tokenizing inputs", api.task's
    # "Building contexts", the model's request loops).
    patched = [module for name, module in list(sys.modules.items())
               if name.startswith("lm_eval") and getattr(module, "tqdm", None) is tqdm_module.tqdm]
    for module in patched:
        module.tqdm = FirstBar
    try:
        yield
    finally:
        evaluator_logger.removeFilter(_drop_repeated_warnings)
        for module in patched:
            module.tqdm = tqdm_module.tqdm
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars_were_on:
            datasets_logging.enable_progress_bar()


def _drop_repeated_warnings(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Overwriting default num_fewshot")


class FirstBar:
    """What lm-eval's code asks tqdm for, served by first's progress bar: a bar with a ``total`` (the request
    loops: ``update``, ``close``) shows as ``lm-eval: <desc>``; a wrapped iterable (building contexts) passes
    through silently."""

    def __init__(self, iterable=None, total=None, disable=False, desc=None, **_ignored):
        self.iterable = iterable
        self._bar = self._handle = None
        if iterable is None and total and not disable:
            from first_eval.progress import progress_bar

            description = f"lm-eval: {(desc or 'requests').lower()}"
            self._bar = progress_bar(total, description, unit="requests")
            self._handle = self._bar.__enter__()

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        if self._handle is not None:
            self._handle.advance(n)

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def close(self):
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
