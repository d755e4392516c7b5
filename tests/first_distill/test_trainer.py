"""Variants, trainer settings and ``train_student`` on tiny Llamas (CPU, one torch thread).

The world: the session's tiny random Llama is the teacher; the student shares its tokenizer with other random
weights; three real stores are extracted from the teacher (tempered top-k, untempered top-k, sampled).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from first_distill.train import TrainConfig, train_student
from first_distill.trainer import LR_SCHEDULERS, TrainerSettings
from first_distill.variants import (
    ONLINE_TEACHER, SAMPLED, TEMPERED_TOPK, UNTEMPERED_TOPK, VARIANTS, get_variant, knowledge_needed, parse_variants)
from first_eval.errors import InputError
from tiny_models import default_corpus, make_tiny_llama, tiny_llama_dir  # noqa: F401  (session fixture)

PAIRS = [
    ("Question: Which gas do plants take in from the air?\nAnswer:", " carbon dioxide"),
    ("Question: Is the sky blue on a clear day?\nAnswer:", " yes"),
    ("The sun rises in the", " east and sets in the west"),
    ("Water freezes at", " zero degrees Celsius"),
    ("A magnet sticks to a refrigerator door because", " the door contains iron"),
    ("Q: 2+2?\nA:", " 4"),
    ("Question: What do green algae supply to the fungi?\nAnswer:", " food"),
    ("Water boils at", " one hundred degrees"),
    ("Which organ pumps blood?", " the heart"),
    ("Plants make food by", " photosynthesis"),
    ("Ice is", " frozen water"),
    ("The moon orbits the", " earth"),
]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs), encoding="utf-8")
    return path


def make_student(teacher_dir: Path, folder: Path, seed: int = 7) -> Path:
    """The teacher's tokenizer and architecture, other random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(teacher_dir)))
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(teacher_dir)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def world(tmp_path_factory, tiny_llama_dir):  # noqa: F811
    from first_distill.teacher.extract import ExtractConfig, extract_knowledge

    root = tmp_path_factory.mktemp("trainer-world")
    train = write_pairs(root / "train.jsonl")
    common = dict(teacher=tiny_llama_dir, train=train, progress=False, device="cpu", prob_bits=16)
    extract_knowledge(ExtractConfig(output=root / "tempered", teacher_temperature=0.1, **common))
    extract_knowledge(ExtractConfig(output=root / "untempered", teacher_temperature="none", **common))
    extract_knowledge(ExtractConfig(output=root / "sampled", teacher_temperature=0.1, selection="sample",
                                    samples_per_position=16, **common))
    return {"root": root, "teacher": tiny_llama_dir, "student": make_student(tiny_llama_dir, root / "student"),
            "train": train, "tempered": root / "tempered", "untempered": root / "untempered", "sampled": root / "sampled"}


def config_for(world, output: Path, variants=("first",), resume: bool = False, **settings) -> TrainConfig:
    """A run on the world's stores; ``settings``: TrainerSettings fields (short, constant-rate runs by default)."""
    defaults = dict(max_steps=3, batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, save_steps=1000,
                    progress=False, lr_scheduler="constant")
    defaults.update(settings)
    return TrainConfig(student=world["student"], output=output, variants=tuple(variants),
                       stores={"tempered-topk": world["tempered"], "untempered-topk": world["untempered"],
                               "sampled": world["sampled"]},
                       teacher=world["teacher"], train=world["train"], settings=TrainerSettings(**defaults),
                       resume=resume)


