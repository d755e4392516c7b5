"""Where the teacher's T comes from: flag parsing, first report's calibrators.json, the fit on choice scores
(planted over-confidence recovered), and the live lm-eval audit on a task's validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from first_distill.teacher.teacher_temperature import (
    TeacherTemperature,
    TemperatureFitConfig,
    fit_teacher_temperature,
    parse_temperature_option,
    resolve_teacher_temperature,
    temperature_from_calibrators,
    temperature_from_scores,
)
from first_eval.calibrators import TemperatureScaling, cross_fit
from first_eval.errors import InputError
from first_eval.metrics import ece
from first_eval.scores import ChoiceScores
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" AUTO ", "auto"), ("none", "none"), ("1.5", 1.5),
                                            ("2", 2.0), (0.7, 0.7), (None, None)])
def test_parse_temperature_option(text, expected):
    assert parse_temperature_option(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "hot", ""])
def test_bad_temperature_option(text):
    with pytest.raises(InputError, match=r"--teacher-temperature"):
        parse_temperature_option(text)


def test_fixed_and_disabled():
    fixed = resolve_teacher_temperature("1.3")
    assert (fixed.value, fixed.source, fixed.enabled) == (1.3, "fixed", True)
    disabled = resolve_teacher_temperature("none")
    assert (disabled.value, disabled.source, disabled.enabled) == (1.0, "none", False)
    assert disabled.to_dict()["enabled"] is False
    assert TeacherTemperature.from_dict(fixed.to_dict()) == fixed


def test_auto_without_a_task_explains_the_choices():
    with pytest.raises(InputError, match=r"auto needs a task .*--calibrators-from"):
        resolve_teacher_temperature("auto")
    with pytest.raises(InputError, match=r"auto needs a task"):
        resolve_teacher_temperature(None)


# --------------------------------------------------------------------------------------- calibrators.json


def write_report_files(folder, tasks: dict, metrics: dict | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    document = {"schema": "first.calibrators/1", "score_mode": "sum",
                "tasks": {task: {"temperature": {"kind": "temperature", "temperature": t, "at_bound": None, "nll": 0.9,
                                                 "n_fit": 100}, "platt": {"kind": "platt", "a": 1.0, "b": 0.0}}
                          for task, t in tasks.items()}}
    (folder / "calibrators.json").write_text(json.dumps(document))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps({"tasks": metrics}))
    return folder / "calibrators.json"


def test_calibrators_pick_the_train_task_or_the_only_one(tmp_path):
    both = write_report_files(tmp_path / "a", {"arc_easy": 1.7, "piqa": 0.8},
                              {"arc_easy": {"ece": 0.21, "calibrated": {"temperature": {"ece": 0.04}}}})
    picked = temperature_from_calibrators(both, "arc_easy")
    assert (picked.value, picked.source, picked.task) == (1.7, "calibrators", "arc_easy")
    assert (picked.ece_before, picked.ece_after) == (0.21, 0.04)
    assert picked.details["n_fit"] == 100 and len(picked.details["sha256"]) == 64
    only = write_report_files(tmp_path / "b", {"piqa": 0.8})
    assert temperature_from_calibrators(only, "arc_easy").value == 0.8
    assert temperature_from_calibrators(only.parent).value == 0.8  # the report folder works too
    assert resolve_teacher_temperature(None, calibrators_from=only).value == 0.8


def test_calibrators_errors(tmp_path):
    both = write_report_files(tmp_path / "a", {"arc_easy": 1.7, "piqa": 0.8})
    with pytest.raises(InputError, match=r"no entry for task 'boolq'; it holds arc_easy, piqa"):
        temperature_from_calibrators(both, "boolq")
    with pytest.raises(InputError, match=r"several tasks .*it holds arc_easy, piqa"):
        temperature_from_calibrators(both)
    with pytest.raises(InputError, match=r"either --teacher-temperature 2\.0 or --calibrators-from"):
        resolve_teacher_temperature("2", calibrators_from=both)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match=r"not valid JSON"):
        temperature_from_calibrators(tmp_path / "bad.json")
    with pytest.raises(InputError, match=r"no such file"):
        temperature_from_calibrators(tmp_path / "absent.json")
    (tmp_path / "nt.json").write_text(json.dumps({"tasks": {"arc_easy": {"platt": {"a": 1}}}}))
    with pytest.raises(InputError, match=r"has no fitted temperature"):
        temperature_from_calibrators(tmp_path / "nt.json")


# ------------------------------------------------------------------------------------------ fit on scores


def planted_scores(n: int, sharpness: float, seed: int = 0) -> ChoiceScores:
    """4-choice questions whose gold is drawn from softmax(s); the scores handed over are s * sharpness."""
    rng = np.random.default_rng(seed)
    true_scores = rng.normal(0.0, 1.5, size=(n, 4))
    probs = np.exp(true_scores) / np.exp(true_scores).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(4, p=p) for p in probs])
    return ChoiceScores.from_lists(list(true_scores * sharpness), gold)


def test_fit_recovers_planted_overconfidence():
    scores = planted_scores(4000, sharpness=3.0)
    result = temperature_from_scores(scores, task="planted")
    assert result.value == pytest.approx(TemperatureScaling().fit(scores).temperature_, rel=1e-12)
    assert result.value == pytest.approx(3.0, rel=0.08)
    raw = scores.probabilities()
    assert result.ece_before == pytest.approx(ece(raw.confidences, raw.correct, n_bins=15), abs=1e-12)
    assert result.ece_before > 0.1 and result.ece_after < 0.03
    assert result.details["n_questions"] == 4000 and len(result.details["fold_temperatures"]) == 5
    # ECE after: out-of-fold (each question scaled by a T fit without it), not the in-sample figure
    crossed = cross_fit("temperature", scores, n_folds=5, seed=0)
    assert result.details["fold_temperatures"] == crossed.fold_temperatures
    assert result.ece_after == pytest.approx(ece(crossed.probs.confidences, crossed.probs.correct, n_bins=15), abs=1e-12)
    in_sample = scores.probabilities(result.value)
    assert result.details["ece_after_in_sample"] == pytest.approx(ece(in_sample.confidences, in_sample.correct,
                                                                      n_bins=15), abs=1e-12)
    assert result.ece_after != pytest.approx(result.details["ece_after_in_sample"], abs=1e-9)
    assert result.details["nll_after"] < result.details["nll_before"]


def test_fit_at_the_bound_is_an_input_error():
    always_right = ChoiceScores.from_lists([[5.0, 0.0, 0.0]] * 10, np.zeros(10, dtype=int))
    with pytest.raises(InputError, match=r"search bound T = 0\.001 .*accuracy 100\.0%"):
        temperature_from_scores(always_right, task="easy")


# ------------------------------------------------------------------------------------------- live audit


def hand_choice_scores(model_dir, questions: list[dict]):
    """Each choice's summed log-likelihood after "Question: ...\nAnswer:", one unbatched forward per choice."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    scores, gold = [], []
    with torch.inference_mode():
        for question in questions:
            prompt = f"Question: {question['question']}\nAnswer:"
            context = tokenizer(prompt)["input_ids"]
            row = []
            for text in question["choices"]["text"]:
                whole = tokenizer(f"{prompt} {text}")["input_ids"]
                log_probs = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), -1)
                targets = torch.tensor(whole[len(context):])
                row.append(float(log_probs[len(context) - 1:-1].gather(-1, targets[:, None]).sum()))
            scores.append(row)
            gold.append(question["choices"]["label"].index(question["answerKey"]))
    return np.array(scores), np.array(gold)


