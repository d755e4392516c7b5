"""lm-eval task objects built from task folders, every way a build can fail turned into one ``InputError``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from first_eval.errors import InputError


def load_task_objects(names: Sequence[str], include_paths: Sequence[Path], include_defaults: bool,
                      failure: str, hint: str) -> dict[str, Any]:
    """``{name: lm-eval task}`` for ``names``, indexed from ``include_paths`` (plus lm-eval's own tasks when
    ``include_defaults``). lm-eval's warnings while building are hidden; an error becomes ``InputError``
    ``"{failure} ({type}: {detail}); {hint}"``."""
    from lm_eval.tasks import TaskManager

    lm_eval_logger = logging.getLogger("lm_eval")
    level = lm_eval_logger.level
    lm_eval_logger.setLevel(logging.ERROR)
    try:
        manager = TaskManager(include_path=[str(p) for p in include_paths] or None, include_defaults=include_defaults)
        loaded = manager.load(list(names))["tasks"]
    except InputError:
        raise
    except Exception as error:  # lm-eval and datasets raise many types; all mean "this task cannot be built"
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise InputError(f"{failure} ({type(error).__name__}: {detail}); {hint}") from None
    finally:
        lm_eval_logger.setLevel(level)
    return {name: task for name, task in loaded.items() if name in names}
