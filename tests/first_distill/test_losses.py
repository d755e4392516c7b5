"""Identities and oracles for first_distill.losses (torch's own functions, float64 formulas, finite differences)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from first_distill import losses  # noqa: E402

B, T, V, K = 3, 6, 13, 4


def _batch(seed=0, dtype=torch.float64, vocab=V, k=K, p_masked=0.3):
    generator = torch.Generator().manual_seed(seed)
    student = (2.0 * torch.randn(B, T, vocab, generator=generator)).to(dtype)
    teacher = 2.0 * torch.randn(B, T, vocab, generator=generator, dtype=torch.float64)
    mask = torch.rand(B, T, generator=generator) > p_masked
    mask[0, 0] = True
    labels = torch.randint(0, vocab, (B, T), generator=generator)
    labels[~mask] = -100  # masked positions may hold anything, as in HF labels
    teacher_probs = teacher.softmax(-1)
    topk_probs, topk_ids = teacher_probs.topk(k, dim=-1)
    return student, teacher, teacher_probs, topk_ids, topk_probs, labels, mask


def _kl_rows(p, log_q):
    """sum_v p_v (log p_v - log q_v) per row, 0 log 0 = 0."""
    return (torch.xlogy(p, p) - p * log_q).sum(-1)


def _all_losses(teacher, topk_ids, topk_probs, labels, mask, chunk_size=None):
    return {
        "topk_kl": lambda z: losses.topk_kl(z, topk_ids, topk_probs, mask, chunk_size=chunk_size),
        "topk_tail_kl": lambda z: losses.topk_tail_kl(z, topk_ids, topk_probs, mask, chunk_size=chunk_size),
        "sampled_kl": lambda z: losses.sampled_kl(z, topk_ids, topk_probs, mask, chunk_size=chunk_size),
        "full_kl": lambda z: losses.full_kl(z, teacher, mask, temperature=1.7, chunk_size=chunk_size),
        "cross_entropy": lambda z: losses.cross_entropy(z, labels.clamp_min(0), mask, chunk_size=chunk_size),
        "label_smoothing": lambda z: losses.label_smoothing(z, labels.clamp_min(0), mask, 0.2, chunk_size=chunk_size),
    }


LOSS_NAMES = ["topk_kl", "topk_tail_kl", "sampled_kl", "full_kl", "cross_entropy", "label_smoothing"]


# --------------------------------------------------------------------------------------------- oracles


def test_full_kl_matches_torch_kl_div_with_teacher_temperature():
    student, teacher, *_, mask = _batch()
    expected = F.kl_div(student.log_softmax(-1), (teacher / 1.7).log_softmax(-1), log_target=True,
                        reduction="none").sum(-1)[mask].mean()
    assert losses.full_kl(student, teacher, mask, temperature=1.7).item() == pytest.approx(expected.item(), rel=1e-10)


def test_topk_kl_matches_renormalised_kl_on_the_k_tokens():
    student, _, _, topk_ids, topk_probs, _, mask = _batch()
    p = topk_probs / topk_probs.sum(-1, keepdim=True)
    log_q = student.gather(-1, topk_ids).log_softmax(-1)
    expected = _kl_rows(p, log_q)[mask].mean()
    assert losses.topk_kl(student, topk_ids, topk_probs, mask).item() == pytest.approx(expected.item(), rel=1e-10)


def test_topk_tail_kl_matches_trl_style_tail_bucket():
    # Oracle: TRL's add_tail_bucket construction (log of 1 - captured mass, in float64).
    student, _, _, topk_ids, topk_probs, _, mask = _batch()
    student_log_q = student.log_softmax(-1).gather(-1, topk_ids)

    def with_tail(log_probs):
        captured = torch.logsumexp(log_probs, -1, keepdim=True)
        return torch.cat([log_probs, torch.log(-torch.expm1(captured))], -1)

    expected = _kl_rows(with_tail(topk_probs.log()).exp(), with_tail(student_log_q))[mask].mean()
    assert losses.topk_tail_kl(student, topk_ids, topk_probs, mask).item() == pytest.approx(expected.item(), rel=1e-9)


def test_cross_entropy_and_label_smoothing_match_torch_in_value_and_gradient():
    student, *_, labels, mask = _batch()
    for epsilon in (0.0, 0.1, 0.5, 1.0):
        ours_input = student.clone().requires_grad_()
        ref_input = student.clone().requires_grad_()
        ours = losses.label_smoothing(ours_input, labels, mask, epsilon=epsilon)
        reference = F.cross_entropy(ref_input[mask], labels[mask], label_smoothing=epsilon)
        ours.backward()
        reference.backward()
        assert ours.item() == pytest.approx(reference.item(), rel=1e-10)
        torch.testing.assert_close(ours_input.grad, ref_input.grad, rtol=1e-10, atol=1e-12)
    ce_input = student.clone().requires_grad_()
    ref_input = student.clone().requires_grad_()
    losses.cross_entropy(ce_input, labels, mask).backward()
    F.cross_entropy(ref_input.flatten(0, 1), labels.flatten(), ignore_index=-100).backward()
    torch.testing.assert_close(ce_input.grad, ref_input.grad, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------ identities


def test_identical_distributions_give_zero():
    student, *_ = _batch()
    mask = torch.ones(B, T, dtype=torch.bool)
    student_probs = student.softmax(-1)
    topk_probs, topk_ids = student_probs.topk(K, dim=-1)
    assert losses.full_kl(student, student, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.topk_kl(student, topk_ids, topk_probs, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.topk_tail_kl(student, topk_ids, topk_probs, mask).item() == pytest.approx(0.0, abs=1e-12)
    # topk_kl only sees the renormalised top k: any positive rescaling of the teacher's k probabilities is the same.
    assert losses.topk_kl(student, topk_ids, 3.0 * topk_probs, mask).item() == pytest.approx(0.0, abs=1e-12)


def test_with_k_equal_to_vocab_the_top_k_losses_equal_full_kl_in_value_and_gradient():
    student, teacher, teacher_probs, *_, mask = _batch()
    topk_probs, topk_ids = teacher_probs.topk(V, dim=-1)
    reference_input = student.clone().requires_grad_()
    reference = losses.full_kl(reference_input, teacher, mask)
    reference.backward()
    for loss in (losses.topk_kl, losses.topk_tail_kl):
        ours_input = student.clone().requires_grad_()
        ours = loss(ours_input, topk_ids, topk_probs, mask)
        ours.backward()
        assert ours.item() == pytest.approx(reference.item(), rel=1e-9, abs=1e-12)
        torch.testing.assert_close(ours_input.grad, reference_input.grad, rtol=1e-8, atol=1e-12)


def test_sampled_kl_with_the_exact_teacher_as_weights_is_full_kl_plus_teacher_entropy():
    student, teacher, teacher_probs, *_, mask = _batch()
    all_ids = torch.arange(V).expand(B, T, V)
    entropy = -torch.xlogy(teacher_probs, teacher_probs).sum(-1)[mask].mean()
    expected = losses.full_kl(student, teacher, mask) + entropy
    assert losses.sampled_kl(student, all_ids, teacher_probs, mask).item() == pytest.approx(expected.item(), rel=1e-10)


def test_sampled_kl_is_an_unbiased_estimate_of_full_kl_plus_teacher_entropy():
    # Many independent draws of S tokens per position, stacked along the batch axis; each draw's distinct ids
    # are packed to the front with padding (id 0, weight 0), as an extraction would store them.
    generator = torch.Generator().manual_seed(3)
    vocab, samples, draws = 7, 8, 4000
    student_row = torch.randn(vocab, generator=generator, dtype=torch.float64)
    teacher_probs = torch.randn(vocab, generator=generator, dtype=torch.float64).mul(1.5).softmax(-1)
    drawn = torch.multinomial(teacher_probs.expand(draws, vocab), samples, replacement=True, generator=generator)
    counts = F.one_hot(drawn, vocab).sum(1).double()  # (draws, vocab)
    order = counts.argsort(dim=-1, descending=True, stable=True)  # distinct ids first, zero counts last = padding
    sampled_ids = torch.where(counts.gather(-1, order) > 0, order, 0)
    sampled_weights = counts.gather(-1, order) / samples
    student = student_row.expand(draws, 1, vocab)
    mask = torch.ones(draws, 1, dtype=torch.bool)
    estimate = losses.sampled_kl(student, sampled_ids.unsqueeze(1), sampled_weights.unsqueeze(1), mask)
    per_draw = -(sampled_weights * student_row.log_softmax(-1)[sampled_ids]).sum(-1)
    target = -(teacher_probs * student_row.log_softmax(-1)).sum()
    full = losses.full_kl(student_row.view(1, 1, vocab), teacher_probs.log().view(1, 1, vocab), mask[:1])
    entropy = -torch.xlogy(teacher_probs, teacher_probs).sum()
    assert target.item() == pytest.approx((full + entropy).item(), rel=1e-10)
    standard_error = per_draw.std() / draws ** 0.5
    assert abs(estimate.item() - target.item()) < 4 * standard_error.item()


def test_topk_tail_kl_is_accurate_when_the_student_tail_is_tiny():
    # The student puts all but ~1e-12 of its mass on the k tokens; 1 - sum q would lose it in float32.
    vocab, k = 50, 3
    student = torch.full((1, 1, vocab), -20.0)
    student[0, 0, :k] = torch.tensor([8.0, 7.0, 6.0])
    ids = torch.arange(k).view(1, 1, k)
    teacher = torch.tensor([[[0.6, 0.3, 0.0999]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    log_q = student.double().log_softmax(-1)
    tail = log_q[0, 0, k:].exp().sum()
    p = teacher.double()[0, 0]
    p_tail = 1 - p.sum()
    expected = _kl_rows(p, log_q[0, 0, :k]) + p_tail * (p_tail.log() - tail.log())
    assert losses.topk_tail_kl(student, ids, teacher, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_topk_tail_kl_renormalises_quantised_probabilities_that_sum_above_one():
    student, _, _, topk_ids, topk_probs, _, mask = _batch(k=V)
    overshoot = topk_probs * 1.002
    value = losses.topk_tail_kl(student, topk_ids, overshoot, mask)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(losses.topk_tail_kl(student, topk_ids, topk_probs, mask).item(), rel=1e-9)


# ------------------------------------------------------------------------------- masking and gradients


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_positions_masked_gives_zero_and_a_finite_zero_gradient(name):
    student, teacher, _, topk_ids, topk_probs, labels, _ = _batch(dtype=torch.float32)
    mask = torch.zeros(B, T, dtype=torch.bool)
    student.requires_grad_()
    value = _all_losses(teacher, topk_ids, topk_probs, labels, mask)[name](student)
    value.backward()
    assert value.item() == 0.0
    assert value.dtype == torch.float32
    assert student.grad is not None and torch.all(student.grad == 0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_match_finite_differences(name):
    student, teacher, _, topk_ids, topk_probs, labels, mask = _batch(vocab=7, k=3)
    loss = _all_losses(teacher.double(), topk_ids, topk_probs, labels, mask, chunk_size=2)[name]
    assert torch.autograd.gradcheck(loss, (student.clone().requires_grad_(),))


def test_gradient_of_topk_tail_kl_matches_finite_differences_when_the_tail_is_floored():
    student, teacher, teacher_probs, *_, mask = _batch(vocab=5)
    topk_probs, topk_ids = teacher_probs.topk(5, dim=-1)  # k = V: the student tail is exactly 0
    assert torch.autograd.gradcheck(lambda z: losses.topk_tail_kl(z, topk_ids, topk_probs, mask),
                                    (student.clone().requires_grad_(),))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_chunked_equals_unchunked_in_value_and_gradient(name):
    student, teacher, _, topk_ids, topk_probs, labels, mask = _batch()
    n_rows = int(mask.sum())
    results = []
    for chunk_size in (1, 2, 3, n_rows, n_rows + 5, None):
        student_input = student.clone().requires_grad_()
        value = _all_losses(teacher, topk_ids, topk_probs, labels, mask, chunk_size=chunk_size)[name](student_input)
        value.backward()
        results.append((value.detach(), student_input.grad))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_low_precision_and_sliced_logits_give_the_upcast_result(name):
    # bf16 logits, taken as the usual shifted view logits[:, :-1] (not contiguous): same as their fp32 copy.
    student, teacher, _, topk_ids, topk_probs, labels, mask = _batch(dtype=torch.float32)
    padded = torch.cat([student, torch.zeros(B, 1, V)], 1).to(torch.bfloat16).requires_grad_()
    reference_input = padded.detach()[:, :-1].float().requires_grad_()
    loss = _all_losses(teacher.float(), topk_ids, topk_probs.float(), labels, mask, chunk_size=4)[name]
    ours = loss(padded[:, :-1])
    reference = loss(reference_input)
    ours.backward()
    reference.backward()
    assert ours.dtype == torch.float32
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    assert padded.grad.dtype == torch.bfloat16
    torch.testing.assert_close(padded.grad[:, :-1].float(), reference_input.grad, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_weighted_sum_of_losses_and_no_grad_evaluation(name):
    student, teacher, _, topk_ids, topk_probs, labels, mask = _batch()
    loss = _all_losses(teacher, topk_ids, topk_probs, labels, mask)[name]
    once = student.clone().requires_grad_()
    loss(once).backward()
    weighted = student.clone().requires_grad_()
    (0.25 * loss(weighted) + 0.5 * loss(weighted)).backward()
    torch.testing.assert_close(weighted.grad, 0.75 * once.grad, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        assert loss(student).item() == pytest.approx(loss(once).item(), rel=1e-12)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_shapes_and_arguments_raise_value_errors_quoting_them():
    student, teacher, _, topk_ids, topk_probs, labels, mask = _batch(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"mask must be a bool \(B, T\) = \(3, 6\) tensor, got torch.int64"):
        losses.cross_entropy(student, labels, mask.long())
    with pytest.raises(ValueError, match=r"topk_probs must be a float tensor shaped like topk_ids \(3, 6, 4\)"):
        losses.topk_kl(student, topk_ids, topk_probs[..., :2], mask)
    with pytest.raises(ValueError, match=r"student_logits must be a float \(B, T, V\) tensor"):
        losses.topk_tail_kl(student[0], topk_ids, topk_probs, mask)
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None, got 0"):
        losses.sampled_kl(student, topk_ids, topk_probs.float(), mask, chunk_size=0)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        losses.full_kl(student, teacher.float(), mask, temperature=0.0)
    with pytest.raises(ValueError, match=r"labels must be an integer \(B, T\)"):
        losses.cross_entropy(student, labels.float(), mask)
    with pytest.raises(ValueError, match="epsilon must be in"):
        losses.label_smoothing(student, labels, mask, epsilon=1.5)


# ------------------------------------------------------------------------------ top-k KL from hidden states


@pytest.mark.parametrize("with_bias", [False, True])
def test_topk_kl_from_hidden_equals_topk_kl_on_the_full_logits(with_bias):
    generator = torch.Generator().manual_seed(8)
    hidden = torch.randn(B, T, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(V, 6, generator=generator, dtype=torch.float64)
    bias = torch.randn(V, generator=generator, dtype=torch.float64) if with_bias else None
    _, _, _, topk_ids, topk_probs, _, mask = _batch()

    def via_logits(h, w, b):
        logits = h @ w.T + (0 if b is None else b)
        return losses.topk_kl(logits, topk_ids, topk_probs, mask)

    def via_hidden(h, w, b):
        return losses.topk_kl_from_hidden(h, w, topk_ids, topk_probs, mask, lm_head_bias=b, chunk_size=4)

    inputs = [hidden, weight] + ([bias] if with_bias else [])
    leaves_a = [x.clone().requires_grad_() for x in inputs]
    leaves_b = [x.clone().requires_grad_() for x in inputs]
    value_a = via_logits(*leaves_a, *([] if with_bias else [None]))
    value_b = via_hidden(*leaves_b, *([] if with_bias else [None]))
    (value_a + value_b).backward()
    assert value_b.item() == pytest.approx(value_a.item(), rel=1e-12)
    for a, b in zip(leaves_a, leaves_b):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *x: via_hidden(*x, *([] if with_bias else [None])),
                                    tuple(x.clone().requires_grad_() for x in inputs))


def test_topk_kl_from_hidden_with_everything_masked_is_zero_with_zero_gradients():
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    weight = torch.randn(9, 4, requires_grad=True)
    ids = torch.zeros(2, 3, 2, dtype=torch.long)
    ids[..., 1] = 1
    value = losses.topk_kl_from_hidden(hidden, weight, ids, torch.full((2, 3, 2), 0.5), torch.zeros(2, 3, dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0 and torch.all(hidden.grad == 0) and torch.all(weight.grad == 0)
    with pytest.raises(ValueError, match=r"lm_head_weight must have shape \(V, H = 4\), got \(9, 5\)"):
        losses.topk_kl_from_hidden(hidden, torch.randn(9, 5), ids, torch.full((2, 3, 2), 0.5), torch.ones(2, 3, dtype=torch.bool))
