"""Step 4 of ``first distill``: every model of the run audited on the eval tasks with lm-eval and the calibration
core; a finished audit is read back from its samples files, never run twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from first_distill.distill_config import DistillConfig
from first_distill.run_layout import AUDIT_DONE, LM_EVAL_FOLDER, TEACHER, TEACHER_TS, audit_folder
from first_distill.store.manifest import write_json_atomically


def model_samples(config: DistillConfig, output: Path, name: str, model_dir: Path) -> list:
    """lm-eval's samples of one model on the eval tasks. A finished audit of this run (``AUDIT_DONE`` beside
    lm-eval's files) is read back from its samples files instead of run again, so a --resume redoes no audit
    and the folder keeps one set of files that ``first report --samples`` can re-audit."""
    from first_distill.model_folders import locate_model
    from first_eval.lm_eval_bridge import LiveRunConfig, read_samples_path, run_lm_eval

    folder = audit_folder(output, name) / LM_EVAL_FOLDER
    done = folder / AUDIT_DONE
    if done.is_file():
        paths = json.loads(done.read_text(encoding="utf-8"))["samples_paths"]
        return [samples for path in paths.values() for samples in read_samples_path(Path(path))]
    shutil.rmtree(folder, ignore_errors=True)  # an audit a kill interrupted
    location = locate_model(model_dir, f"model {name}")
    run = run_lm_eval(LiveRunConfig(
        tasks=config.eval_tasks, output_dir=folder, model="hf", model_args=location.lm_eval_model_args("float32"),
        include_path=config.include_path, data_dir=config.data_dir, num_fewshot=0, limit=config.eval_limit,
        batch_size=config.eval_batch_size, device=config.device, seed=config.settings.seed,
        apply_chat_template=config.apply_chat_template, system_instruction=config.system_instruction))
    write_json_atomically(done, {"samples_paths": {task: str(path) for task, path in run.samples_paths.items()}})
    return list(run.task_samples)


def audit_models(config: DistillConfig, output: Path, model_dirs: Mapping[str, Path], temperature: Any,
                 reference_samples: Mapping[str, Sequence[Any]] | None = None) -> dict[str, list]:
    """Step 4: {model name: [TaskAudit per eval task]}; lm-eval runs once per model, ``teacher+ts`` reuses the
    teacher's samples with T applied to the choice scores."""
    from first_eval.audit import AuditConfig, audit_task

    audit_config = AuditConfig(n_bootstrap=config.n_bootstrap, seed=config.settings.seed)
    samples_by_model: dict[str, list] = {}
    for name, model_dir in model_dirs.items():
        samples_by_model[name] = model_samples(config, output, name, model_dir)
        if name == TEACHER and temperature.enabled:
            samples_by_model[TEACHER_TS] = [samples.tempered(temperature.value) for samples in samples_by_model[name]]
    for name, samples in (reference_samples or {}).items():
        samples_by_model[name] = list(samples)
    return {name: [audit_task(samples, audit_config) for samples in task_samples]
            for name, task_samples in samples_by_model.items()}
