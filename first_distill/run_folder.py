"""The one rule every resumable run folder follows (``first distill``, ``first_distill.train``).

A folder holds one run, recorded by a settings file written before the work starts. Starting a run in a
folder that already holds one needs ``--resume``; resuming with other settings is refused, naming each
setting that differs; a non-empty folder without a settings file is never written into.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from first_eval.errors import InputError


def check_run_folder(output: Path, config_file: str, current: dict[str, Any], resume: bool,
                     free_fields: Iterable[str], what: str) -> bool:
    """``InputError`` unless ``output`` may hold this run; True when it already does (a valid ``--resume``).

    ``current``: this run's settings as JSON-able values; ``free_fields``: settings a resume may change;
    ``what``: the kind of run, for messages ("distill run", "training run").
    """
    config_path = output / config_file
    if config_path.is_file():
        if not resume:
            raise InputError(f"--output {output} already holds a {what} ({config_file}); pass --resume to continue "
                             "it or choose another folder")
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{config_path} is unreadable ({error}); cannot --resume this run") from None
        free = set(free_fields)
        differing = [key for key in sorted(set(saved) | set(current))
                     if key not in free and saved.get(key) != current.get(key)]
        if differing:
            detail = ", ".join(f"{key} (saved {saved.get(key)!r}, now {current.get(key)!r})" for key in differing)
            raise InputError(f"--resume: the run in {output} was started with other settings: {detail}; resume "
                             "with the same settings or choose a new --output")
        return True
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output}: is a file, not a folder")
    if output.is_dir() and any(output.iterdir()):
        raise InputError(f"--output {output} is not empty and holds no {what}; choose an empty or new folder")
    return False


def config_json(config: Any, schema: str, flatten: str | None = None) -> dict[str, Any]:
    """A run's settings dataclass as the JSON its settings file holds: paths resolved, tuples as lists, a field
    with ``to_dict()`` as its dict, a mapping's paths resolved too (``flatten``: that field's keys at the top level instead)."""
    import dataclasses

    document: dict[str, Any] = {"schema": schema}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if hasattr(value, "to_dict"):
            if item.name == flatten:
                document.update(value.to_dict())
                continue
            value = value.to_dict()
        elif isinstance(value, Path):
            value = str(value.expanduser().resolve())
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):  # e.g. TrainConfig.stores: {kind: folder}
            value = {key: str(Path(v).expanduser().resolve()) if isinstance(v, Path) else v for key, v in value.items()}
        document[item.name] = value
    return json.loads(json.dumps(document))
