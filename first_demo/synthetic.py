"""Synthetic lm-eval samples whose true calibration is known (the built-in ``--samples`` demo and tests).

Each question has latent "true" logits ``z`` (Gaussian); the gold answer is drawn from
``softmax(z)``, so a model reporting ``softmax(z)`` is perfectly calibrated by construction. The
synthetic model reports log-likelihoods ``log softmax(z * sharpness)``: ``sharpness > 1`` mimics a
fine-tuned, over-confident model and the NLL-optimal temperature is then ``sharpness`` itself.
A ``length_penalty`` subtracts ``penalty * len(choice)`` from each summed log-likelihood, mimicking
how longer answers get lower summed scores; lm-eval's ``acc_norm`` (divide by length) undoes part of it.

Records are written the way lm-eval's EvaluationTracker saves them (stringified responses/targets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WORDS = (
    "red", "blue", "green", "amber", "violet", "north", "south", "river", "forest", "desert", "copper", "silver",
    "granite", "marble", "falcon", "otter", "maple", "cedar", "winter", "summer", "harbor", "meadow", "canyon", "glacier",
)


@dataclass(frozen=True)
class SyntheticTask:
    """A synthetic multiple-choice task with a planted miscalibration."""

    name: str
    n_questions: int
    n_choices: tuple[int, ...]  # each question draws its number of choices from these
    sharpness: float  # the reported logits are z * sharpness; the ideal temperature equals it
    length_penalty: float = 0.0  # nats subtracted per character of a choice
    logit_scale: float = 1.5  # spread of the true logits (how easy the task is)

    def records(self, seed: int) -> list[dict]:
        rng = np.random.default_rng(seed)
        records = []
        for doc_id in range(self.n_questions):
            k = int(rng.choice(self.n_choices))
            true_logits = rng.normal(0.0, self.logit_scale, size=k)
            true_probs = np.exp(true_logits - true_logits.max())
            true_probs /= true_probs.sum()
            gold = int(rng.choice(k, p=true_probs))
            choices = [" ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4)))) for _ in range(k)]
            reported = true_logits * self.sharpness
            log_probs = reported - reported.max() - np.log(np.exp(reported - reported.max()).sum())
            lengths = np.array([len(c) for c in choices], dtype=float)
            lls = log_probs - self.length_penalty * lengths
            context = f"Question {doc_id}: which answer is right?\nAnswer:"
            records.append({
                "doc_id": doc_id,
                "doc": {"id": f"{self.name}-{doc_id}", "choices": choices, "label": gold,
                        "true_probs": [round(float(p), 6) for p in true_probs]},
                "target": str(gold),
                "arguments": {f"gen_args_{j}": {"arg_0": context, "arg_1": f" {c}"} for j, c in enumerate(choices)},
                "resps": [[[str(float(ll)), "False"]] for ll in lls],
                "filtered_resps": [[str(float(ll)), "False"] for ll in lls],
                "filter": "none",
                "metrics": ["acc", "acc_norm"],
                "acc": float(int(np.argmax(lls)) == gold),
                "acc_norm": float(int(np.argmax(lls / lengths)) == gold),
            })
        return records


DEMO_TASKS = (
    SyntheticTask("demo_calibrated_2choice", 2000, (2,), sharpness=1.0),
    SyntheticTask("demo_overconfident_4choice", 3000, (4,), sharpness=3.0),
    SyntheticTask("demo_mixed_3to5choice", 3000, (3, 4, 5), sharpness=2.0),
    SyntheticTask("demo_length_biased_4choice", 2000, (4,), sharpness=1.0, length_penalty=0.25),
)


def write_samples_file(task: SyntheticTask, directory: Path, seed: int) -> Path:
    """Write ``samples_<task>_<date>.jsonl`` as lm-eval would (atomically: temp name, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"samples_{task.name}_2026-01-01T00-00-00.000000.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as stream:
        for record in task.records(seed):
            stream.write(json.dumps(record) + "\n")
    tmp.replace(path)
    return path


def write_demo_samples(directory: Path, seed: int = 0) -> list[Path]:
    return [write_samples_file(task, directory, seed + index) for index, task in enumerate(DEMO_TASKS)]