def state_dict(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# --------------------------------------------------------------------------------------------- variants


def test_registry_declares_loss_and_knowledge():
    assert set(VARIANTS) == {"first", "topk-notemp", "topk-tail", "rs-kd", "full-kd", "ce", "label-smoothing"}
    assert (VARIANTS["first"].loss_name, VARIANTS["first"].knowledge) == ("topk_kl", TEMPERED_TOPK)
    assert (VARIANTS["topk-notemp"].loss_name, VARIANTS["topk-notemp"].knowledge) == ("topk_kl", UNTEMPERED_TOPK)
    assert VARIANTS["topk-tail"].knowledge == TEMPERED_TOPK and VARIANTS["rs-kd"].knowledge == SAMPLED
    assert VARIANTS["full-kd"].knowledge == ONLINE_TEACHER
    assert VARIANTS["ce"].knowledge is None and VARIANTS["label-smoothing"].label_smoothing_epsilon == 0.1
    # one store per kind, shared by the variants that need it
    assert knowledge_needed(parse_variants(["topk-tail", "first", "ce", "rs-kd"])) == (TEMPERED_TOPK, SAMPLED)
    assert [v.name for v in parse_variants(["ce", "first", "ce"])] == ["ce", "first"]


def test_unknown_variant_suggests_the_closest():
    with pytest.raises(InputError, match=r"unknown variant 'frist'\. Did you mean 'first'\?"):
        get_variant("frist")
    with pytest.raises(InputError, match="empty"):
        parse_variants([])


def test_each_variant_computes_its_loss_function():
    """Each variant's loss against torch written out here (not first_distill.losses): the renormalised top-k KL,
    the top-k KL with a tail bucket, the sampled cross-entropy, the full KL from softmax(teacher / T)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    temperature = 0.5
    logits, teacher = torch.randn(2, 5, 11, dtype=torch.float64), torch.randn(2, 5, 11, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True, False], [True, True, False, True, True]])
    labels = torch.randint(0, 11, (2, 5))
    probs, ids = torch.softmax(teacher / temperature, -1).topk(3, -1)  # (2, 5, 3): sums < 1
    batch = {"loss_mask": mask, "labels": labels, "topk_ids": ids, "topk_probs": probs}

    def kl(p, log_q):  # (N, m) rows -> mean over rows of sum p log(p / q)
        return (p * (p.log() - log_q)).sum(-1).mean()

    student_log_q = torch.log_softmax(logits, -1)[mask]  # (N, V)
    gathered = logits.gather(-1, ids)[mask]  # (N, 3)
    p_top, q_top = probs[mask], student_log_q.gather(-1, ids[mask]).exp()
    with_tail = lambda x: torch.cat([x, 1 - x.sum(-1, keepdim=True)], -1)  # noqa: E731
    expected = {
        "first": kl(p_top / p_top.sum(-1, keepdim=True), torch.log_softmax(gathered, -1)),
        "topk-notemp": kl(p_top / p_top.sum(-1, keepdim=True), torch.log_softmax(gathered, -1)),
        "topk-tail": kl(with_tail(p_top), with_tail(q_top).log()),
        "rs-kd": -(p_top * student_log_q.gather(-1, ids[mask])).sum(-1).mean(),
        "full-kd": kl(torch.softmax(teacher / temperature, -1)[mask], student_log_q),
        "ce": F.cross_entropy(logits[mask], labels[mask]),
        "label-smoothing": F.cross_entropy(logits[mask], labels[mask], label_smoothing=0.1)}
    assert set(expected) == set(VARIANTS)
    for name, value in expected.items():
        got = VARIANTS[name].compute_loss(logits, batch, teacher_logits=teacher, teacher_temperature=temperature)
        torch.testing.assert_close(got, value, rtol=1e-9, atol=1e-12, msg=name)
    # the teacher temperature reaches full-kd (and only the teacher is tempered)
    untempered = VARIANTS["full-kd"].compute_loss(logits, batch, teacher_logits=teacher, teacher_temperature=1.0)
    assert abs(untempered - expected["full-kd"]) > 0.1


def test_settings_map_onto_training_arguments(tmp_path):
    import torch

    args = TrainerSettings(batch_size=3, gradient_accumulation_steps=2, save_steps=7, seed=5).training_arguments(tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.save_steps) == (3, 2, 7)
    assert args.report_to in ([], ["none"], "none") and args.remove_unused_columns is False
    cuda = torch.cuda.is_available()
    assert args.dataloader_num_workers == 0 and args.use_cpu is (not cuda)
    assert args.bf16 is (cuda and torch.cuda.is_bf16_supported())
    assert TrainerSettings(use_cpu=True).training_arguments(tmp_path).use_cpu is True
    assert args.logging_steps == 1 and args.seed == args.data_seed == 5
    with pytest.raises(InputError) as caught:
        TrainerSettings(batch_size=0, learning_rate=-1, warmup_ratio=1.0, lr_scheduler="cosinus")
    assert str(caught.value).count("; ") == 3 and str(caught.value).startswith("--batch-size 0")


# ------------------------------------------------------------------------------------------ training


def test_every_variant_trains_and_saves_a_loadable_student(world, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = train_student(config_for(world, tmp_path / "run", variants=tuple(VARIANTS)))
    initial = state_dict(world["student"])
    assert [s.variant for s in result.students] == list(VARIANTS)
    assert result.teacher_temperature == pytest.approx(0.1)  # full-kd's T: the tempered store's
    weights = {}
    for student in result.students:
        log = json.loads(student.log_path.read_text())
        assert [entry["step"] for entry in log["steps"]] == [1, 2, 3] and student.steps == 3
        assert all(np.isfinite(entry["loss"]) for entry in log["steps"])
        assert student.tokens > 0 and student.model_dir == tmp_path / "run" / student.variant / "model"
        model = AutoModelForCausalLM.from_pretrained(str(student.model_dir))  # what lm-eval's hf model does
        assert AutoTokenizer.from_pretrained(str(student.model_dir)).get_vocab() == \
            AutoTokenizer.from_pretrained(str(world["student"])).get_vocab()
        assert model.config.use_cache is True
        weights[student.variant] = state_dict(student.model_dir)
        assert not torch.equal(weights[student.variant]["model.norm.weight"], initial["model.norm.weight"])
    # the losses differ, so the students do (topk-notemp and first differ by the store's temperature)
    names = list(weights)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.equal(weights[a]["model.norm.weight"], weights[b]["model.norm.weight"]), (a, b)
    saved = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert [s["variant"] for s in saved["students"]] == list(VARIANTS)


def test_variants_see_the_same_batches_in_the_same_order(world, tmp_path, monkeypatch):
    from first_distill.trainer import DistillationTrainer

    seen: dict[str, list[list[int]]] = {}
    original = DistillationTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        seen.setdefault(self.variant.name, []).append(inputs["sequence_index"].tolist())
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", recording)
    train_student(config_for(world, tmp_path / "run", variants=("first", "ce", "rs-kd"), max_steps=4))
    assert seen["first"] == seen["ce"] == seen["rs-kd"]
    order = [i for batch in seen["first"][:3] for i in batch]  # the first epoch: every example once, shuffled
    assert sorted(order) == list(range(len(PAIRS))) and order != sorted(order)


@pytest.mark.parametrize("teacher_temperature, expected_t", [(None, 0.1), (2.0, 2.0)])
def test_full_kd_trains_against_the_teacher_at_its_temperature(world, tmp_path, monkeypatch, teacher_temperature,
                                                                expected_t):
    """full-kd's first logged loss is KL(softmax(teacher / T) || softmax(student)) on the batch it saw, at the
    initial weights, by hand; T is the tempered store's (0.1) unless --teacher-temperature overrides it."""
    import torch
    from transformers import AutoModelForCausalLM

    from first_distill.trainer import DistillationTrainer

    seen = []
    original = DistillationTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        seen.append({key: value.clone() for key, value in inputs.items() if torch.is_tensor(value)})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", recording)
    config = replace(config_for(world, tmp_path / "run", variants=("full-kd",), max_steps=1),
                     teacher_temperature=teacher_temperature)
    result = train_student(config)
    assert result.teacher_temperature == pytest.approx(expected_t)
    logged = json.loads(result.students[0].log_path.read_text())["steps"][0]["loss"]

    batch = seen[0]
    models = [AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float64).eval()
              for folder in (world["student"], world["teacher"])]
    with torch.no_grad():
        student, teacher = (m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits for m in models)
    mask = batch["loss_mask"]
    p = torch.softmax(teacher[mask] / expected_t, -1)
    expected = (p * (p.log() - torch.log_softmax(student[mask], -1))).sum(-1).mean()
    assert logged == pytest.approx(float(expected), rel=1e-4)
    p_untempered = torch.softmax(teacher[mask], -1)
    assert abs(logged - float((p_untempered * (p_untempered.log() - torch.log_softmax(student[mask], -1))).sum(-1).mean())) > 1e-3


