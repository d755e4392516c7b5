"""Measure the calibration story of a built world: Bayes vs base models vs teacher vs teacher + TS.

For every task, each model's test questions are scored like lm-eval's ``acc`` (summed answer
log-likelihoods, softmax over the choices, see ``scoring.py``); the teacher's temperature is fitted
by NLL on the *in-domain* validation split of the same task family's in-domain task (so an OOD row
shows how the in-domain temperature transfers) and, for reference, on the task's own validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

from first_distill.demo.calibration_check import CalibrationSummary, fit_temperature, summarize
from first_distill.demo.scoring import bayes_choice_scores, choice_loglikelihoods
from first_distill.demo.world import DemoWorld

PREDICTORS = ("bayes", "student_base", "teacher_base", "teacher", "teacher_ts")


@dataclass(frozen=True)
class TaskCalibration:
    """One task's rows (``PREDICTORS`` -> summary on ``split``) and the teacher's fitted temperature."""

    task: str
    split: str
    rows: dict[str, CalibrationSummary]
    teacher_temperature: float

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "split": self.split,
            "teacher_temperature": self.teacher_temperature,
            "rows": {name: row.to_dict() for name, row in self.rows.items()},
        }


def _in_domain_partner(world: DemoWorld, task: str) -> str:
    """The in-domain task of the same family (``first_demo_boolq_ood`` -> ``first_demo_boolq``)."""
    partner = task.removesuffix("_ood")
    return partner if partner in world.in_domain_tasks else task


def measure_world(world: DemoWorld, split: str = "test", tasks: tuple[str, ...] | None = None) -> list[TaskCalibration]:
    """Calibration rows of every predictor on ``split`` of ``tasks`` (default: all tasks of the world)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tasks = tasks or world.tasks
    tokenizer = AutoTokenizer.from_pretrained(str(world.tokenizer_dir))
    models = {
        name: AutoModelForCausalLM.from_pretrained(str(path)).eval()
        for name, path in (
            ("student_base", world.student_base_dir),
            ("teacher_base", world.teacher_base_dir),
            ("teacher", world.teacher_dir),
        )
    }
    results = []
    with torch.no_grad():
        temperatures: dict[str, float] = {}
        for task in tasks:
            partner = _in_domain_partner(world, task)
            if partner not in temperatures:
                validation = choice_loglikelihoods(models["teacher"], tokenizer, world.questions(partner, "validation"))
                temperatures[partner] = fit_temperature(validation)
            questions = world.questions(task, split)
            rows = {"bayes": summarize(bayes_choice_scores(questions))}
            for name, model in models.items():
                rows[name] = summarize(choice_loglikelihoods(model, tokenizer, questions))
            teacher_scores = choice_loglikelihoods(models["teacher"], tokenizer, questions)
            rows["teacher_ts"] = summarize(teacher_scores, temperatures[partner])
            results.append(TaskCalibration(task, split, rows, temperatures[partner]))
    return results


def format_table(results: list[TaskCalibration]) -> str:
    """A plain-text table: task, predictor, accuracy, mean confidence, ECE, NLL."""
    lines = [f"{'task':24s} {'predictor':13s} {'acc':>6s} {'conf':>6s} {'ece':>6s} {'nll':>6s}"]
    for result in results:
        for name in PREDICTORS:
            row = result.rows[name]
            label = f"{name} (T={result.teacher_temperature:.2f})" if name == "teacher_ts" else name
            lines.append(f"{result.task:24s} {label:13s} {row.accuracy:6.3f} {row.mean_confidence:6.3f} {row.ece:6.3f} {row.nll:6.3f}")
    return "\n".join(lines)
