"""``--format letters``: lettered variants built from each task's own definition, letter mass, the raw form."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from first_eval.errors import InputError
from first_eval.letter_mass import letter_summary
from first_eval.lm_eval_bridge.lettered import is_letter_sequence, lettered_prompt, prepare_lettered_tasks
from first_eval.lm_eval_bridge.local_tasks import plan_local_tasks
from first_eval.lm_eval_bridge.task_lookup import find_task_definitions
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

FIRST = [sys.executable, "-m", "first_eval.cli"]


def test_lettered_prompt_hand_worked():
    assert lettered_prompt("Question: Which is a fruit?\nAnswer:", ["apple", "chair "]) == (
        "Question: Which is a fruit?\nA. apple\nB. chair\nAnswer:")
    # No answer cue to drop; a question text ending in "A:" (Q/A style) loses it.
    assert lettered_prompt("Is water wet?", ["no", "yes"]) == "Is water wet?\nA. no\nB. yes\nAnswer:"
    assert lettered_prompt("Q: 2+2?\nA:", ["3", "4"]) == "Q: 2+2?\nA. 3\nB. 4\nAnswer:"
    with pytest.raises(ValueError, match="27 choices"):
        lettered_prompt("q", [str(i) for i in range(27)])
    assert is_letter_sequence(["A", "B", "C"]) and not is_letter_sequence(["B", "A"]) and not is_letter_sequence(["A"])


@pytest.fixture(scope="module")
def lettered(shared_datasets, tmp_path_factory):
    return prepare_lettered_tasks(["arc_easy", "commonsense_qa", "boolq"], tmp_path_factory.mktemp("letters"),
                                  data_dir=shared_datasets)


def test_variant_renders_every_document_from_the_task_definition(lettered, shared_datasets):
    arc = next(t for t in lettered.tasks if t.source_task == "arc_easy")
    assert arc.name == "arc_easy_letters" and not arc.already_lettered
    raw = [json.loads(line) for line in (shared_datasets / "arc_easy" / "test.jsonl").read_text().splitlines()]
    assert arc.n_docs["test"] == len(raw)
    docs = [json.loads(line) for line in (arc.yaml_path.parent.parent / "data" / "arc_easy_letters" / "test.jsonl")
            .read_text().splitlines()]
    # Independent oracle: lm-eval's arc_easy prompt is "Question: {{question}}\nAnswer:", choices choices.text,
    # gold the index of answerKey in choices.label.
    for row, doc in zip(raw[:50], docs[:50]):
        options = "".join(f"\n{'ABCDE'[i]}. {text.strip()}" for i, text in enumerate(row["choices"]["text"]))
        assert doc["query"] == f"Question: {row['question']}{options}\nAnswer:"
        assert doc["gold"] == row["choices"]["label"].index(row["answerKey"])
        assert doc["choices"] == list("ABCDE"[: len(row["choices"]["text"])])


def test_already_lettered_task_runs_unchanged_and_stand_in_splits_are_not_training_data(lettered):
    csqa = next(t for t in lettered.tasks if t.source_task == "commonsense_qa")
    assert csqa.already_lettered and csqa.name == "commonsense_qa" and "include:" in csqa.yaml_path.read_text()
    assert "runs unchanged" in csqa.note
    boolq = next(t for t in lettered.tasks if t.source_task == "boolq")
    # The shared boolq has no train split (its 0-shot few-shot source is a stand-in for validation): the
    # lettered variant must not declare validation documents as a training split.
    assert set(boolq.n_docs) == {"validation"}
    assert "training_split" not in boolq.yaml_path.read_text()


def test_refuses_more_than_26_choices_and_generation_tasks(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"q": "pick", "options": [f"o{i}" for i in range(27)], "gold": 3}) + "\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "wide.yaml").write_text(
        "task: wide_choices\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(data) +
        "\noutput_type: multiple_choice\ntest_split: test\ndoc_to_text: q\ndoc_to_choice: options\ndoc_to_target: gold\n")
    with pytest.raises(InputError, match=r"wide_choices document 0 of split 'test' has 27 choices; letters go up to 26"):
        prepare_lettered_tasks(["wide_choices"], tmp_path / "out", include_path=tasks)
    with pytest.raises(InputError, match="calibration needs multiple-choice tasks; gsm8k is generate_until"):
        prepare_lettered_tasks(["gsm8k"], tmp_path / "out2", data_dir=tmp_path)


def test_data_dir_maps_dataset_path_and_name_to_folders(shared_datasets, tmp_path):
    (planned,) = plan_local_tasks(find_task_definitions(["mmlu_abstract_algebra"]), shared_datasets, tmp_path)
    assert planned.data_files["test"] == (shared_datasets / "mmlu" / "abstract_algebra" / "test.jsonl").resolve()


def test_letter_summary_hand_worked():
    # Two questions: letters' probabilities 0.5/0.3 (mass 0.8) and 0.1/0.1/0.2 (mass 0.4).
    logliks = np.log([0.5, 0.3, 0.1, 0.1, 0.2])
    offsets = np.array([0, 2, 5])
    gold = np.array([0, 1])
    greedy = np.array([True, False, False, False, False])  # question 2's greedy token is not a letter
    summary = letter_summary(logliks, offsets, gold, greedy, n_bins=10)
    assert summary.mean_mass == pytest.approx(0.6) and summary.share_below_half == 0.5
    assert summary.raw_accuracy == 0.5 and summary.raw_mean_confidence == pytest.approx(0.35)
    # bins: 0.5 (correct) and 0.2 (wrong): |1 - 0.5| / 2 + |0 - 0.2| / 2
    assert summary.raw_ece == pytest.approx(0.35)
    assert summary.raw_brier == pytest.approx(((0.5 - 1) ** 2 + 0.2 ** 2) / 2)
    assert letter_summary(logliks, offsets, gold, None).raw_accuracy is None


def test_unrenormalised_correct_means_the_gold_letter_is_the_greedy_token():
    # question 1: the model's top letter A (0.6) is its greedy token but the gold is B: wrong at confidence 0.6;
    # question 2: gold B is both the top letter and the greedy token: right at confidence 0.7
    logliks = np.log([0.6, 0.3, 0.2, 0.7])
    summary = letter_summary(logliks, np.array([0, 2, 4]), np.array([1, 1]), np.array([True, False, False, True]),
                             n_bins=10)
    assert summary.raw_accuracy == 0.5
    assert summary.raw_brier == pytest.approx((0.6 ** 2 + 0.3 ** 2) / 2)
    assert summary.raw_auroc == 1.0  # the right answer is the more confident one


@pytest.fixture(scope="module")
def letters_report(shared_datasets, tiny_llama_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("letters-report") / "run"
    done = subprocess.run(FIRST + ["report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}",
                                   "--tasks", "arc_easy", "--data-dir", str(shared_datasets), "--limit", "20",
                                   "--format", "letters", "--device", "cpu", "--bootstrap", "50", "--output", str(out)],
                          capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_live_letters_run_reports_letter_mass_from_lm_evals_own_loglikelihoods(letters_report):
    metrics = json.loads((letters_report / "metrics.json").read_text())["tasks"]["arc_easy_letters"]
    (samples_file,) = letters_report.glob("lm-eval/**/samples_arc_easy_letters_*.jsonl")
    records = [json.loads(line) for line in samples_file.read_text().splitlines()]
    # Oracle straight from lm-eval's saved records: the continuations are " A".." D" and the letter mass is
    # the sum of exp(loglik) over them.
    masses, raw_correct = [], []
    for record in records:
        responses = [float(r[0]) for r in record["filtered_resps"]]
        assert [a["arg_1"] for a in record["arguments"].values()] == [" A", " B", " C", " D"][: len(responses)]
        masses.append(sum(math.exp(v) for v in responses))
        raw_correct.append(record["filtered_resps"][int(record["target"])][1] == "True")
    assert metrics["letters"]["mean_mass"] == pytest.approx(np.mean(masses))
    assert metrics["letters"]["unrenormalised"]["accuracy"] == pytest.approx(np.mean(raw_correct))
    assert any("as a lettered question" in note for note in metrics["notes"])
    html = (letters_report / "report.html").read_text()
    assert "Letter mass" in html and "unrenormalised" in html


def test_letters_and_chat_flags_are_refused_where_they_cannot_apply(tiny_llama_dir, tmp_path):  # noqa: F811
    cases = [
        (["report", "--samples", str(tmp_path), "--format", "letters"], "--format letters applies to a live run"),
        (["report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}", "--tasks", "arc_easy",
          "--format", "letter"], "--format 'letter': must be one of cloze, letters"),
        (["report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}", "--tasks", "arc_easy",
          "--apply-chat-template"], "has no chat template"),
    ]
    for number, (args, message) in enumerate(cases):
        out = tmp_path / f"out{number}"
        done = subprocess.run(FIRST + args + ["--output", str(out)], capture_output=True, text=True)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
        assert not out.exists()
