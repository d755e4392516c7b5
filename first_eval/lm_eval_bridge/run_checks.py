"""Checks of a live lm-eval run's options, made before lm-eval builds a task or loads a model.

``check_run_options`` checks every setting of a ``LiveRunConfig`` that needs no lm-eval task (limits, batch size,
seed, folders, format, model type and folder, device, chat template); ``check_model_type`` looks ``--model`` up in
lm-eval's model registry; ``announce_task_code`` names, on stderr, the Python modules that an ``--include-path``
task's ``!function`` makes lm-eval import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from first_eval.errors import InputError, did_you_mean
from first_eval.input_checks import check_device, check_model_folder
from first_eval.lm_eval_bridge.lettered import check_format
from first_eval.lm_eval_bridge.offline import user_hf_home
from first_eval.lm_eval_bridge.task_lookup import TaskDefinition

MODELS_WITH_FOLDERS = ("hf", "hf-auto", "huggingface", "vllm", "sglang", "hf-multimodal", "vllm-vlm")


def check_run_options(config: Any) -> None:
    """Everything about ``config`` that can be checked without lm-eval: raises ``InputError``."""
    if not config.tasks:
        raise InputError("--tasks: no task given; name one or more lm-eval multiple-choice tasks, e.g. arc_easy")
    if config.limit is not None:
        if isinstance(config.limit, bool) or not isinstance(config.limit, (int, float)) or config.limit <= 0:
            raise InputError(f"--limit {config.limit!r}: must be a whole number >= 1 or a fraction in (0, 1)")
        if isinstance(config.limit, float) and config.limit >= 1 and not config.limit.is_integer():
            raise InputError(f"--limit {config.limit!r}: must be a whole number >= 1 or a fraction in (0, 1)")
    shots = config.num_fewshot
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
        raise InputError(f"--num-fewshot {config.num_fewshot!r}: must be a whole number >= 0")
    _check_batch_size(config.batch_size)
    if config.seed is not None and (isinstance(config.seed, bool) or not isinstance(config.seed, int)):
        raise InputError(f"--seed {config.seed!r}: must be a whole number")
    if config.include_path is not None and not config.include_path.is_dir():
        raise InputError(f"--include-path {config.include_path}: no such folder")
    if config.data_dir is not None and not config.data_dir.is_dir():
        raise InputError(f"--data-dir {config.data_dir}: no such folder")
    check_format(config.format)
    check_model_type(config.model)
    check_device(config.device)
    check_model(config.model, config.model_args)
    if config.apply_chat_template:
        check_chat_template(config.model, config.model_args)
    elif config.system_instruction is not None and not config.system_instruction.strip():
        raise InputError("--system-instruction is empty; give the text of the system message or leave the flag out")


def check_model_type(model: str) -> None:
    """``model`` is a model type lm-eval knows (``--model``), else ``InputError`` with "did you mean"."""
    import importlib

    from lm_eval.api.registry import model_registry

    try:
        importlib.import_module("lm_eval.models")  # registers the built-in types (lazy, ~0.3 s)
    except Exception:  # a broken optional backend must not hide the registry
        pass
    known = sorted(model_registry.keys())
    if model not in known:
        raise InputError("--model: " + did_you_mean(model, known, what="lm-eval model type"))


def check_chat_template(model: str, model_args: str) -> None:
    """``--apply-chat-template`` needs a model whose tokenizer has a chat template (read without loading weights)."""
    if model not in MODELS_WITH_FOLDERS:
        return
    from transformers import AutoTokenizer

    args = parse_model_args(model_args)
    gguf = {"gguf_file": args["gguf_file"]} if args.get("gguf_file") else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(Path(args["pretrained"]).expanduser()), **gguf)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError ... for an unusable folder
        raise InputError(f"--model-args pretrained={args['pretrained']}: cannot load its tokenizer to read its chat "
                         f"template ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--apply-chat-template: the model {args['pretrained']} has no chat template (its tokenizer "
                         "defines none); leave the flag out for a base model")


def check_model(model: str, model_args: str) -> None:
    """A model type with a ``pretrained=`` folder must point at one (config.json, or the named gguf file)."""
    args = parse_model_args(model_args)
    pretrained = args.get("pretrained")
    if model not in MODELS_WITH_FOLDERS:
        return
    if not pretrained:
        raise InputError(f"--model-args {model_args!r}: needs pretrained=MODEL_FOLDER for --model {model}")
    folder = Path(pretrained).expanduser()
    gguf_file = args.get("gguf_file")
    where = f"--model-args pretrained={pretrained}"
    if folder.is_file():
        hint = f"; for a GGUF file pass pretrained={folder.parent},gguf_file={folder.name}" if folder.suffix == ".gguf" else ""
        raise InputError(f"{where}: {folder} is a file, not a model folder{hint}")
    if not folder.exists():
        if _looks_like_hub_id(pretrained) and user_hf_home() is not None:
            return  # offline, transformers resolves it from the user's HF_HOME cache
        raise InputError(f"{where}: {folder} is not a model folder (no such folder; runs are offline, so the model must be on disk)")
    if gguf_file:
        if not (folder / gguf_file).is_file():
            raise InputError(f"--model-args gguf_file={gguf_file}: {folder / gguf_file} not found")
        check_model_folder(folder, gguf_file, flag="--model-args pretrained")
        return
    if not (folder / "config.json").is_file():
        ggufs = sorted(p.name for p in folder.glob("*.gguf"))
        hint = f"; it holds {ggufs[0]}: add gguf_file={ggufs[0]}" if ggufs else ""
        raise InputError(f"{where}: {folder} is not a model folder (no config.json){hint}")
    trust = args.get("trust_remote_code", "").lower() in ("true", "1", "yes")
    check_model_folder(folder, trust_remote_code=trust, flag="--model-args pretrained")


def parse_model_args(model_args: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}``, split as lm-eval's ``simple_parse_args_string`` splits it."""
    parsed: dict[str, str] = {}
    for item in (model_args or "").strip().split(","):
        if not item:
            continue
        key, _, value = item.partition("=")
        parsed[key.strip()] = value.strip()
    return parsed


def _check_batch_size(batch_size: int | str) -> None:
    text = str(batch_size)
    if isinstance(batch_size, bool):
        raise InputError(f"--batch-size {batch_size!r}: must be a whole number >= 1, 'auto' or 'auto:N'")
    if text.isdigit() and int(text) >= 1:
        return
    if text == "auto" or (text.startswith("auto:") and text[5:].isdigit() and int(text[5:]) >= 1):
        return
    raise InputError(f"--batch-size {batch_size!r}: must be a whole number >= 1, 'auto' or 'auto:N'")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def announce_task_code(definitions: Sequence[TaskDefinition], folder: Path) -> None:
    """One line on stderr per ``!function`` module a task YAML of ``folder`` makes lm-eval import and run.

    lm-eval imports the Python file next to a task YAML that says ``!function utils.process_docs``; that is its
    normal behaviour, but a user auditing someone else's task folder should see it before it happens."""
    import sys

    root = folder.expanduser().resolve()
    for definition in definitions:
        if definition.yaml_path is None or not Path(definition.yaml_path).resolve().is_relative_to(root):
            continue
        functions = sorted({value.removeprefix("!function ").strip() for value in _strings(definition.config)
                            if value.startswith("!function ")})
        for function in functions:
            module = Path(definition.yaml_path).parent / (function.rsplit(".", 1)[0] + ".py")
            print(f"note: task {definition.name} runs Python code: {function} from {module} (lm-eval's !function)",
                  file=sys.stderr)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []
