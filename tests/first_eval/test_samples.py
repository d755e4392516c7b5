import json
from pathlib import Path

import numpy as np
import pytest

from first_eval.errors import InputError
from first_eval.lm_eval_bridge.samples import read_samples_path, task_name_from_path
from first_demo.synthetic import SyntheticTask, write_samples_file

TASK = SyntheticTask("synth_mixed", 300, (2, 3, 4, 5), sharpness=2.0, length_penalty=0.1)


@pytest.fixture()
def samples_file(tmp_path: Path) -> Path:
    return write_samples_file(TASK, tmp_path, seed=3)


def test_task_name_comes_from_lm_eval_file_name():
    assert task_name_from_path(Path("samples_arc_easy_2024-05-01T12-00-00.123456.jsonl")) == "arc_easy"
    assert task_name_from_path(Path("samples_mmlu_high_school_physics_2025-01-01T00-00-00.000001.jsonl")) == "mmlu_high_school_physics"
    assert task_name_from_path(Path("mine.jsonl")) is None


def test_stringified_file_gives_lm_eval_accuracy_in_both_score_modes(samples_file):
    (task,) = read_samples_path(samples_file)
    assert task.task == "synth_mixed"
    assert task.n_questions == 300
    assert set(np.diff(task.offsets)) == {2, 3, 4, 5}
    correct_sum = task.choice_scores("sum").probabilities().correct.astype(float)
    correct_norm = task.choice_scores("char-norm").probabilities().correct.astype(float)
    np.testing.assert_array_equal(correct_sum, task.recorded["acc"])
    np.testing.assert_array_equal(correct_norm, task.recorded["acc_norm"])
    assert (correct_sum != correct_norm).any(), "the length penalty should make the modes disagree somewhere"


def test_char_lengths_exclude_the_target_delimiter(samples_file):
    (task,) = read_samples_path(samples_file)
    first = json.loads(samples_file.read_text().splitlines()[0])
    assert task.char_lengths[: len(first["doc"]["choices"])].tolist() == [len(c) for c in first["doc"]["choices"]]


def test_results_json_with_in_memory_samples_reads_the_same(tmp_path, samples_file):
    records = [json.loads(line) for line in samples_file.read_text().splitlines()]
    # In-memory form: typed values, arguments as (context, continuation) pairs.
    for record in records:
        record["filtered_resps"] = [(float(ll), greedy == "True") for ll, greedy in record["filtered_resps"]]
        record["target"] = int(record["target"])
        record["arguments"] = [(a["arg_0"], a["arg_1"]) for a in record["arguments"].values()]
    results = tmp_path / "results_2026.json"
    results.write_text(json.dumps({"results": {"other": {}}, "samples": {"synth_copy": records}}))
    (from_json,) = read_samples_path(results)
    (from_jsonl,) = read_samples_path(samples_file)
    assert from_json.task == "synth_copy"
    np.testing.assert_array_equal(from_json.loglik_sums, from_jsonl.loglik_sums)
    np.testing.assert_array_equal(from_json.char_lengths, from_jsonl.char_lengths)
    np.testing.assert_array_equal(from_json.gold, from_jsonl.gold)


def test_target_given_as_choice_text_is_mapped_to_its_index(tmp_path):
    record = {"doc_id": 0, "target": "blue", "filtered_resps": [["-1.0", "False"], ["-2.0", "False"]],
              "arguments": {"gen_args_0": {"arg_0": "Q:", "arg_1": " red"}, "gen_args_1": {"arg_0": "Q:", "arg_1": " blue"}}}
    path = tmp_path / "samples_t_2026-01-01T00-00-00.000000.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (task,) = read_samples_path(path)
    assert task.gold.tolist() == [1]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def good_line(**overrides) -> str:
    record = {"doc_id": 0, "target": "0", "filtered_resps": [["-1.5", "False"], ["-2.5", "False"]], "filter": "none"}
    record.update(overrides)
    return json.dumps(record)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ([good_line(), "{not json"], r"line 2: not valid JSON"),
        ([good_line(filtered_resps=["The answer is 42."])], "not a \\(log-likelihood, is_greedy\\) pair: calibration needs a multiple-choice"),
        ([good_line(filtered_resps=[["nan", "False"], ["-1", "False"]])], r"line 1: field 'filtered_resps\[0\]\[0\]' is 'nan'; log-likelihoods must be finite"),
        ([good_line(filtered_resps=[["-inf", "False"], ["-1", "False"]])], "must be finite"),
        ([good_line(target="7")], r"line 1: field 'target' is 7, outside the 2 choices \(0..1\)"),
        ([good_line(filtered_resps=[["-1", "False"]])], "has 1 choice"),
        ([good_line(target=None)], "field 'target' is None"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "samples_bad_2026-01-01T00-00-00.000000.jsonl"
    if content is not None:
        write_lines(path, content) if isinstance(content, list) else path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_samples_path(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_filters_keep_one_record_per_doc(tmp_path):
    lines = [good_line(doc_id=0, filter="a"), good_line(doc_id=0, filter="b"), good_line(doc_id=1, filter="a")]
    (task,) = read_samples_path(write_lines(tmp_path / "samples_f_2026-01-01T00-00-00.000000.jsonl", lines))
    assert task.n_questions == 2


def test_tasks_that_score_themselves_are_refused(tmp_path):
    # truthfulqa_mc2 records its own "acc" as probability mass on the true answers.
    line = good_line(acc=0.37)
    path = write_lines(tmp_path / "samples_truthfulqa_mc2_2026-01-01T00-00-00.000000.jsonl", [line])
    with pytest.raises(InputError, match="field 'acc' is 0.37, not 0 or 1"):
        read_samples_path(path)


def test_tempered_divides_every_choice_score_by_the_temperature(samples_file):
    from scipy.special import softmax

    (task,) = read_samples_path(samples_file)
    for temperature in (0.5, 2.5):
        probs = task.tempered(temperature).choice_scores("sum").probabilities()
        for i in range(task.n_questions):
            segment = slice(task.offsets[i], task.offsets[i + 1])
            np.testing.assert_allclose(probs.choice_probs[segment], softmax(task.loglik_sums[segment] / temperature),
                                       rtol=1e-10, atol=1e-300)
    with pytest.raises(ValueError, match="-1"):
        task.tempered(-1.0)


def choice_record(continuations: list[str], lls: list[float], target) -> dict:
    return {"doc_id": 0, "target": target, "filtered_resps": [[str(ll), "False"] for ll in lls],
            "arguments": {f"gen_args_{j}": {"arg_0": "Q:", "arg_1": c} for j, c in enumerate(continuations)}}


def test_the_delimiter_is_stripped_only_when_every_choice_starts_with_it(tmp_path):
    """lm-eval's acc_norm divides by len(choice); the continuation is target_delimiter + choice. A task with an empty
    delimiter whose choices happen to start with a space (here only the first) keeps every character."""
    path = tmp_path / "samples_t_2026-01-01T00-00-00.000000.jsonl"
    # [" yes", "no"]: lengths 4 and 2, so char-norm scores -3/4 = -0.75 > -1.6/2 = -0.8 and picks choice 0;
    # lengths 3 and 2 (one space stripped) would pick choice 1 (-1.0 < -0.8).
    records = [choice_record([" yes", "no"], [-3.0, -1.6], "0"),
               choice_record(["  a", " bb"], [-2.0, -2.5], "1")]  # every choice starts with " ": one stripped
    records[1]["doc_id"] = 1
    write_lines(path, [json.dumps(r) for r in records])
    (task,) = read_samples_path(path)
    assert task.char_lengths.tolist() == [4.0, 2.0, 2.0, 2.0]
    assert task.choice_scores("char-norm").probabilities().predictions.tolist() == [0, 0]
    # a choice given as text is matched against the same (unstripped) choices
    write_lines(path, [json.dumps(choice_record([" yes", "no"], [-3.0, -1.6], "no"))])
    (task,) = read_samples_path(path)
    assert task.gold.tolist() == [1]
