"""What ``first distill`` checks before anything runs, beyond the settings themselves: files and folders, the
tasks (known, multiple choice), the models (loadable, one tokenizer) and the chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from first_distill.distill_config import DistillConfig
from first_eval.errors import InputError


def check_inputs(config: DistillConfig) -> None:
    """Every problem with the files and folders a run names, found before anything runs, as one InputError line
    (the settings themselves were checked when the config was built: ``DistillConfig.problems``)."""
    from first_eval.input_checks import check_device, check_output_folder

    problems = []
    if config.train is not None and not Path(config.train).expanduser().is_file():
        problems.append(f"--train {config.train}: no such file")
    elif config.train is not None:
        from first_distill.training_data import read_training_jsonl

        try:
            read_training_jsonl(config.train)  # refused before anything runs, not after T was fitted
        except InputError as error:
            problems.append(str(error))
    if config.calibrators_from is not None:
        from first_distill.teacher.teacher_temperature import temperature_from_calibrators

        tasks = config.calibration_tasks or config.train_tasks
        try:
            temperature_from_calibrators(config.calibrators_from, tasks[0] if len(tasks) == 1 else None)
        except InputError as error:
            problems.append(str(error))
    for check in (lambda: check_output_folder(config.output, "--output"),
                  lambda: config.report_dir is None or check_output_folder(config.report_dir, "--report-dir"),
                  lambda: check_device(config.device)):
        try:
            check()
        except InputError as error:
            problems.append(str(error))
    for flag, folder in (("--data-dir", config.data_dir), ("--include-path", config.include_path)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            problems.append(f"{flag} {folder}: no such folder")
    if problems:
        raise InputError("; ".join(problems))


def check_tasks(config: DistillConfig) -> None:
    """Every eval/train/calibration task exists and is multiple choice (did-you-mean for unknown names)."""
    from first_eval.lm_eval_bridge import find_task_definitions, require_multiple_choice

    include = [Path(config.include_path).expanduser()] if config.include_path is not None else []
    names = list(dict.fromkeys(config.eval_tasks + config.train_tasks + config.calibration_tasks))
    require_multiple_choice(find_task_definitions(names, include))


def check_models(config: DistillConfig) -> None:
    """Teacher and student load as model folders and share one tokenizer (same vocabulary, same ids)."""
    from first_distill.model_folders import check_same_tokenizer, locate_model, tokenizer_identity

    from first_eval.input_checks import check_model_folder

    locations = {flag: locate_model(path, flag) for flag, path in (("--teacher", config.teacher),
                                                                      ("--student", config.student))}
    for flag, location in locations.items():
        check_model_folder(location.folder, location.gguf_file, flag=flag)
    teacher = tokenizer_identity(locations["--teacher"], "--teacher")
    check_same_tokenizer(teacher, tokenizer_identity(locations["--student"], "--student"),
                         f"--teacher {config.teacher}, --student {config.student}")
    if config.top_k > teacher[0]:
        raise InputError(f"--top-k {config.top_k}: above the teacher's vocabulary of {teacher[0]} tokens")
    if config.apply_chat_template:
        chat_tokenizer(config)


def chat_tokenizer(config: DistillConfig) -> Any:
    """With ``apply_chat_template``: the teacher's tokenizer, whose chat template renders every prompt; else None."""
    from first_distill.model_folders import load_tokenizer, locate_model

    if not config.apply_chat_template:
        return None
    tokenizer = load_tokenizer(locate_model(config.teacher, "--teacher"), "--teacher")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--apply-chat-template: the teacher {config.teacher} has no chat template (its tokenizer "
                         "defines none); leave the flag out for a base model")
    return tokenizer
