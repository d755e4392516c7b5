"""The names in a ``first distill`` run folder and the report's row names, in one place.

Run folder::

    distill_config.json        the settings (a --resume with other settings is refused)
    teacher_temperature.json   T and the evidence for it (ECE before/after on the validation split)
    training.jsonl             the training pairs (when they come from --train-task)
    letter_tasks/              --format letters: the lettered task YAMLs and documents, lettered.json
    knowledge/<kind>/          knowledge stores (first_distill.store), one per kind the variants need
    students/                  train_config.json, train_result.json, <variant>/model (first_distill.train)
    audits/<model>/lm-eval/    lm-eval's files of one audited model; audit_done.json once finished
    report.html, metrics.json  the before/after comparison (or in --report-dir)
"""

from __future__ import annotations

from pathlib import Path

SCHEMA = "first.distill/1"  # of distill_config.json (the report's metrics.json has its own, distill_report.SCHEMA)
CONFIG_FILE = "distill_config.json"
TEMPERATURE_FILE = "teacher_temperature.json"
TRAINING_FILE = "training.jsonl"
LETTERED_FOLDER = "letter_tasks"
LETTERED_INDEX = "lettered.json"
KNOWLEDGE_FOLDER = "knowledge"
STUDENTS_FOLDER = "students"
AUDITS_FOLDER = "audits"
LM_EVAL_FOLDER = "lm-eval"
AUDIT_DONE = "audit_done.json"  # beside lm-eval's files of a finished audit
STUDENT_MODEL = "model"  # students/<variant>/model
REPORT_FILE = "report.html"

# Rows of the report besides the students: the teacher as audited, and the teacher with T on its choice scores.
TEACHER, TEACHER_TS = "teacher", "teacher+ts"


def store_folder(output: Path, kind: str) -> Path:
    return Path(output) / KNOWLEDGE_FOLDER / kind


def students_folder(output: Path) -> Path:
    return Path(output) / STUDENTS_FOLDER


def audit_folder(output: Path, model: str) -> Path:
    """Where one model's audit lives; lm-eval's files are in its ``lm-eval/`` sub-folder."""
    return Path(output) / AUDITS_FOLDER / model


def lettered_index(output: Path) -> Path:
    return Path(output) / LETTERED_FOLDER / LETTERED_INDEX


def finished_steps(output: Path) -> list[Path]:
    """The files that show a finished step of the run in ``output`` (T, a store, a student, an audit)."""
    from first_distill.store.manifest import MANIFEST_NAME

    output = Path(output)
    return [*[p for p in (output / TEMPERATURE_FILE,) if p.is_file()],
            *output.glob(f"{KNOWLEDGE_FOLDER}/*/{MANIFEST_NAME}"),
            *output.glob(f"{STUDENTS_FOLDER}/*/{STUDENT_MODEL}/config.json"),
            *output.glob(f"{AUDITS_FOLDER}/*/{LM_EVAL_FOLDER}/{AUDIT_DONE}")]
