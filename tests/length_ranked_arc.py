"""ARC-Easy split files whose gold answers a random tiny Llama ranks by construction (tests only).

A random tiny Llama (``tiny_models.py``) gives every token about the same log-probability (-log V), so a
choice's summed log-likelihood is set by its length in tokens: a one-word choice beats a sentence by tens of
nats. ``write_length_ranked_arc(folder, n_right, n_wrong)`` writes ``folder/arc_easy/{train,validation,test}.jsonl``
in the Hugging Face ``allenai/ai2_arc`` format ``--data-dir`` reads. In the ``n_right`` first validation questions
the gold answer is the one short choice among three sentences (ranked first); in the ``n_wrong`` others it is
the one sentence among three short words (ranked last). So the NLL-optimal temperature of the validation split
is interior when both kinds are present and more are right (coming down from T = inf, the NLL first falls: its
slope in 1/T there is proportional to ``n_wrong - n_right``; it rises without bound as T -> 0 because of the
wrong ones), and at the search bound T -> inf when every gold answer is the sentence. The test split has 20
wrong-kind questions, the train split 6 right-kind ones.
"""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = ("the water in the river flows down the hill to the sea every single day",
             "plants in the garden take in light from the sun to make their own food",
             "a magnet sticks to the door of the refrigerator because it contains iron",
             "the moon moves around the earth once in about twenty eight days")
WORDS = ("yes", "iron", "sun", "rain")
LABELS = ["A", "B", "C", "D"]


def _row(index: int, right: bool) -> dict:
    if right:  # gold: the short word; distractors: sentences
        texts = [WORDS[index % 4]] + [SENTENCES[(index + j) % 4] for j in range(3)]
    else:  # gold: the sentence; distractors: short words
        texts = [SENTENCES[index % 4]] + [WORDS[(index + j) % 4] for j in range(3)]
    gold = index % 4
    texts[0], texts[gold] = texts[gold], texts[0]  # gold at varying positions
    return {"id": f"constructed-{index}", "question": f"Which answer fits question number {index}?",
            "choices": {"text": texts, "label": LABELS}, "answerKey": LABELS[gold]}


def write_length_ranked_arc(folder: Path, n_right: int, n_wrong: int) -> Path:
    """Write the three split files under ``folder/arc_easy``; returns ``folder`` (the ``--data-dir``)."""
    splits = {"validation": [_row(i, right=i < n_right) for i in range(n_right + n_wrong)],
              "test": [_row(100 + i, right=False) for i in range(20)],
              "train": [_row(200 + i, right=True) for i in range(6)]}
    (folder / "arc_easy").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (folder / "arc_easy" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def validation_questions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "arc_easy" / "validation.jsonl").read_text().splitlines()]
