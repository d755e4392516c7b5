"""Bad input, tried as a hostile user would, across `first report` (live), `compare`, `distill`, `distill extract`
and `distill init-student`: one `error:` line naming the flag or file and the bad value, exit code 2, no traceback,
nothing written. Every case fails in validation, before lm-eval runs or a model loads, so the table is cheap.
(The samples-file cases of `first report --samples` and `first compare` inputs live in
tests/first_eval/test_bad_inputs_report.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from first_eval.errors import InputError
from tiny_models import make_tiny_llama, tiny_llama_dir  # noqa: F401  (session fixture)

FIRST = [sys.executable, "-m", "first_eval.cli"]
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_llama_dir):  # noqa: F811
    """A folder of broken models and inputs, built once."""
    root = tmp_path_factory.mktemp("bad-inputs")

    def model_copy(name: str) -> Path:
        target = root / name
        shutil.copytree(tiny_llama_dir, target)
        return target

    truncated = model_copy("truncated")
    with (truncated / "model.safetensors").open("r+b") as handle:
        handle.truncate(5000)
    (model_copy("bad-config") / "config.json").write_text("{not json")
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    (model_copy("unknown-type") / "config.json").write_text(json.dumps({**config, "model_type": "llamaxx"}))
    (model_copy("custom-code") / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "m.M"}}))
    make_tiny_llama(root / "other-vocab", vocab_size=400)
    (root / "a-file").write_text("x")
    (root / "empty.jsonl").write_text("")
    (root / "no-completion.jsonl").write_text('{"prompt": "a"}\n')
    (root / "binary.jsonl").write_bytes(bytes(range(128, 256)))
    (root / "not-json.jsonl").write_text("prompt: a\n")
    (root / "good.jsonl").write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": " yes"}) + "\n" for i in range(4)))
    (root / "calibrators.json").write_text('{"tasks": {}}')
    (root / "no-gguf").mkdir()
    return root


def cases(model: Path, bad: Path) -> list[tuple[str, list[str], str]]:
    """(id, argv after `first`, text the error line must hold)."""
    live = ["report", "--model", "hf", "--tasks", "arc_easy"]
    ok_model = ["--model-args", f"pretrained={model}"]
    distill = ["distill", "--teacher", str(model), "--student", str(model), "--eval-tasks", "arc_easy",
               "--data-dir", str(DATA)]
    extract = ["distill", "extract", "--teacher", str(model), "--train", str(bad / "good.jsonl")]
    return [
        # first report, live
        ("report-truncated-weights", live + ["--model-args", f"pretrained={bad / 'truncated'}"], "model.safetensors is truncated"),
        ("report-corrupt-config", live + ["--model-args", f"pretrained={bad / 'bad-config'}"], "config.json is not valid JSON"),
        ("report-unknown-model-type", live + ["--model-args", f"pretrained={bad / 'unknown-type'}"], "model_type 'llamaxx'"),
        ("report-custom-code", live + ["--model-args", f"pretrained={bad / 'custom-code'}"], "trust_remote_code=True"),
        ("report-unknown-model", ["report", "--model", "hff", "--tasks", "arc_easy"] + ok_model, "unknown lm-eval model type 'hff'"),
        ("report-missing-folder", live + ["--model-args", f"pretrained={bad / 'nope'}"], "no such folder"),
        ("report-pretrained-is-file", live + ["--model-args", f"pretrained={bad / 'a-file'}"], "is a file, not a model folder"),
        ("report-no-pretrained", live + ["--model-args", "dtype=float32"], "needs pretrained=MODEL_FOLDER"),
        ("report-missing-gguf", live + ["--model-args", f"pretrained={bad / 'no-gguf'},gguf_file=x.gguf"], "x.gguf not found"),
        ("report-not-gguf", live + ["--model-args", f"pretrained={bad},gguf_file=a-file"], "is not a GGUF file"),
        ("report-absent-gpu", live + ok_model + ["--device", "cuda:7"], "--device cuda:7"),
        ("report-bad-device", live + ok_model + ["--device", "tpu"], "--device 'tpu'"),
        ("report-output-is-file", live + ok_model, "is an existing file"),
        ("report-output-in-proc", live + ok_model, "a system folder"),
        ("report-bad-format", live + ok_model + ["--format", "letter"], "--format 'letter'"),
        ("report-letters-with-samples", ["report", "--samples", str(bad / "good.jsonl"), "--format", "letters"], "applies to a live run"),
        ("report-chat-without-template", live + ok_model + ["--apply-chat-template"], "has no chat template"),
        ("report-empty-system-instruction", live + ok_model + ["--system-instruction", " "], "--system-instruction is empty"),
        ("report-negative-limit", live + ok_model + ["--limit", "-3"], "--limit -3"),
        ("report-fraction-limit", live + ok_model + ["--limit", "2.5"], "--limit 2.5"),
        ("report-negative-fewshot", live + ok_model + ["--num-fewshot", "-1"], "--num-fewshot -1"),
        ("report-zero-batch", live + ok_model + ["--batch-size", "0"], "--batch-size 0"),
        ("report-word-batch", live + ok_model + ["--batch-size", "many"], "--batch-size 'many'"),
        ("report-no-tasks", ["report", "--model", "hf", "--tasks", ","] + ok_model, "--tasks"),
        ("report-missing-include", live + ok_model + ["--include-path", str(bad / "nope")], "--include-path"),
        ("report-missing-data-dir", live + ok_model + ["--data-dir", str(bad / "nope")], "--data-dir"),
        ("report-generation-task", ["report", "--model", "hf", "--tasks", "gsm8k", "--data-dir", str(bad)] + ok_model,
         "gsm8k is generate_until"),
        ("report-samples-and-model", live + ok_model + ["--samples", str(bad / "good.jsonl")], "not both"),
        ("report-zero-bins", live + ok_model + ["--bins", "0"], "--bins must be >= 1"),
        ("report-one-fold", live + ok_model + ["--folds", "1"], "--folds must be >= 2"),
        ("report-unknown-calibrator", live + ok_model + ["--calibrators", "tempreature"], "unknown calibrator 'tempreature'"),
        # first compare
        ("compare-output-is-file", ["compare", str(bad)], "is an existing file"),
        ("compare-no-metrics", ["compare", str(bad / "no-gguf")], "no metrics.json"),
        # first distill
        ("distill-top-k-above-vocab", distill + ["--train-task", "arc_easy", "--top-k", "100000"], "--top-k 100000: above the teacher's vocabulary"),
        ("distill-top-k-zero", distill + ["--train-task", "arc_easy", "--top-k", "0"], "--top-k 0"),
        ("distill-empty-train", distill + ["--train", str(bad / "empty.jsonl")], "empty training set"),
        ("distill-train-no-completion", distill + ["--train", str(bad / "no-completion.jsonl")], "no 'completion'"),
        ("distill-binary-train", distill + ["--train", str(bad / "binary.jsonl")], "binary"),
        ("distill-train-not-json", distill + ["--train", str(bad / "not-json.jsonl")], "not valid JSON"),
        ("distill-missing-train", distill + ["--train", str(bad / "nope.jsonl")], "no such file"),
        ("distill-both-train-sources", distill + ["--train", str(bad / "good.jsonl"), "--train-task", "arc_easy"], "exactly one of"),
        ("distill-missing-calibrators", distill + ["--train-task", "arc_easy", "--calibrators-from", str(bad / "nope.json")], "no such file"),
        ("distill-empty-calibrators", distill + ["--train-task", "arc_easy", "--calibrators-from", str(bad / "calibrators.json")], "no 'tasks'"),
        ("distill-absent-gpu", distill + ["--train-task", "arc_easy", "--device", "cuda:7"], "--device cuda:7"),
        ("distill-bad-format", distill + ["--train-task", "arc_easy", "--format", "letterz"], "--format 'letterz'"),
        ("distill-output-is-file", distill + ["--train-task", "arc_easy"], "is an existing file"),
        ("distill-output-in-proc", distill + ["--train-task", "arc_easy"], "a system folder"),
        ("distill-truncated-teacher", ["distill", "--teacher", str(bad / "truncated"), "--student", str(model),
                                       "--eval-tasks", "arc_easy", "--train-task", "arc_easy", "--data-dir", str(DATA)],
         "model.safetensors is truncated"),
        ("distill-custom-code-student", ["distill", "--teacher", str(model), "--student", str(bad / "custom-code"),
                                         "--eval-tasks", "arc_easy", "--train-task", "arc_easy", "--data-dir", str(DATA)],
         "trust_remote_code"),
        ("distill-other-tokenizer", ["distill", "--teacher", str(model), "--student", str(bad / "other-vocab"),
                                     "--eval-tasks", "arc_easy", "--train-task", "arc_easy", "--data-dir", str(DATA)],
         "vocabularies differ"),
        ("distill-missing-teacher", ["distill", "--teacher", str(bad / "nope"), "--student", str(model),
                                     "--eval-tasks", "arc_easy", "--train-task", "arc_easy"], "--teacher"),
        ("distill-unknown-variant", distill + ["--train-task", "arc_easy", "--variants", "frist"], "frist"),
        ("distill-empty-system-instruction", distill + ["--train-task", "arc_easy", "--system-instruction", ""], "--system-instruction is empty"),
        ("distill-chat-without-template", distill + ["--train-task", "arc_easy", "--apply-chat-template"], "has no chat template"),
        ("distill-generation-eval-task", ["distill", "--teacher", str(model), "--student", str(model), "--eval-tasks",
                                          "gsm8k", "--train-task", "arc_easy", "--data-dir", str(DATA)], "gsm8k is generate_until"),
        ("distill-zero-batch", distill + ["--train-task", "arc_easy", "--batch-size", "0"], "batch"),
        ("distill-max-length-one", distill + ["--train-task", "arc_easy", "--max-length", "1"], "--max-length 1"),
        ("distill-negative-bootstrap", distill + ["--train-task", "arc_easy", "--bootstrap", "-1"], "--bootstrap -1"),
        ("distill-missing-flags", ["distill", "--teacher", str(model)], "missing --student"),
        # first distill extract
        ("extract-output-is-file", extract, "is an existing file"),
        ("extract-absent-gpu", extract + ["--device", "cuda:7"], "--device cuda:7"),
        ("extract-top-k-zero", extract + ["--top-k", "0"], "--top-k"),
        ("extract-unknown-selection", extract + ["--selection", "best"], "--selection"),
        ("extract-missing-teacher", ["distill", "extract", "--teacher", str(bad / "nope"), "--train", str(bad / "good.jsonl")], "--teacher"),
        ("extract-empty-train", ["distill", "extract", "--teacher", str(model), "--train", str(bad / "empty.jsonl")], "empty training set"),
        # first distill init-student
        ("init-output-is-file", ["distill", "init-student", "--from", str(model), "--layers", "1"], "is an existing file"),
        ("init-zero-layers", ["distill", "init-student", "--from", str(model), "--layers", "0"], "--layers"),
        ("init-too-many-layers", ["distill", "init-student", "--from", str(model), "--layers", "99"], "--layers"),
        ("init-missing-source", ["distill", "init-student", "--from", str(bad / "nope"), "--layers", "1"], "--from"),
    ]


def output_for(case_id: str, bad: Path, tmp_path: Path) -> Path:
    if case_id.endswith("output-is-file"):
        return bad / "a-file"
    if case_id.endswith("output-in-proc"):
        return Path("/proc/first-test-output")
    return tmp_path / "out"


CASE_IDS = [case[0] for case in cases(Path("m"), Path("b"))]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case_id, bad, tiny_llama_dir, tmp_path):  # noqa: F811
    args, expected = next((a, e) for i, a, e in cases(tiny_llama_dir, bad) if i == case_id)
    output = output_for(case_id, bad, tmp_path)
    before = sorted(p.name for p in bad.iterdir())
    done = subprocess.run(FIRST + args + ["--output", str(output)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, (case_id, done.returncode, done.stderr[-1500:])
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-1500:]
    assert expected in lines[0], (expected, lines[0])
    assert not (tmp_path / "out").exists(), f"{case_id} wrote {tmp_path / 'out'}"
    assert sorted(p.name for p in bad.iterdir()) == before


def test_unwritable_output_is_refused_before_any_work(tmp_path, monkeypatch):
    """A read-only file system answers the write probe with EROFS (root ignores permission bits, so simulate it)."""
    import errno
    import tempfile

    from first_eval.input_checks import check_output_folder

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(InputError, match=r"^--output .*/out: cannot write in .* \(Read-only file system\)$"):
        check_output_folder(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_refused_distill_leaves_nothing_that_blocks_the_corrected_command(bad, tiny_llama_dir, tmp_path):  # noqa: F811
    """Issue 10: a bad --train was once refused after distill_config.json was written, and the corrected command
    was then refused too ('already holds a distill run'). Now the refusal writes nothing and the fix runs."""
    output = tmp_path / "run"
    base = ["distill", "--teacher", str(tiny_llama_dir), "--student", str(tiny_llama_dir), "--eval-tasks", "arc_easy",
            "--data-dir", str(DATA), "--variants", "ce", "--max-steps", "1", "--batch-size", "2", "--eval-limit", "6",
            "--bootstrap", "10", "--teacher-temperature", "none", "--device", "cpu", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    refused = subprocess.run(FIRST + base + ["--train", str(bad / "no-completion.jsonl")], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and not output.exists()
    # A run folder holding no finished step (killed before its first one) is replaced by the next command too.
    output.mkdir()
    (output / "distill_config.json").write_text('{"schema": "first.distill/1", "top_k": 3}')
    fixed = subprocess.run(FIRST + base + ["--train", str(bad / "good.jsonl")], capture_output=True, text=True, env=env)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads((output / "metrics.json").read_text())["models"]["ce"]["tasks"]["arc_easy"]["n"] == 6
