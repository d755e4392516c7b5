"""`first demo`: build (or reuse) the demo world, audit its models with lm-eval, write one comparison.

The story it shows (the first half of FIRST): a base model pretrained on the world's text is roughly
calibrated; the teacher, fine-tuned on a small train split until it memorises sampled labels, is
over-confident; temperature scaling fitted on the teacher's in-domain *validation* split repairs it,
in-domain and (partly) out-of-domain. The Bayes-optimal predictor of the world is audited beside
them: its numbers are the best any model can reach on these questions.

Outputs in ``output``: ``report.html`` + ``metrics.json`` (the comparison), ``audits/<model>/`` (one
``first report`` folder per model, with lm-eval's own files under ``lm-eval/``), the cached world.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from first_eval.audit import AuditConfig, audit_task
from first_eval.lm_eval_bridge.samples import TaskSamples
from first_eval.scores import ChoiceScores

BAYES = "bayes-optimal"


@dataclass(frozen=True)
class DemoRunConfig:
    output: Path
    seed: int = 0
    n_bootstrap: int = 1000
    batch_size: int = 32
    progress: bool = True
    world_config: Any = None  # a demo WorldConfig; None: the default world (WorldConfig.mini() in tests)


def validation_task_yamls(world, out_dir: Path) -> dict[str, str]:
    """For each in-domain task T, a task ``T_validation`` = T's YAML with the validation split as the eval split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for task in world.in_domain_tasks:
        name = f"{task}_validation"
        source = Path(world.task_dir) / f"{task}.yaml"
        (out_dir / f"{name}.yaml").write_text(
            f"include: {json.dumps(str(source))}\ntask: {name}\ntest_split: null\n", encoding="utf-8"
        )
        names[task] = name
    return names


def ood_counterpart(ood_task: str, in_domain_tasks: tuple[str, ...]) -> str:
    """The in-domain task whose calibration an out-of-domain variant inherits (longest shared prefix)."""
    return max(in_domain_tasks, key=lambda task: len(_common_prefix(task, ood_task)))


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def tempered(samples: TaskSamples, temperature: float) -> TaskSamples:
    """The same questions with every choice score divided by ``temperature`` (a fixed, pre-fitted T)."""
    return dataclasses.replace(samples, loglik_sums=samples.loglik_sums / temperature, source=f"{samples.source} / T={temperature:.4g}")


def bayes_task_samples(world, task: str) -> TaskSamples:
    """The world's exact Bayes posterior on ``task``'s test split, audited as if a model had scored it."""
    questions = world.questions(task, "test")
    probs = [np.clip(np.asarray(q.bayes_probs, dtype=float), 1e-12, 1.0) for q in questions]
    counts = np.array([len(p) for p in probs])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TaskSamples(
        task=task, source=f"{world.split_files[task]['test']} (Bayes posterior)", loglik_sums=np.log(np.concatenate(probs)),
        char_lengths=None, offsets=offsets, gold=np.array([q.label for q in questions], dtype=np.int64),
        doc_ids=np.arange(len(questions)), recorded={},
    )