def fit_on(data_dir, model_dir):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_teacher_temperature(TemperatureFitConfig(
            model_args=f"pretrained={model_dir},dtype=float32", task="arc_easy", data_dir=data_dir, device="cpu"))
    finally:
        torch.set_num_threads(threads)


def test_auto_audits_the_validation_split_not_the_test_split(tiny_llama_dir, tmp_path):  # noqa: F811
    """arc_easy evaluates its test split; auto must score the validation file. The files are built so the random
    tiny model ranks gold first in 5 of the 7 validation questions and last in the other 2 (length_ranked_arc.py):
    an interior optimum, which is scipy's minimiser of the NLL of choice scores computed here by hand. The test
    split (20 questions, gold always last) would put T at the search bound."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    from length_ranked_arc import validation_questions, write_length_ranked_arc

    data_dir = write_length_ranked_arc(tmp_path / "data", n_right=5, n_wrong=2)
    result = fit_on(data_dir, tiny_llama_dir)
    assert result.source == "auto" and result.task == "arc_easy"
    assert result.details["split"] == "validation" and result.details["n_questions"] == 7
    assert result.details["accuracy"] == pytest.approx(5 / 7, abs=1e-12)
    assert result.details["accuracy"] == pytest.approx(result.details["lm_eval"]["acc"], abs=1e-12)
    assert "auto: TemperatureScaling on lm-eval arc_easy validation (7 questions)" == result.label

    scores, gold = hand_choice_scores(tiny_llama_dir, validation_questions(data_dir))
    assert (scores.argmax(1) == gold).sum() == 5  # the construction holds for this model

    def nll(log_t: float) -> float:
        return float(-log_softmax(scores / np.exp(log_t), axis=1)[np.arange(len(gold)), gold].mean())

    oracle = minimize_scalar(nll, bounds=(np.log(0.01), np.log(1e4)), method="bounded", options={"xatol": 1e-10})
    assert result.value == pytest.approx(float(np.exp(oracle.x)), rel=1e-4)
    assert result.details["nll_after"] == pytest.approx(oracle.fun, rel=1e-6)
    assert result.ece_before == pytest.approx(ece(np.exp(log_softmax(scores, 1)).max(1), scores.argmax(1) == gold,
                                                  n_bins=15), abs=1e-6)  # lm-eval: float32 logits


def test_auto_at_the_search_bound_is_refused_naming_the_split_size(tiny_llama_dir, tmp_path):  # noqa: F811
    """Every validation gold answer ranked last: the NLL falls all the way to T = inf, so auto refuses."""
    from length_ranked_arc import write_length_ranked_arc

    data_dir = write_length_ranked_arc(tmp_path / "data", n_right=0, n_wrong=7)
    with pytest.raises(InputError, match=r"search bound T = 100000 \(accuracy 0\.0% on 7 questions.*--teacher-temperature FLOAT"):
        fit_on(data_dir, tiny_llama_dir)


def test_auto_needs_a_validation_split(tmp_path):
    from first_eval.lm_eval_bridge.task_lookup import builtin_tasks_dir

    (tmp_path / "arc_test_only.yaml").write_text(
        f"include: {builtin_tasks_dir() / 'arc' / 'arc_easy.yaml'}\ntask: arc_test_only\nvalidation_split: null\n")
    with pytest.raises(InputError, match=r"task arc_test_only has no validation split .*--teacher-temperature FLOAT"):
        fit_teacher_temperature(TemperatureFitConfig(model_args="pretrained=unused", task="arc_test_only",
                                                     include_path=tmp_path))
