"""Score a world's questions with a causal LM exactly as lm-eval's ``multiple_choice`` does.

For question ``i`` and choice ``c``: ``score[i, c] = sum_t log p(answer token t | prefix)`` over the
tokens of ``" " + c`` after the context "Question: ...\\nAnswer:" (lm-eval's ``acc`` score, the
``sum`` score mode of ``first_eval.scores``). The token split follows lm-eval's ``_encode_pair``:
``encode(context + " " + c)[len(encode(context)):]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from first_demo.questions import Question, prompt_text


def choice_loglikelihoods(model, tokenizer, questions: Sequence[Question], batch_size: int = 256):
    """``ChoiceScores`` (summed answer log-likelihoods, gold = sampled label) for ``questions``."""
    import torch

    from first_eval.scores import ChoiceScores

    contexts = [prompt_text(q.question) for q in questions]
    pair_contexts = [ctx for ctx, q in zip(contexts, questions) for _ in q.choices]
    pair_wholes = [f"{ctx} {c}" for ctx, q in zip(contexts, questions) for c in q.choices]
    whole_ids = tokenizer(pair_wholes)["input_ids"]
    context_lengths = [len(ids) for ids in tokenizer(pair_contexts)["input_ids"]]
    scores = np.empty(len(whole_ids), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(whole_ids), batch_size):
            chunk = whole_ids[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
            for row, seq in enumerate(chunk):
                ids[row, : len(seq)] = torch.tensor(seq)
            log_probs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)  # (B, T, V)
            # token t is predicted at position t - 1
            token_log_probs = log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
            for row, seq in enumerate(chunk):
                first = context_lengths[start + row]
                scores[start + row] = float(token_log_probs[row, first - 1 : len(seq) - 1].sum())
    counts = np.array([len(q.choices) for q in questions], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gold = np.array([q.label for q in questions], dtype=np.int64)
    return ChoiceScores(scores, offsets, gold, "sum")


def bayes_choice_scores(questions: Sequence[Question]):
    """``ChoiceScores`` whose softmax is the exact Bayes posterior (scores = log posterior)."""
    from first_eval.scores import ChoiceScores

    return ChoiceScores.from_lists(
        [np.log(np.maximum(q.bayes_probs, 1e-12)).tolist() for q in questions], [q.label for q in questions]
    )
