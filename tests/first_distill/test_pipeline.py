"""`first distill` end to end on the mini demo world: stores, students, audits, one first.distill/1 report;
resume, and every bad input as one line with exit code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from first_distill.cli import register
from first_demo.build import build_world
from first_demo.config import WorldConfig
from first_distill.pipeline import DistillConfig, run_distill
from first_distill.trainer import TrainerSettings
from first_eval.errors import InputError
from tiny_models import make_tiny_llama

pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("worlds"), seed=0, progress=False, config=WorldConfig.mini())


def config_for(world, output: Path, **changes) -> DistillConfig:
    base = dict(
        teacher=Path(world.teacher_dir), student=Path(world.student_base_dir), output=output,
        eval_tasks=("first_demo_boolq", "first_demo_boolq_ood"), train_tasks=("first_demo_boolq",),
        include_path=Path(world.task_dir), variants=("first", "ce", "topk-notemp"), eval_batch_size=32,
        settings=TrainerSettings(epochs=1, batch_size=8, learning_rate=1e-3, save_steps=3, progress=False),
        n_bootstrap=20, device="cpu", progress=False)
    base.update(changes)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    output = tmp_path_factory.mktemp("distill") / "run"
    return run_distill(config_for(world, output)), output


def test_report_holds_teacher_tempered_teacher_and_every_student(finished):
    result, output = finished
    document = json.loads((output / "metrics.json").read_text())
    assert document["schema"] == "first.distill/2" and document["baseline"] == "ce"
    assert list(document["models"]) == ["teacher", "teacher+ts", "first", "ce", "topk-notemp"]
    for name, model in document["models"].items():
        assert set(model["tasks"]) == {"first_demo_boolq", "first_demo_boolq_ood"}
        for metrics in model["tasks"].values():
            assert {"accuracy", "ece", "ece_ci", "brier", "nll"} <= set(metrics)
        # each row is also a `first report` folder with the same numbers
        own = json.loads((output / "audits" / name / "metrics.json").read_text())
        assert own["schema"] == "first.report/1"
        assert own["tasks"]["first_demo_boolq"]["ece"] == model["tasks"]["first_demo_boolq"]["ece"]
    # the deltas are differences against the CE student, paired over the same questions
    delta = document["deltas"]["first"]["first_demo_boolq"]["ece"]
    assert delta["paired"] and delta["ci"][0] <= delta["delta"] <= delta["ci"][1]
    assert delta["delta_plugin"] == pytest.approx(document["models"]["first"]["tasks"]["first_demo_boolq"]["ece"]
                                                  - document["models"]["ce"]["tasks"]["first_demo_boolq"]["ece"])
    html = (output / "report.html").read_text()
    for section in ("Knowledge stores", "Training", "How each number was produced", "Teacher temperature"):
        assert section in html


def test_tempered_teacher_is_the_teacher_divided_by_the_store_temperature(finished):
    result, output = finished
    document = json.loads((output / "metrics.json").read_text())
    temperature = document["distill"]["teacher_temperature"]
    assert temperature["source"] == "auto" and temperature["task"] == "first_demo_boolq"
    stores = document["distill"]["stores"]
    assert stores["tempered-topk"]["temperature"] == pytest.approx(temperature["value"])
    assert stores["untempered-topk"]["temperature"] == 1.0
    # the top-k mass of softmax(z / T) falls as T rises: T > 1 keeps less of it than T = 1, T < 1 more
    tempered_mass, untempered_mass = (stores[kind]["topk_mass_mean"] for kind in ("tempered-topk", "untempered-topk"))
    assert temperature["value"] != pytest.approx(1.0, abs=0.05)
    assert (tempered_mass < untempered_mass) == (temperature["value"] > 1)
    for task in ("first_demo_boolq", "first_demo_boolq_ood"):
        raw, tempered = (document["models"][m]["tasks"][task] for m in ("teacher", "teacher+ts"))
        assert tempered["accuracy"] == raw["accuracy"]  # T never changes the argmax
        # dividing by T < 1 sharpens, by T > 1 softens (the mini world's T is below 1)
        assert (tempered["mean_confidence"] > raw["mean_confidence"]) == (temperature["value"] < 1)


def test_tempered_teacher_equals_softmax_of_the_teacher_scores_over_t(finished):
    """teacher+ts is softmax(teacher's choice log-likelihoods / T), the probabilities the temperature calibrator
    gives at the same T: checked with scipy's log_softmax on the teacher's own lm-eval samples files."""
    from scipy.special import log_softmax

    from first_eval.calibrators import TemperatureScaling
    from first_eval.lm_eval_bridge.samples import read_samples_path, task_name_from_path
    from first_eval.metrics import ece

    _, output = finished
    document = json.loads((output / "metrics.json").read_text())
    temperature = document["distill"]["teacher_temperature"]["value"]
    files = {task_name_from_path(path): path for path in (output / "audits" / "teacher" / "lm-eval").rglob("samples_*.jsonl")}
    assert set(files) == {"first_demo_boolq", "first_demo_boolq_ood"}
    calibrator = TemperatureScaling.from_dict({"kind": "temperature", "temperature": temperature})
    for task, path in files.items():
        (samples,) = read_samples_path(path)
        confidences, correct, gold_log_probs = [], [], []
        for i, gold in enumerate(samples.gold):
            log_probs = log_softmax(samples.loglik_sums[samples.offsets[i]:samples.offsets[i + 1]] / temperature)
            confidences.append(np.exp(log_probs.max()))
            correct.append(int(np.argmax(log_probs)) == gold)
            gold_log_probs.append(log_probs[gold])
        tempered = document["models"]["teacher+ts"]["tasks"][task]
        assert tempered["mean_confidence"] == pytest.approx(np.mean(confidences), rel=1e-9)
        assert tempered["nll"] == pytest.approx(-np.mean(gold_log_probs), rel=1e-9)
        assert tempered["ece"] == pytest.approx(ece(np.array(confidences), np.array(correct), n_bins=15), abs=1e-9)
        calibrated = calibrator.transform(samples.choice_scores("sum"))
        assert tempered["mean_confidence"] == pytest.approx(float(calibrated.confidences.mean()), rel=1e-9)


def test_teacher_accuracy_equals_lm_eval_acc(finished):
    _, output = finished
    document = json.loads((output / "metrics.json").read_text())
    results = next((output / "audits" / "teacher" / "lm-eval").rglob("results_*.json"))
    lm_eval = json.loads(results.read_text())["results"]
    for task, metrics in document["models"]["teacher"]["tasks"].items():
        assert metrics["accuracy"] == pytest.approx(lm_eval[task]["acc,none"])


def test_students_are_saved_and_trained_with_the_same_schedule(finished):
    result, output = finished
    steps = {s.variant: s.steps for s in result.train.students}
    assert len(set(steps.values())) == 1 and next(iter(steps.values())) > 0
    for student in result.train.students:
        assert (student.model_dir / "config.json").is_file()
    curves = json.loads((output / "metrics.json").read_text())["distill"]["training_curves"]
    assert set(curves) == {"first", "ce", "topk-notemp"} and all(len(points) == steps["ce"] for points in curves.values())


def test_resume_reuses_a_finished_run(finished, world):
    result, output = finished
    before = json.loads((output / "metrics.json").read_text())["models"]
    again = run_distill(config_for(world, output, resume=True))
    assert all(s.already_complete for s in again.train.students)
    assert again.teacher_temperature.value == result.teacher_temperature.value
    # audits are read back from lm-eval's files, not run again: one set of files, the same numbers
    assert len(list((output / "audits" / "teacher" / "lm-eval").rglob("results_*.json"))) == 1
    after = json.loads((output / "metrics.json").read_text())["models"]
    for name in before:
        for task in before[name]["tasks"]:
            for key in ("accuracy", "ece", "brier", "nll", "ece_ci"):
                assert after[name]["tasks"][task][key] == pytest.approx(before[name]["tasks"][task][key], abs=1e-12)


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def app():
    first = typer.Typer(pretty_exceptions_enable=False)
    first.command("noop")(lambda: None)
    register(first)
    return first


def distill_cli(app, world, output: Path, *extra: str):
    args = ["distill", "--teacher", str(world.teacher_dir), "--student", str(world.student_base_dir),
            "--include-path", str(world.task_dir), "--train-task", "first_demo_boolq",
            "--eval-tasks", "first_demo_boolq", "--output", str(output), "--device", "cpu", *extra]
    return CliRunner().invoke(app, args)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_unknown_variant_gets_did_you_mean(app, world, tmp_path):
    line = one_error_line(distill_cli(app, world, tmp_path / "out", "--variants", "frist,ce"))
    assert "frist" in line and "first" in line
    assert not (tmp_path / "out").exists()


def test_generation_eval_task_is_refused(app, world, tmp_path):
    line = one_error_line(distill_cli(app, world, tmp_path / "out", "--eval-tasks", "first_demo_boolq,gsm8k"))
    assert "gsm8k" in line
    assert not (tmp_path / "out").exists()


def test_tokenizer_mismatch_is_refused(app, world, tmp_path):
    other = make_tiny_llama(tmp_path / "other-student", vocab_size=300)
    result = CliRunner().invoke(app, [
        "distill", "--teacher", str(world.teacher_dir), "--student", str(other), "--include-path", str(world.task_dir),
        "--train-task", "first_demo_boolq", "--eval-tasks", "first_demo_boolq", "--output", str(tmp_path / "out")])
    line = one_error_line(result)
    assert "differ" in line and ("tokenizer" in line or "vocabular" in line)
    assert not (tmp_path / "out").exists()


def test_resume_with_changed_settings_names_them(app, world, finished):
    _, output = finished
    line = one_error_line(distill_cli(app, world, output, "--resume", "--lr", "0.5", "--variants", "first,ce,topk-notemp",
                                      "--eval-tasks", "first_demo_boolq,first_demo_boolq_ood"))
    assert "--resume" in line and "settings" in line and "0.5" in line


def test_existing_run_is_not_overwritten_without_resume(app, world, finished):
    _, output = finished
    line = one_error_line(distill_cli(app, world, output))
    assert "--resume" in line


def test_missing_required_flags(app, tmp_path):
    line = one_error_line(CliRunner().invoke(app, ["distill", "--teacher", str(tmp_path)]))
    assert "--student" in line and "--output" in line


def test_token_level_auto_temperature_equals_scipy_on_unbatched_teacher_logits(world):
    """--temperature-level token: T minimises the NLL of the teacher's gold answer tokens on the validation split."""
    import numpy as np
    import torch
    from scipy.optimize import minimize_scalar
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from first_distill.model_folders import locate_model
    from first_distill.teacher.teacher_temperature import TemperatureFitConfig, fit_teacher_temperature

    fitted = fit_teacher_temperature(TemperatureFitConfig(
        model_args="", task="first_demo_boolq", include_path=Path(world.task_dir), batch_size=4, device="cpu",
        level="token", teacher=locate_model(world.teacher_dir, "--teacher")))
    assert fitted.details["level"] == "token" and "token-level" in fitted.label
    # independent: every validation question rendered by hand, one forward each
    tokenizer = AutoTokenizer.from_pretrained(world.teacher_dir)
    model = AutoModelForCausalLM.from_pretrained(world.teacher_dir, dtype=torch.float32).eval()
    rows, gold = [], []
    with torch.inference_mode():
        for question in world.questions("first_demo_boolq", "validation"):
            prompt = f"Question: {question.question}\nAnswer:"
            context = tokenizer(prompt)["input_ids"]
            whole = tokenizer(f"{prompt} {question.choices[question.label]}")["input_ids"]
            logits = model(input_ids=torch.tensor([whole])).logits[0]
            rows.append(logits[len(context) - 1:len(whole) - 1])
            gold.append(torch.tensor(whole[len(context):]))
    logits, gold = torch.cat(rows).double(), torch.cat(gold)
    oracle = minimize_scalar(lambda log_t: torch.nn.functional.cross_entropy(logits / np.exp(log_t), gold).item(),
                             bounds=(np.log(0.02), np.log(50)), method="bounded", options={"xatol": 1e-9})
    assert fitted.details["n_positions"] == len(gold)
    assert fitted.value == pytest.approx(float(np.exp(oracle.x)), rel=1e-3)


def test_a_run_killed_during_training_resumes_without_redoing_finished_work(world, tmp_path, monkeypatch):
    import first_distill.train as train_module

    real = train_module._train_variant

    def killed_at_ce(variant, *args, **kwargs):
        if variant.name == "ce":
            raise KeyboardInterrupt  # the process dies while the second student trains
        return real(variant, *args, **kwargs)

    config = config_for(world, tmp_path / "run", variants=("first", "ce"))
    monkeypatch.setattr(train_module, "_train_variant", killed_at_ce)
    with pytest.raises(KeyboardInterrupt):
        run_distill(config)
    assert not (tmp_path / "run" / "report.html").exists()
    store_mtime = (tmp_path / "run" / "knowledge" / "tempered-topk" / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(train_module, "_train_variant", real)
    with pytest.raises(InputError, match="--resume"):
        run_distill(config)  # without --resume the half-done run is never overwritten
    result = run_distill(config_for(world, tmp_path / "run", variants=("first", "ce"), resume=True))
    done = {s.variant: s.already_complete for s in result.train.students}
    assert done == {"first": True, "ce": False}
    assert (tmp_path / "run" / "knowledge" / "tempered-topk" / "manifest.json").stat().st_mtime_ns == store_mtime
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["schema"] == "first.distill/2"


@pytest.mark.browser
def test_distill_report_renders_in_a_browser(finished):
    from test_browser import open_page

    _, output = finished
    state = open_page(output / "report.html", output / "screenshot.png")
    assert state["problems"] == []
    for section in ("Knowledge stores", "Training", "How each number was produced", "Change against ce"):
        assert section in state["text"]
    # the headline figure, one overlaid reliability figure per task and the training curves are shown; the
    # 5 models x 2 tasks per-model diagrams are folded (zero size until opened)
    shown = state["svg_shown"]
    assert len(state["svg_sizes"]) >= 14 and len(shown) >= 4 and all(w > 100 and h > 100 for w, h in shown)


def test_claim_checks_restate_the_table(finished):
    _, output = finished
    document = json.loads((output / "metrics.json").read_text())
    claims = document["distill"]["claims"]
    assert len(claims) == 3 * 2  # three claims on two tasks
    for claim in claims:
        metric, other = claim["claim"].split(" ")[0].split("(")[0], claim["claim"].split("(")[-1].rstrip(")")
        first = document["models"]["first"]["tasks"][claim["task"]][metric]
        theirs = document["models"][other]["tasks"][claim["task"]][metric]
        assert (claim["first"], claim["other"]) == (first, theirs)
        assert claim["holds"] == (first < theirs if metric == "ece" else first >= theirs)
        low, high = claim["delta"]["ci"]
        assert claim["delta"]["paired"] and low <= claim["delta"]["delta"] <= high
        assert claim["verdict"] in ("holds", "holds within noise", "fails within noise", "fails")
    assert sum(document["distill"]["claim_counts"].values()) == len(claims)
    assert "The paper's claims on this run" in (output / "report.html").read_text()
