"""Token-level teacher temperature: the bisection against scipy's minimiser, a planted T, torch's
cross-entropy and torchmetrics' ECE as oracles; the gold-token logits against unbatched forwards."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from first_distill.teacher.token_temperature import (
    fit_token_temperature, fit_token_temperature_value, gold_token_logits, token_nll, top1_token_ece)
from first_distill.training_data import TrainingExample, tokenize_examples
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


def planted(n: int, vocab: int, temperature: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=generator) * 3.0
    gold = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)[:, 0]
    return logits, gold


@pytest.mark.parametrize("true_t", [0.5, 2.5, 6.0])
def test_planted_temperature_is_recovered(true_t):
    logits, gold = planted(20_000, 40, true_t)
    fitted, at_bound = fit_token_temperature_value(logits, gold)
    assert at_bound is None and fitted == pytest.approx(true_t, rel=0.05)


def test_bisection_equals_scipy_minimiser_of_the_nll():
    from scipy.optimize import minimize_scalar

    logits, gold = planted(3000, 97, 1.7, seed=3)
    ours, _ = fit_token_temperature_value(logits, gold)
    oracle = minimize_scalar(lambda log_t: torch.nn.functional.cross_entropy(logits.double() / np.exp(log_t), gold).item(),
                             bounds=(np.log(0.05), np.log(50)), method="bounded", options={"xatol": 1e-10})
    assert ours == pytest.approx(float(np.exp(oracle.x)), rel=1e-4)


def test_nll_and_ece_equal_torch_and_torchmetrics():
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits, gold = planted(1000, 30, 2.0, seed=1)
    for t in (0.7, 1.0, 3.0):
        assert token_nll(logits, gold, t) == pytest.approx(torch.nn.functional.cross_entropy(logits / t, gold).item(), rel=1e-6)
        oracle = multiclass_calibration_error(torch.softmax(logits / t, -1), gold, num_classes=30, n_bins=15, norm="l1")
        assert top1_token_ece(logits, gold, t) == pytest.approx(oracle.item(), abs=1e-5)


def test_bounds_are_reported():
    logits = torch.zeros(10, 5)
    logits[:, 0] = 1.0
    gold = torch.zeros(10, dtype=torch.long)  # always the top token: sharper is always better
    assert fit_token_temperature_value(logits, gold) == (0.01, "low")


def test_cross_fitted_ece_uses_other_questions_only():
    logits, gold = planted(2000, 20, 3.0, seed=2)
    owner = np.repeat(np.arange(500), 4)
    fit = fit_token_temperature(logits, gold, owner, n_folds=5, seed=0)
    assert fit.n_questions == 500 and fit.n_positions == 2000 and len(fit.fold_temperatures) == 5
    assert fit.nll_after <= fit.nll_before and fit.ece_after < fit.ece_before
    assert all(t == pytest.approx(3.0, rel=0.15) for t in fit.fold_temperatures)


def test_each_fold_temperature_is_fit_on_that_folds_training_questions_alone():
    """Five questions planted at very different temperatures and five folds: each fold holds one question, so its
    T is the fit on the other four (leave one question out) and differs from the fit on all five."""
    from first_eval.metrics import ece

    temperatures = (0.4, 0.8, 1.6, 3.2, 6.4)
    parts = [planted(600, 12, t, seed=10 + i) for i, t in enumerate(temperatures)]
    logits = torch.cat([part[0] for part in parts])
    gold = torch.cat([part[1] for part in parts])
    owner = np.repeat(np.arange(len(temperatures)) * 7 + 3, 600)  # question ids need not be 0..n-1
    fit = fit_token_temperature(logits, gold, owner, n_folds=5, seed=1)

    everything, _ = fit_token_temperature_value(logits, gold)
    assert fit.temperature == pytest.approx(everything, rel=1e-9)
    leave_one_out = {}
    for question in np.unique(owner):
        kept = torch.from_numpy(np.flatnonzero(owner != question))
        leave_one_out[question] = fit_token_temperature_value(logits[kept], gold[kept])[0]
    assert sorted(fit.fold_temperatures) == pytest.approx(sorted(leave_one_out.values()), rel=1e-9)
    assert all(abs(t / everything - 1) > 0.05 for t in leave_one_out.values())  # a fit on all data is caught
    # ECE after: each question's tokens at the T fit without it (top-1 by hand, torch's softmax)
    confidences, correct = [], []
    for question, t in leave_one_out.items():
        rows = owner == question
        top, arg = torch.softmax(logits[rows].double() / t, dim=-1).max(dim=-1)
        confidences.append(top.numpy())
        correct.append((arg == gold[rows]).numpy())
    expected = ece(np.concatenate(confidences), np.concatenate(correct), n_bins=15)
    assert fit.ece_after == pytest.approx(expected, abs=1e-6)


def test_gold_token_logits_match_unbatched_forwards(tiny_llama_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    pairs = [TrainingExample(f"Question: {'why ' * i}is it?\nAnswer:", f" because {'so ' * (i % 3)}") for i in range(7)]
    examples = tokenize_examples(pairs, tokenizer, 512)
    logits, gold, owner = gold_token_logits(model, examples, batch_size=3, device="cpu")
    expected_rows, expected_gold = [], []
    with torch.inference_mode():
        for example in examples:
            ids = torch.from_numpy(np.asarray(example.input_ids))[None]
            full = model(input_ids=ids).logits[0]  # (L, V)
            start = example.completion_start
            expected_rows.append(full[start - 1:-1])
            expected_gold.append(ids[0, start:])
    torch.testing.assert_close(logits, torch.cat(expected_rows), atol=2e-4, rtol=1e-4)
    assert torch.equal(gold, torch.cat(expected_gold))
    assert list(owner) == [i for i, e in enumerate(examples) for _ in range(e.n_completion)]
