"""Tiny Llama models of the demo world and the one training loop that makes them.

A plain nanoGPT-style loop (tiny single-process CPU models need no Trainer): sample a batch of
token sequences, right-pad, cross-entropy on the unmasked positions, AdamW, warmup + cosine LR.

- pretraining: every token of a generic line (plus ``<eos>``) is a target;
- fine-tuning: only the answer tokens of "Question: ...\\nAnswer: <gold>" are targets, exactly
  the tokens lm-eval scores (``whole[len(context):]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from first_demo.config import ModelSize

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TrainingRun:
    """Optimiser settings of one run: ``steps`` AdamW steps of ``batch_size`` sequences at peak ``lr``."""

    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0


def new_llama(size: ModelSize, tokenizer, seed: int):
    """A freshly initialised ``LlamaForCausalLM`` of shape ``size`` for ``tokenizer`` (tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size or 3 * size.hidden_size,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_heads,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def learning_rate(step: int, run: TrainingRun) -> float:
    """Linear warmup to ``run.lr``, then cosine decay to ``final_lr_fraction * run.lr``."""
    warmup = max(1, int(run.warmup_fraction * run.steps))
    if step < warmup:
        return run.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, run.steps - warmup)
    floor = run.final_lr_fraction * run.lr
    return floor + 0.5 * (run.lr - floor) * (1.0 + math.cos(math.pi * progress))


def pretraining_examples(lines: Sequence[str], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids ``<bos> line <eos>`` and labels equal to the ids (every token is a target)."""
    encoded = tokenizer(list(lines))["input_ids"]
    input_ids = [ids + [tokenizer.eos_token_id] for ids in encoded]
    return input_ids, [list(ids) for ids in input_ids]


def answer_examples(contexts: Sequence[str], answers: Sequence[str], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of ``context + " " + answer`` with labels only on the answer's tokens.

    The answer's tokens are ``encode(whole)[len(encode(context)):]``, the split lm-eval's
    ``_encode_pair`` makes, so the fine-tune targets are exactly the tokens lm-eval will score.
    """
    wholes = tokenizer([f"{c} {a}" for c, a in zip(contexts, answers)])["input_ids"]
    context_ids = tokenizer(list(contexts))["input_ids"]
    labels = [[IGNORE_INDEX] * len(ctx) + whole[len(ctx):] for whole, ctx in zip(wholes, context_ids)]
    return [list(w) for w in wholes], labels


def _pad_batch(input_ids: list[list[int]], labels: list[list[int]], pad_id: int):
    import torch

    width = max(len(ids) for ids in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(input_ids), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, (seq, lab) in enumerate(zip(input_ids, labels)):
        ids[row, : len(seq)] = torch.tensor(seq)
        targets[row, : len(lab)] = torch.tensor(lab)
    return ids, targets


def train_causal_lm(
    model,
    input_ids: list[list[int]],
    labels: list[list[int]],
    run: TrainingRun,
    pad_id: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place for ``run.steps`` steps; returns the per-step training losses.

    Batches walk through seeded permutations of the examples (epoch after epoch). Padding is on
    the right and the attention is causal, so pads never influence a real position and no
    attention mask is needed; pad positions carry label -100.
    """
    import torch

    if len(input_ids) == 0:
        raise ValueError("no training examples")
    generator = torch.Generator().manual_seed(run.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay, betas=(0.9, 0.98))
    model.train()
    order: list[int] = []
    losses: list[float] = []
    for step in range(run.steps):
        while len(order) < run.batch_size:
            order.extend(torch.randperm(len(input_ids), generator=generator).tolist())
        batch, order = order[: run.batch_size], order[run.batch_size :]
        ids, targets = _pad_batch([input_ids[i] for i in batch], [labels[i] for i in batch], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, run)
        loss = model(input_ids=ids, labels=targets).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
