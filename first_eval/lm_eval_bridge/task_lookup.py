"""Find lm-eval task definitions by name and check that calibration can use them.

A task is defined by a YAML file (lm-eval's own under ``lm_eval/tasks/``, or one in an
``--include-path`` folder) that may ``include:`` other YAML files. ``TaskDefinition.config`` is the
merged result, read the way lm-eval reads it (included keys first, the file's own keys win),
with ``!function`` references kept as text: enough to learn the output type and the splits
without importing any task code.

Two ways to find a name:

- ``find_task_definitions`` scans YAML files for a ``task: NAME`` line (about 0.5 s for
  lm-eval's ~14,000 files), which ``--data-dir`` runs use so they need not build lm-eval's index;
  when that misses, it falls back to lm-eval's full ``TaskManager`` index (about 8 s) for
  group and tag names and for the "did you mean" list;
- ``task_definitions_from_manager`` looks names up in a ``TaskManager`` already built, expanding
  groups and tags into their tasks.

Calibration needs tasks whose ``output_type`` is ``multiple_choice`` (per-choice log-likelihoods);
``require_multiple_choice`` raises ``InputError`` for the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from first_eval.errors import InputError, did_you_mean

# lm-eval's TaskConfig default when a YAML sets no output_type.
DEFAULT_OUTPUT_TYPE = "generate_until"


@dataclass(frozen=True)
class TaskDefinition:
    """One lm-eval task as its YAML defines it.

    Attributes:
        name: the task name (``task:`` key).
        yaml_path: the YAML file that defines it (absolute).
        config: the merged config (includes resolved, ``!function`` kept as ``"!function mod.fn"``);
            empty for tasks defined in Python (``class:``), whose config cannot be read without running them.
        python_class: True for a Python-defined task (``class: !function ...``).
    """

    name: str
    yaml_path: Path
    config: dict[str, Any]
    python_class: bool = False

    @property
    def output_type(self) -> str | None:
        """lm-eval's ``output_type``; None when a Python class decides it."""
        if self.python_class:
            return None
        return str(self.config.get("output_type") or DEFAULT_OUTPUT_TYPE)


def builtin_tasks_dir() -> Path:
    """The installed ``lm_eval/tasks/`` folder (found without importing lm-eval)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise InputError("lm-eval is not installed; install it with: pip install 'lm-eval[hf]'")
    return Path(spec.origin).parent / "tasks"


def read_task_yaml(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """Load an lm-eval task YAML with its ``include:`` chain merged (as ``lm_eval.tasks._yaml_loader.load_yaml``).

    Included files are merged in order, then the file's own keys win; an included file's
    ``task_list`` is dropped. ``!function x.y`` values are returned as the text ``"!function x.y"``.

    Kept beside lm-eval's ``load_yaml(path, resolve_func=False)`` (equal otherwise, tests/first_eval/test_bridge_api.py)
    because that one writes ``!function x.y`` as the path ``<folder>/x.y``, losing the tag ``announce_task_code``
    looks for; it lives in ``lm_eval.tasks``, whose import takes seconds where this lookup needs none; and it
    reports an include cycle for two includes that share a base file.
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if path in _seen:
        raise InputError(f"{path}: 'include:' cycle through {', '.join(str(p) for p in sorted(_seen))}")
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_task_yaml_loader())  # noqa: S506 (safe loader + one tag)
    except OSError as error:
        raise InputError(f"{path}: cannot read task YAML ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: a task YAML must be a mapping, got {type(config).__name__}")
    includes = config.pop("include", None)
    if includes is None:
        return config
    merged: dict[str, Any] = {}
    for include in includes if isinstance(includes, list) else [includes]:
        include_path = Path(include) if Path(include).is_absolute() else path.parent / include
        included = read_task_yaml(include_path, _seen | {path})
        included.pop("task_list", None)
        merged.update(included)
    merged.update(config)
    return merged


def find_task_definitions(names: Iterable[str], include_paths: Iterable[Path] = ()) -> dict[str, list[TaskDefinition]]:
    """Each requested name -> the definitions of its tasks (one for a task; several for a group or tag).

    Searches ``include_paths`` (the last one first, as lm-eval lets later paths win) then lm-eval's
    own tasks with the fast ``task: NAME`` scan; a name it misses is looked up in lm-eval's full
    index, which raises ``InputError`` with "did you mean" for an unknown name and expands a group or tag.
    """
    names = list(dict.fromkeys(names))
    include_paths = [Path(p) for p in include_paths]
    roots = list(reversed(include_paths)) + [builtin_tasks_dir()]
    found = _scan_for_tasks(names, roots)
    missed = [name for name in names if name not in found]
    if missed:
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=[str(p) for p in include_paths] or None)
        found.update(task_definitions_from_manager(missed, manager))
    return {name: found[name] for name in names}


def task_definitions_from_manager(names: Iterable[str], manager: Any) -> dict[str, list[TaskDefinition]]:
    """Each requested name -> its task definitions from an lm-eval ``TaskManager`` (groups and tags expanded).

    Raises ``InputError`` for a name lm-eval does not know, with its closest matches.
    """
    index = manager.task_index
    definitions: dict[str, list[TaskDefinition]] = {}
    for name in dict.fromkeys(names):
        if name not in index:
            raise InputError(did_you_mean(name, list(manager.all_tasks), what="task"))
        definitions[name] = _unique(_leaf_definitions(name, index, depth=0))
    return definitions