def test_lm_eval_scores_a_trained_student(world, tmp_path):
    """lm-eval's ``hf`` model loads the saved student; its log-likelihood equals one computed by hand."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    from first_distill.training_data import TrainingExample, tokenize_example

    result = train_student(config_for(world, tmp_path / "run", variants=("first",), max_steps=2))
    folder = result.students[0].model_dir
    lm = HFLM(pretrained=str(folder), device="cpu", batch_size=1)
    (logprob, _), = lm.loglikelihood([Instance("loglikelihood", {}, ("Water freezes at", " zero degrees"), 0)])

    example = tokenize_example(TrainingExample("Water freezes at", " zero degrees"), lm.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.from_numpy(example.input_ids)[None]).logits[0], -1)
    targets = torch.from_numpy(example.input_ids[example.completion_start:])
    expected = log_probs[example.completion_start - 1:-1].gather(-1, targets[:, None]).sum()
    assert logprob == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("variant", ["first", "ce"])
def test_training_loss_decreases(variant, world, tmp_path):
    result = train_student(config_for(world, tmp_path / variant, variants=(variant,), max_steps=15))
    losses = [entry["loss"] for entry in json.loads(result.students[0].log_path.read_text())["steps"]]
    assert len(losses) == 15
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses  # first: ~0.1x, ce: ~0.7x


def test_gradient_accumulation_matches_one_big_batch(world, tmp_path):
    """Examples with equal completion lengths: the mean of two micro-batch means is the mean over the batch,
    so one step of 2 x 2 (accumulated) equals one step of 4."""
    from transformers import AutoTokenizer

    from first_distill.training_data import TrainingExample, tokenize_examples

    tokenizer = AutoTokenizer.from_pretrained(str(world["student"]))
    counts = [e.n_completion for e in tokenize_examples([TrainingExample(p, c) for p, c in PAIRS], tokenizer)]
    most = max(set(counts), key=counts.count)
    same = [pair for pair, count in zip(PAIRS, counts) if count == most]
    same = (same * 4)[:4]  # ce reads no store, so repeated examples are fine
    train = write_pairs(tmp_path / "same.jsonl", same)
    base = dict(variants=("ce",), max_steps=1, learning_rate=1e-2)
    one = train_student(replace(config_for(world, tmp_path / "one", **base, batch_size=4), train=train))
    two = train_student(replace(config_for(world, tmp_path / "two", **base, batch_size=2, gradient_accumulation_steps=2),
                                train=train))
    # Adam's first step is about lr * sign(gradient), which float noise in near-zero gradients flips: compare
    # the logged loss and gradient norm (before clipping) of the step instead of the weights.
    (a,), (b,) = ([json.loads(r.students[0].log_path.read_text())["steps"][0]] for r in (one, two))
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


# ----------------------------------------------------------------------------------------- refusals


def test_a_student_with_another_tokenizer_is_refused(world, tmp_path):
    other = make_tiny_llama(tmp_path / "other", corpus=default_corpus()[::-1][:600])  # same size, other merges
    config = config_for(world, tmp_path / "run")
    with pytest.raises(InputError, match="tokenizer sha256") as caught:
        train_student(replace(config, student=other))
    assert "\n" not in str(caught.value) and "tempered-topk store" in str(caught.value)
    with pytest.raises(InputError, match="tokenizers differ: teacher sha256"):
        train_student(replace(config, student=other, variants=("full-kd",), teacher_temperature=1.0))
    assert not (tmp_path / "run").exists()


def test_missing_knowledge_and_bad_settings_are_reported_together(world, tmp_path):
    with pytest.raises(InputError) as caught:  # settings are checked once, where they are built
        TrainerSettings(batch_size=0, warmup_ratio=1.0, lr_scheduler="cosin")
    assert str(caught.value) == ("--batch-size 0: must be a whole number >= 1; warmup_ratio 1.0: must be a number in "
                                 "[0, 1); lr_scheduler 'cosin': must be " + ", ".join(LR_SCHEDULERS[:-1])
                                 + " or " + LR_SCHEDULERS[-1])
    with pytest.raises(InputError) as caught:
        TrainConfig(student=world["student"], output=tmp_path / "run", variants=("first", "rs-kd", "full-kd"),
                    train=world["train"], train_limit=0, stores={"tempered": world["tempered"]})
    message = str(caught.value)
    for part in ("--limit 0", "stores: unknown knowledge kind(s) 'tempered'", "variant first needs the tempered-topk store",
                 "rs-kd needs the sampled store", "full-kd needs the teacher"):
        assert part in message
    with pytest.raises(InputError, match="unknown variant 'cee'"):
        replace(config_for(world, tmp_path / "run"), variants=("cee",))
    assert not (tmp_path / "run").exists()


def test_stores_of_other_data_or_the_wrong_kind_are_refused(world, tmp_path):
    fewer = write_pairs(tmp_path / "fewer.jsonl", PAIRS[:5])
    with pytest.raises(InputError, match="extracted from training file"):
        train_student(replace(config_for(world, tmp_path / "a"), train=fewer))
    with pytest.raises(InputError, match="holds 12 sequences but the training data has 5 examples"):
        train_student(replace(config_for(world, tmp_path / "b"), train_limit=5))
    with pytest.raises(InputError, match="topk-notemp needs an untempered store"):
        train_student(replace(config_for(world, tmp_path / "c", variants=("topk-notemp",)),
                              stores={"untempered-topk": world["tempered"]}))
    with pytest.raises(InputError, match="--selection sample"):
        train_student(replace(config_for(world, tmp_path / "d", variants=("rs-kd",)),
                              stores={"sampled": world["tempered"]}))


def test_an_existing_run_is_not_overwritten(world, tmp_path):
    train_student(config_for(world, tmp_path / "run", variants=("ce",), max_steps=1))
    with pytest.raises(InputError, match="already holds a training run.*--resume"):
        train_student(config_for(world, tmp_path / "run", variants=("ce",), max_steps=1))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        train_student(config_for(world, tmp_path / "junk", variants=("ce",), max_steps=1))
    shutil.rmtree(tmp_path / "junk")
