"""Live lm-eval runs, offline, with a tiny random Llama: our accuracy is lm-eval's, files re-read the same."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from first_eval.errors import InputError
from first_eval.lm_eval_bridge import LiveRunConfig, check_model, run_lm_eval
from first_eval.lm_eval_bridge.samples import read_samples_path
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

TASKS = ["arc_easy", "arc_challenge", "commonsense_qa", "boolq", "openbookqa", "piqa", "truthfulqa_mc1"]
WITH_ACC_NORM = {"arc_easy", "arc_challenge", "openbookqa", "piqa"}
LIMIT = 12


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run ~100x faster on one thread than on two contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NetworkAttempts:
    """Records (and refuses) every socket connection and DNS lookup made while installed."""

    def __init__(self) -> None:
        self.addresses: list[object] = []
        self._originals = (socket.socket.connect, socket.getaddrinfo)

    def __enter__(self) -> "NetworkAttempts":
        attempts = self.addresses

        def refuse_connect(sock, address):
            attempts.append(address)
            raise OSError(f"test forbids network access (to {address!r})")

        def refuse_lookup(host, *args, **kwargs):
            attempts.append(host)
            raise socket.gaierror(f"test forbids network access (lookup of {host!r})")

        socket.socket.connect = refuse_connect
        socket.getaddrinfo = refuse_lookup
        return self

    def __exit__(self, *exc) -> None:
        socket.socket.connect, socket.getaddrinfo = self._originals


@pytest.fixture(scope="module")
def live_run(shared_datasets, tiny_llama_dir, tmp_path_factory, one_thread):  # noqa: F811
    with NetworkAttempts() as network:
        result = run_lm_eval(
            LiveRunConfig(
                tasks=TASKS,
                output_dir=tmp_path_factory.mktemp("live") / "out",
                model_args=f"pretrained={tiny_llama_dir},dtype=float32",
                data_dir=shared_datasets,
                limit=LIMIT,
                device="cpu",
            )
        )
    return result, network.addresses


def by_task(result):
    return {samples.task: samples for samples in result.task_samples}


def test_run_makes_no_network_attempt(live_run):
    _, attempts = live_run
    assert attempts == []


@pytest.mark.parametrize("task", TASKS)
def test_our_accuracy_is_lm_evals_acc_exactly(live_run, task):
    result, _ = live_run
    samples = by_task(result)[task]
    assert samples.n_questions == LIMIT
    assert samples.source == "lm-eval run"
    lm_eval_row = result.results["results"][task]
    assert samples.choice_scores("sum").probabilities().correct.mean() == lm_eval_row["acc,none"]
    assert result.lm_eval_metrics[task]["acc"] == lm_eval_row["acc,none"]
    np.testing.assert_array_equal(samples.choice_scores("sum").probabilities().correct, samples.recorded["acc"])
    if task in WITH_ACC_NORM:
        assert samples.choice_scores("char-norm").probabilities().correct.mean() == lm_eval_row["acc_norm,none"]
        assert result.lm_eval_metrics[task]["acc_norm"] == lm_eval_row["acc_norm,none"]


@pytest.mark.parametrize("task", TASKS)
def test_saved_samples_file_reads_back_identical_to_the_in_memory_records(live_run, task):
    result, _ = live_run
    path = result.samples_paths[task]
    assert path.name.startswith(f"samples_{task}_") and path.suffix == ".jsonl"
    (from_file,) = read_samples_path(path)
    in_memory = by_task(result)[task]
    assert from_file.task == task
    for field in ("loglik_sums", "offsets", "gold", "doc_ids"):
        np.testing.assert_array_equal(getattr(from_file, field), getattr(in_memory, field))
    if in_memory.char_lengths is None:
        assert from_file.char_lengths is None
    else:
        np.testing.assert_array_equal(from_file.char_lengths, in_memory.char_lengths)
    for mode in ("sum", "char-norm"):
        np.testing.assert_array_equal(
            from_file.choice_scores(mode).probabilities().choice_probs, in_memory.choice_scores(mode).probabilities().choice_probs
        )


def test_results_file_is_lm_evals_own_json_where_its_cli_puts_it(live_run, tiny_llama_dir):  # noqa: F811
    result, _ = live_run
    saved = json.loads(result.results_path.read_text())
    assert result.results_path.parent == result.config.output_dir.resolve() / str(tiny_llama_dir).replace("/", "__")
    assert result.results_path.name.startswith("results_")
    assert set(saved["results"]) == set(TASKS)
    assert saved["results"]["arc_easy"]["acc,none"] == result.results["results"]["arc_easy"]["acc,none"]
    assert "samples" not in saved and "task_hashes" in saved
    assert saved["configs"]["arc_easy"]["dataset_path"] == "json"
    assert saved["configs"]["arc_easy"]["doc_to_text"] == "Question: {{question}}\nAnswer:"  # lm-eval's own prompt
    assert result.local_tasks_path is not None and (result.local_tasks_path / "arc_easy.yaml").is_file()
    assert json.loads(json.dumps(result.to_dict()))["tasks"]["boolq"]["n_questions"] == LIMIT


def test_in_memory_records_keep_their_types(live_run):
    result, _ = live_run
    # the tracker stringified copies; what we converted came from typed records
    assert by_task(result)["arc_easy"].loglik_sums.dtype == np.float64
    line = json.loads(result.samples_paths["arc_easy"].read_text().splitlines()[0])
    assert isinstance(line["target"], str) and isinstance(line["filtered_resps"][0][0], str)


def test_few_shot_prompts_come_from_the_train_file(shared_datasets, tiny_llama_dir, tmp_path, one_thread):  # noqa: F811
    result = run_lm_eval(
        LiveRunConfig(
            tasks=["arc_easy"], output_dir=tmp_path, model_args=f"pretrained={tiny_llama_dir}",
            data_dir=shared_datasets, num_fewshot=2, limit=4, device="cpu", seed=3,
        )
    )
    record = json.loads(result.samples_paths["arc_easy"].read_text().splitlines()[0])
    context = record["arguments"]["gen_args_0"]["arg_0"]
    assert context.count("Question:") == 3
    train_questions = {json.loads(line)["question"] for line in (shared_datasets / "arc_easy" / "train.jsonl").open()}
    shown = [block.split("\n")[0].removeprefix("Question: ") for block in context.split("\n\n")[:2]]
    assert all(question in train_questions for question in shown)
    (samples,) = result.task_samples
    assert samples.choice_scores("sum").probabilities().correct.mean() == result.lm_eval_metrics["arc_easy"]["acc"]
    assert result.results["n-shot"]["arc_easy"] == 2


def test_hf_home_defaults_to_the_output_folder(shared_datasets, tiny_llama_dir, tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    result = run_lm_eval(
        LiveRunConfig(tasks=["piqa"], output_dir=tmp_path, model_args=f"pretrained={tiny_llama_dir}",
                      data_dir=shared_datasets, limit=3, device="cpu")
    )
    assert result.hf_home == tmp_path.resolve() / ".hf_home"
    assert any((tmp_path / ".hf_home" / "datasets").rglob("*.arrow")), "datasets' cache should live in the run's HF_HOME"
    import os

    assert "HF_HOME" not in os.environ  # restored after the run


# ---------------------------------------------------------------- bad input, before anything runs


def config(tmp_path, model_dir, **overrides) -> LiveRunConfig:
    fields = {"tasks": ["arc_easy"], "output_dir": tmp_path / "out", "model_args": f"pretrained={model_dir}"}
    return LiveRunConfig(**{**fields, **overrides})


@pytest.mark.parametrize("limit", [0, -3, 1.5, True])
def test_bad_limit(tmp_path, tiny_llama_dir, limit):  # noqa: F811
    with pytest.raises(InputError, match=r"^--limit .*: must be a whole number >= 1 or a fraction in \(0, 1\)$"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, limit=limit))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_fewshot": -1}, r"^--num-fewshot -1: must be a whole number >= 0$"),
        ({"batch_size": 0}, r"^--batch-size 0: must be a whole number >= 1, 'auto' or 'auto:N'$"),
        ({"batch_size": "fast"}, r"^--batch-size 'fast'"),
        ({"tasks": []}, r"^--tasks: no task given"),
        ({"data_dir": Path("/nonexistent/data")}, r"^--data-dir /nonexistent/data: no such folder$"),
        ({"include_path": Path("/nonexistent/tasks")}, r"^--include-path /nonexistent/tasks: no such folder$"),
    ],
)
def test_bad_options(tmp_path, tiny_llama_dir, overrides, message):  # noqa: F811
    with pytest.raises(InputError, match=message):
        run_lm_eval(config(tmp_path, tiny_llama_dir, **overrides))


def test_model_folder_must_exist_and_hold_a_model(tmp_path):
    missing = rf"^--model-args pretrained={tmp_path}/nope: {tmp_path}/nope is not a model folder \(no such folder"
    with pytest.raises(InputError, match=missing):
        check_model("hf", f"pretrained={tmp_path}/nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty is not a model folder \(no config\.json\)$"):
        check_model("hf", f"pretrained={tmp_path}/empty,dtype=float32")
    (tmp_path / "empty" / "m-q4.gguf").write_bytes(b"GGUF")
    with pytest.raises(InputError, match=r"\(no config\.json\); it holds m-q4\.gguf: add gguf_file=m-q4\.gguf$"):
        check_model("hf", f"pretrained={tmp_path}/empty")
    with pytest.raises(InputError, match=r"is a file, not a model folder; for a GGUF file pass pretrained=.*/empty,gguf_file=m-q4\.gguf$"):
        check_model("hf", f"pretrained={tmp_path}/empty/m-q4.gguf")
    with pytest.raises(InputError, match=r"^--model-args gguf_file=other\.gguf: .*/empty/other\.gguf not found$"):
        check_model("hf", f"pretrained={tmp_path}/empty,gguf_file=other.gguf")
    check_model("hf", f"pretrained={tmp_path}/empty,gguf_file=m-q4.gguf")
    with pytest.raises(InputError, match=r"needs pretrained=MODEL_FOLDER for --model hf"):
        check_model("hf", "dtype=float32")
    check_model("dummy", "")  # model types without a folder are not checked


def test_hub_ids_need_the_users_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    check_model("hf", "pretrained=EleutherAI/pythia-70m")
    monkeypatch.delenv("HF_HOME")
    with pytest.raises(InputError, match=r"is not a model folder \(no such folder; runs are offline"):
        check_model("hf", "pretrained=EleutherAI/pythia-70m")


def test_generation_task_is_refused_before_the_model_loads(shared_datasets, tmp_path, tiny_llama_dir):  # noqa: F811
    with pytest.raises(InputError, match=r"^calibration needs multiple-choice tasks; gsm8k is generate_until$"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, tasks=["arc_easy", "gsm8k"], data_dir=shared_datasets))


def test_task_with_its_own_scorer_is_refused(shared_datasets, tmp_path, tiny_llama_dir):  # noqa: F811
    with pytest.raises(InputError, match=r"truthfulqa_mc2 scores with its own process_results \(utils\.process_results_mc2\)$"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, tasks=["truthfulqa_mc2"], data_dir=shared_datasets))


def test_missing_data_file_is_named(tmp_path, tiny_llama_dir):  # noqa: F811
    (tmp_path / "data" / "arc_easy").mkdir(parents=True)
    # Where the file may lie: by task name, or by the task's dataset_path + dataset_name (allenai/ai2_arc, ARC-Easy).
    expected = (f"--data-dir {tmp_path}/data: arc_easy needs {tmp_path}/data/arc_easy/test.jsonl or "
                f"{tmp_path}/data/ai2_arc/ARC-Easy/test.jsonl (its test split); not found")
    with pytest.raises(InputError, match=f"^{expected}$".replace("(", r"\(").replace(")", r"\)")):
        run_lm_eval(config(tmp_path, tiny_llama_dir, data_dir=tmp_path / "data"))


def test_records_of_another_schema_fail_before_the_model_loads(shared_datasets, tmp_path, tiny_llama_dir):  # noqa: F811
    (tmp_path / "data" / "arc_easy").mkdir(parents=True)
    rows = (shared_datasets / "piqa" / "validation.jsonl").read_text().splitlines()[:5]
    (tmp_path / "data" / "arc_easy" / "test.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"could not build arc_easy from the files there \(UndefinedError: 'question' is undefined\)"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, data_dir=tmp_path / "data"))


@pytest.mark.slow
def test_unknown_task_gets_did_you_mean(shared_datasets, tmp_path, tiny_llama_dir):  # noqa: F811
    with pytest.raises(InputError, match=r"^unknown task 'arc_esay'\. Did you mean 'arc_easy'"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, tasks=["arc_esay"], data_dir=shared_datasets))
    with pytest.raises(InputError, match=r"^unknown task 'arc_esay'\. Did you mean 'arc_easy'"):
        run_lm_eval(config(tmp_path, tiny_llama_dir, tasks=["arc_esay"]))


@pytest.mark.slow
def test_without_data_dir_an_uncached_dataset_is_an_input_error(tmp_path, tiny_llama_dir):  # noqa: F811
    message = r"could not load the dataset offline .*pass --data-dir DIR with DIR/arc_easy/test\.jsonl"
    with NetworkAttempts() as network, pytest.raises(InputError, match=message):
        run_lm_eval(config(tmp_path, tiny_llama_dir))
    assert network.addresses == []
