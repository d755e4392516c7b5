"""With single-token answers the token-level teacher temperature and the choice-level one measure the same thing.

The choice-level fit (``level="choice"``) renormalises lm-eval's letter log-likelihoods over the choices; the
token-level fit (``level="token"``) takes the teacher's next-token distribution over the whole vocabulary at the
gold letter. The two objectives differ only by the probability the teacher puts outside the letters, so they agree
exactly when the letter mass is ~1, and not otherwise.

The teacher is a hand-built one-layer Llama, deterministic by construction (no training, no luck):

* every prompt of the lettered task ``hint_qa_letters`` carries one hint character (``#$%&`` for ``A-D``);
* one attention head attends (score ~58 against 0) to the hint token and copies its letter into the residual
  stream; the output head reads it, so at the answer position the hinted letter's logit is exactly ``beta``
  above the other three letters in every question, and every other token lies ``gap`` ~68 below the letters;
* the hint agrees with the gold answer in 30 of 40 validation questions (p = 0.75).

Both NLL fits then have the closed-form optimum  ``beta / T = log(3 p / (1 - p))``  (4 choices; d NLL / d(beta/T)
= -p + e^b / (e^b + 3) = 0), an oracle independent of either fitter. A second, *leaky* teacher whose non-letter
tokens sit level with the unhinted letters (letter mass ~0.36) leaves the choice-level fit unchanged but moves
the token-level one to ``log(p (V - 1) / (1 - p))``: the agreement is not vacuous.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from first_distill.teacher.teacher_temperature import TemperatureFitConfig, fit_teacher_temperature
from first_distill.teacher.token_temperature import T_MAX, T_MIN
from first_distill.model_folders import locate_model
from first_eval.calibrators.temperature import DEFAULT_MAX_TEMPERATURE, DEFAULT_MIN_TEMPERATURE
from first_eval.lm_eval_bridge.lettered import lettered_prompt, prepare_lettered_tasks
from tiny_models import default_corpus, make_tiny_llama

LETTERS = "ABCD"
HINTS = "#$%&"  # one byte-level token each, never merged with a neighbour (checked below)
N_VALIDATION, N_TEST = 40, 8
CHOICES = ["red", "green", "blue", "yellow"]
# Teacher design (module docstring). Residual dims: 0 constant, 1-4 hint letter, 5 "is a hint", 6-9 letter read out.
HIDDEN, HEADS, HEAD_DIM = 64, 4, 16
QK_WEIGHT = 2.5  # hint attention score = (8 QK) (sqrt(64/3) QK) / sqrt(16) = 57.7 against 0 for every other token
COPY_GAIN = 1.0  # g: the letter written into the residual stream
LETTER_BIAS, HINT_WEIGHT, NON_LETTER = 2.0, 1.0, 10.0  # output-head weights on dims 0, 6-9, and -dim 0 for the rest
RMS_EPS = 1e-6
# final RMSNorm of e0 + g e_{6+k} scales by r; the hinted letter is beta = b g r above the others
R_FINAL = 1 / math.sqrt((1 + COPY_GAIN ** 2) / HIDDEN + RMS_EPS)
BETA = HINT_WEIGHT * COPY_GAIN * R_FINAL
GAP = (LETTER_BIAS + NON_LETTER) * R_FINAL


def hinted_docs(n: int) -> list[dict]:
    """Question i has gold ``i % 4``; its hint is the gold letter except when ``i % 4 == (i // 4) % 4`` (1 in 4)."""
    docs = []
    for i in range(n):
        gold = i % 4
        hint = gold if gold != (i // 4) % 4 else (gold + 1 + (i // 16) % 3) % 4
        shift = i % 3  # vary the option texts a little (their content is irrelevant to the teacher)
        docs.append({"question": f"Which colour is meant here {HINTS[hint]}?",
                     "choices": CHOICES[shift:] + CHOICES[:shift], "gold": gold, "hint": hint})
    return docs


@pytest.fixture(scope="module")
def hint_task(tmp_path_factory):
    """An lm-eval multiple-choice task (include path) with validation and test splits, and its lettered variant."""
    root = tmp_path_factory.mktemp("hint-task")
    data = {"validation": hinted_docs(N_VALIDATION), "test": hinted_docs(N_TEST)}
    files = {}
    for split, docs in data.items():
        files[split] = root / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "hint_qa.yaml").write_text(
        "task: hint_qa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    validation: {files['validation']}\n    test: {files['test']}\n"
        "output_type: multiple_choice\nvalidation_split: validation\ntest_split: test\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: choices\ndoc_to_target: gold\n"
        "metric_list:\n  - metric: acc\n", encoding="utf-8")
    lettered = prepare_lettered_tasks(["hint_qa"], root / "letters", include_path=tasks)
    assert lettered.names == ("hint_qa_letters",) and lettered.tasks[0].n_docs == {"test": N_TEST,
                                                                                    "validation": N_VALIDATION}
    return lettered, data["validation"]


def build_teacher(folder, leaky: bool = False):
    """Save the hand-built teacher (module docstring) with a tokenizer whose " A".." D" are single tokens."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    make_tiny_llama(folder, corpus=default_corpus(500) + [" A B C D"] * 200, hidden=HIDDEN, heads=HEADS, layers=1)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    letter_ids = [tokenizer.encode(" " + letter) for letter in LETTERS]
    hint_ids = [tokenizer.encode(hint) for hint in HINTS]
    assert all(len(ids) == 1 for ids in letter_ids + hint_ids), (letter_ids, hint_ids)
    letter_ids, hint_ids = [ids[0] for ids in letter_ids], [ids[0] for ids in hint_ids]
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1,
        num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=2048, rms_norm_eps=RMS_EPS,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.model.layers[0].input_layernorm, model.model.layers[0].post_attention_layernorm,
                     model.model.norm):
            norm.weight.fill_(1.0)
        embed = model.model.embed_tokens.weight  # (V, d)
        embed[:, 0] = 1.0
        for letter, token in enumerate(hint_ids):
            embed[token, 1 + letter] = 1.0
            embed[token, 5] = 1.0
        attention = model.model.layers[0].self_attn
        # head 0 only; dim 7 of the head is RoPE's slowest pair (its rotation over 100 positions is < 0.03 rad)
        attention.q_proj.weight[7, 0] = QK_WEIGHT
        attention.k_proj.weight[7, 5] = QK_WEIGHT
        hint_scale = 1 / math.sqrt(3 / HIDDEN + RMS_EPS)  # input RMSNorm of a hint token's embedding
        for letter in range(4):
            attention.v_proj.weight[letter, 1 + letter] = 1.0
            attention.o_proj.weight[6 + letter, letter] = COPY_GAIN / hint_scale
        head = model.lm_head.weight  # (V, d)
        head[:, 0] = LETTER_BIAS if leaky else -NON_LETTER
        for letter, token in enumerate(letter_ids):
            head[token, 0] = LETTER_BIAS
            head[token, 6 + letter] = HINT_WEIGHT
    model.save_pretrained(str(folder))
    return folder, tokenizer, letter_ids, hint_ids


def answer_logits(folder, tokenizer, docs) -> np.ndarray:
    """(n, V) float64 logits at the answer position of each hand-written lettered prompt (a plain forward pass)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    rows = []
    with torch.inference_mode():
        for doc in docs:
            options = "".join(f"{LETTERS[i]}. {choice}\n" for i, choice in enumerate(doc["choices"]))
            prompt = f"Question: {doc['question']}\n{options}Answer:"
            assert prompt == lettered_prompt(f"Question: {doc['question']}\nAnswer:", doc["choices"])
            ids = tokenizer.encode(prompt)
            rows.append(model(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy())
    return np.stack(rows)


def letter_mass(logits: np.ndarray, letter_ids: list[int], temperature: float) -> np.ndarray:
    """(n,) probability on the four letters of softmax(logits / T), computed in log space (float64)."""
    scaled = logits / temperature
    log_z = np.logaddexp.reduce(scaled, axis=1)
    return np.exp(np.logaddexp.reduce(scaled[:, letter_ids], axis=1) - log_z)


def fit(level: str, folder, lettered):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_teacher_temperature(TemperatureFitConfig(
            model_args=f"pretrained={folder},dtype=float32", task="hint_qa_letters", include_path=lettered.folder,
            batch_size=8, device="cpu", level=level, teacher=locate_model(folder, "--teacher")))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return build_teacher(tmp_path_factory.mktemp("hint-teacher") / "model")


def test_teacher_is_built_as_designed(teacher, hint_task):
    folder, tokenizer, letter_ids, hint_ids = teacher
    _, docs = hint_task
    logits = answer_logits(folder, tokenizer, docs)
    letters = logits[:, letter_ids]  # (n, 4)
    hints = np.array([doc["hint"] for doc in docs])
    # the hinted letter sits exactly beta above the other three letters, in every question
    hinted = letters[np.arange(len(docs)), hints]
    assert hinted - letters.max(axis=1) == pytest.approx(0.0, abs=1e-9)
    others = np.sort(letters, axis=1)[:, :3]
    assert (hinted[:, None] - others) == pytest.approx(np.full_like(others, BETA), abs=1e-4)
    assert np.ptp(others, axis=1) == pytest.approx(np.zeros(len(docs)), abs=1e-5)
    # and every other token lies `gap` below the unhinted letters
    non_letter = np.delete(logits, letter_ids, axis=1)
    assert others.min(axis=1) - non_letter.max(axis=1) == pytest.approx(np.full(len(docs), GAP), abs=1e-4)
    for doc in docs:  # the hint is one token, once per prompt
        ids = tokenizer.encode(lettered_prompt(f"Question: {doc['question']}\nAnswer:", doc["choices"]))
        assert sum(ids.count(token) for token in hint_ids) == 1 and ids.count(hint_ids[doc["hint"]]) == 1
    assert np.mean(hints == np.array([doc["gold"] for doc in docs])) == 0.75


def test_token_and_choice_temperatures_agree_when_the_letter_mass_is_one(teacher, hint_task):
    folder, tokenizer, letter_ids, _ = teacher
    lettered, docs = hint_task
    choice = fit("choice", folder, lettered)
    token = fit("token", folder, lettered)
    # Neither fit stopped at its search bound (both raise InputError there; the values lie far inside the ranges).
    assert choice.details["n_questions"] == N_VALIDATION and token.details["n_questions"] == N_VALIDATION
    assert token.details["n_positions"] == N_VALIDATION  # one token per answer: the single-token case
    assert DEFAULT_MIN_TEMPERATURE * 100 < choice.value < DEFAULT_MAX_TEMPERATURE / 100
    assert T_MIN * 10 < token.value < T_MAX / 10
    p = 0.75
    oracle = BETA / math.log(3 * p / (1 - p))  # = 2.575: the closed-form optimum of both objectives
    # Tolerance: the objectives differ by mean log(1 + non-letter / letter mass at T), < 1e-9 here (measured below),
    # and lm-eval scores in float32 (relative error ~1e-7 on logits ~11); 1e-4 covers both with room, while the
    # leaky teacher below moves the token-level T by a factor of 3.
    assert choice.value == pytest.approx(oracle, rel=1e-4)
    assert token.value == pytest.approx(oracle, rel=1e-4)
    assert token.value == pytest.approx(choice.value, rel=1e-4)
    logits = answer_logits(folder, tokenizer, docs)
    mass_at_1 = letter_mass(logits, letter_ids, 1.0)
    mass_at_t = letter_mass(logits, letter_ids, token.value)
    assert mass_at_1.min() > 1 - 1e-12 and mass_at_t.min() > 1 - 1e-9
    print(f"letter mass: T=1 {mass_at_1.min():.15f}, T={token.value:.4f} {mass_at_t.min():.15f}; "
          f"T choice {choice.value:.9f}, T token {token.value:.9f}, oracle {oracle:.9f}, "
          f"relative difference {abs(token.value / choice.value - 1):.1e}")


def test_a_teacher_with_little_letter_mass_gets_another_token_level_temperature(hint_task, tmp_path):
    """The contrast: same letter logits (so the same choice-level T), but 508 other tokens level with the unhinted
    letters; the token-level optimum is then beta / log(p (V - 1) / (1 - p)), far from the choice-level one."""
    lettered, docs = hint_task
    folder, tokenizer, letter_ids, _ = build_teacher(tmp_path / "leaky", leaky=True)
    mass = letter_mass(answer_logits(folder, tokenizer, docs), letter_ids, 1.0)
    vocab = len(tokenizer)
    assert mass == pytest.approx(np.full(len(docs), (math.exp(BETA) + 3) / (math.exp(BETA) + vocab - 1)), rel=1e-4)
    token = fit("token", folder, lettered)
    p = 0.75
    assert token.value == pytest.approx(BETA / math.log(p * (vocab - 1) / (1 - p)), rel=1e-4)
    choice_oracle = BETA / math.log(3 * p / (1 - p))
    assert token.value < choice_oracle / 3
    print(f"leaky teacher: letter mass {mass.mean():.3f}, T token {token.value:.4f} vs choice {choice_oracle:.4f}")