def run_demo(config: DemoRunConfig) -> Path:
    """Build/reuse the world, audit every model, write the comparison; returns the report path."""
    import torch

    from first_distill.demo.build import build_world
    from first_eval.compare import ModelAudit, write_comparison
    from first_eval.lm_eval_bridge.live import LiveRunConfig, run_lm_eval
    from first_eval.report import ReportMeta, metrics_document, write_report

    output = Path(config.output)
    world = build_world(output, seed=config.seed, progress=config.progress, config=config.world_config)
    audit_config = AuditConfig(n_bootstrap=config.n_bootstrap, seed=config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the demo models are tiny: one thread beats two by a wide margin
    try:
        val_dir = output / "validation_tasks"
        validation_names = validation_task_yamls(world, val_dir)
        eval_tasks = tuple(world.in_domain_tasks) + tuple(world.ood_tasks)

        def live(model_dir: Path, tasks, include: Path, name: str) -> list[TaskSamples]:
            run = run_lm_eval(LiveRunConfig(
                tasks=list(tasks), output_dir=output / "audits" / name / "lm-eval", model="hf",
                model_args=f"pretrained={model_dir}", include_path=include, batch_size=config.batch_size,
                device="cpu", seed=config.seed,
            ))
            return list(run.task_samples)

        samples_by_model = {
            name: live(Path(model_dir), eval_tasks, Path(world.task_dir), name)
            for name, model_dir in (("student-base", world.student_base_dir), ("teacher-base", world.teacher_base_dir),
                                    ("teacher", world.teacher_dir))
        }
        # Trustworthy teacher: T fitted on the in-domain validation split, applied unchanged to the test splits.
        task_of_validation = {validation: task for task, validation in validation_names.items()}
        temperatures = {
            task_of_validation[samples.task]: fit_temperature(samples.choice_scores("sum"))
            for samples in live(Path(world.teacher_dir), validation_names.values(), val_dir, "teacher-validation")
        }
        samples_by_model["teacher+ts"] = [
            tempered(samples, temperatures.get(samples.task) or temperatures[ood_counterpart(samples.task, tuple(world.in_domain_tasks))])
            for samples in samples_by_model["teacher"]
        ]
        samples_by_model[BAYES] = [bayes_task_samples(world, task) for task in eval_tasks]
        models = {name: [audit_task(samples, audit_config) for samples in task_samples]
                  for name, task_samples in samples_by_model.items()}
    finally:
        torch.set_num_threads(threads)

    command = "first " + shlex.join(sys.argv[1:])
    documents = {}
    for name, audits in models.items():
        meta = ReportMeta(title=f"demo world: {name}", model=name, command=command)
        write_report(audits, output / "audits" / name, meta)
        documents[name] = metrics_document(audits, meta)["tasks"]
    model_audits = [ModelAudit(name, str(output / "audits" / name), tasks) for name, tasks in documents.items()]
    write_comparison(
        model_audits, output, title="first demo: tuning-induced over-confidence and temperature scaling",
        baseline="teacher", command=command, notes=story(world, temperatures),
        extra={"demo": {
            "world": str(world.root), "seed": world.seed,
            "teacher_temperature": {"source": "fitted by NLL on the teacher's in-domain validation split; OOD tasks reuse "
                                              "their in-domain task's T", "values": temperatures},
            "bayes_reference": world.bayes,
        }},
    )
    return output / "report.html"


def story(world, temperatures: dict[str, float]) -> list[str]:
    """The paragraphs at the top of the demo report: what the world is and how to read the rows."""
    fitted = ", ".join(f"{task}: T = {value:.2f}" for task, value in temperatures.items())
    return [
        "A seeded toy world: made-up entities, each with a known probability distribution over attribute values. "
        "Every question's gold answer is drawn from that distribution, so the Bayes posterior of each question is known "
        f"exactly; the {BAYES} rows are that posterior audited like a model, the best calibration any model can reach here.",
        "student-base and teacher-base are small Llama models pretrained on the world's text; the teacher is teacher-base "
        "fine-tuned for several epochs on the in-domain train splits until it memorises sampled labels: tuning-induced "
        f"over-confidence. In-domain tasks: {', '.join(world.in_domain_tasks)}; out-of-domain: {', '.join(world.ood_tasks)}.",
        f"teacher+ts divides the teacher's scores by a temperature fitted on the in-domain validation split ({fitted}) and "
        "applies it unchanged to the test splits; out-of-domain tasks reuse their in-domain task's T. 'fitted T' and "
        "'ECE after T' in the table are a separate, cross-fitted temperature fitted on each test split itself.",
    ]


def fit_temperature(scores: ChoiceScores) -> float:
    import warnings

    from first_eval.calibrators import TemperatureScaling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an at-bound fit is still the NLL-best temperature in range
        return float(TemperatureScaling().fit(scores).temperature_)