def require_multiple_choice(definitions: dict[str, list[TaskDefinition]]) -> None:
    """Raise ``InputError`` unless every task is a plain multiple-choice task (one gold choice per question).

    Its ``output_type`` must be ``multiple_choice``, and it must not score with its own
    ``process_results`` (truthfulqa_mc2's probability mass on several true answers, bias tasks
    without a gold answer): the audit reads lm-eval's per-choice log-likelihoods against one gold
    index, which is what lm-eval's ``acc`` measures for such tasks. Python-defined tasks pass here
    (their type is known only once built).
    """
    for requested, tasks in definitions.items():
        for definition in tasks:
            via = f" (in {requested!r})" if requested != definition.name else ""
            output_type = definition.output_type
            if output_type is not None and output_type != "multiple_choice":
                raise InputError(f"calibration needs multiple-choice tasks; {definition.name}{via} is {output_type}")
            scorer = definition.config.get("process_results")
            if scorer:
                scorer_name = str(scorer).replace("!function ", "").rsplit("/", 1)[-1]
                raise InputError(
                    f"calibration needs multiple-choice tasks with one gold choice scored by lm-eval's acc; "
                    f"{definition.name}{via} scores with its own process_results ({scorer_name})"
                )


def _scan_for_tasks(names: list[str], roots: list[Path]) -> dict[str, list[TaskDefinition]]:
    """For each name, the first YAML (roots in order, then sorted path order as lm-eval's index) defining it."""
    if not names:
        return {}
    alternatives = b"|".join(re.escape(name.encode()) for name in names)
    line = re.compile(rb"^task:[ \t]*[\"']?(" + alternatives + rb")[\"']?[ \t]*(#.*)?$", re.MULTILINE)
    found: dict[str, list[TaskDefinition]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("**/*.yaml"), key=lambda p: p.as_posix()):
            if "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
                continue
            try:
                match = line.search(path.read_bytes())
                if match is None or match.group(1).decode() in found:
                    continue
                config = read_task_yaml(path)
            except (OSError, InputError):
                continue
            name = config.get("task")
            if name in names and name not in found and "group" not in config:
                found[name] = [_definition(name, path, config)]
        if len(found) == len(names):
            break
    return found


def _leaf_definitions(name: str, index: dict, depth: int) -> list[TaskDefinition]:
    if depth > 20:
        raise InputError(f"task group {name!r} nests more than 20 levels deep")
    entry = index[name]
    kind = _entry_kind(entry)
    yaml_path = _entry_yaml_path(entry)
    if kind == "TAG":
        children = sorted(getattr(entry, "tags", set()) or [])
        return [d for child in children if child in index for d in _leaf_definitions(child, index, depth + 1)]
    if kind == "GROUP":
        config = getattr(entry, "cfg", None) or (read_task_yaml(yaml_path) if yaml_path else {})
        members = config.get("task") or []
        leaves: list[TaskDefinition] = []
        for member in members if isinstance(members, list) else [members]:
            child = member if isinstance(member, str) else (member.get("task") if isinstance(member, dict) else None)
            if isinstance(member, dict) and "group" in member:
                child = member["group"]
            if isinstance(child, str) and child in index:
                leaves.extend(_leaf_definitions(child, index, depth + 1))
            elif isinstance(member, dict) and isinstance(child, str):
                leaves.append(_definition(child, Path(yaml_path or "."), member))
        return leaves
    if yaml_path is None:
        return [TaskDefinition(name=name, yaml_path=Path("."), config={}, python_class=True)]
    return [_definition(name, Path(yaml_path), read_task_yaml(Path(yaml_path)))]


def _definition(name: str, path: Path, config: dict[str, Any]) -> TaskDefinition:
    return TaskDefinition(name=name, yaml_path=Path(path).resolve(), config=config, python_class="class" in config)


def _entry_kind(entry: Any) -> str:
    """``TASK``/``PY_TASK``/``GROUP``/``TAG`` from an lm-eval index entry (an ``Entry`` in 0.4.13, a dict before)."""
    kind = getattr(entry, "kind", None)
    if kind is not None:
        return str(getattr(kind, "name", kind)).upper()
    raw = str(entry.get("type", "task")) if isinstance(entry, dict) else "task"
    return {"python_task": "PY_TASK"}.get(raw, raw.upper())


def _entry_yaml_path(entry: Any) -> Path | None:
    path = getattr(entry, "yaml_path", None)
    if path is None and isinstance(entry, dict):
        path = entry.get("yaml_path")
    if path in (None, -1, "-1"):
        return None
    return Path(path)


def _unique(definitions: list[TaskDefinition]) -> list[TaskDefinition]:
    seen: set[str] = set()
    unique = []
    for definition in definitions:
        if definition.name not in seen:
            seen.add(definition.name)
            unique.append(definition)
    return unique


def _task_yaml_loader():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class TaskYamlLoader(base):  # type: ignore[misc, valid-type]
        """Safe YAML plus lm-eval's ``!function`` tag, kept as text."""

    def function_tag(loader: Any, node: Any) -> str:
        return f"!function {loader.construct_scalar(node)}"

    TaskYamlLoader.add_constructor("!function", function_tag)
    return TaskYamlLoader
