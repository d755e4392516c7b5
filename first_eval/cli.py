"""The ``first`` command line: parse -> config dataclass -> library call -> outputs.

User errors (``InputError``) become one line on stderr and exit code 2; no traceback, no partial
output. Other packages add sub-commands through the ``first.commands`` entry-point group (a
function ``register(app)``), so ``first_eval`` never imports them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from first_eval.command_line import audit_and_write, audit_config_from_flags, fail, parse_list, print_summary
from first_eval.errors import InputError

app = typer.Typer(
    name="first",
    help=(
        "Reliability-first toolkit for LLMs: audit calibration, distil calibrated students.\n\n"
        "\b\nExamples:\n"
        "  first demo                                  # built-in demo -> runs/demo/report.html\n"
        "  first report --samples out/ --output runs/a # audit lm-eval samples files\n"
        "  first report --model hf --model-args pretrained=DIR --tasks arc_easy \\\n"
        "      --data-dir ../shared/datasets --output runs/b   # run lm-eval offline, then audit\n"
        "  first compare runs/a runs/b --output runs/cmp       # side-by-side comparison\n"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def expand_sample_paths(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for every samples_*.jsonl beneath it (lm-eval's output layout)."""
    expanded: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("samples_*.jsonl"))
            if not found:
                raise InputError(f"{path}: folder holds no samples_*.jsonl files (run lm-eval with --log_samples)")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def gate_from_flags(max_ece: Optional[float], min_accuracy: Optional[float], gate_on: str, bootstrap: int):
    """The ``first report`` release gate, or None when no threshold is given; ``InputError`` for bad values."""
    from first_eval.gate import ReportGate

    try:
        gate = ReportGate(max_ece=max_ece, min_accuracy=min_accuracy, on=gate_on)
    except ValueError as error:
        raise InputError(str(error)) from None
    if gate.on == "upper" and gate.active and bootstrap == 0:
        raise InputError("--gate-on upper checks the bootstrap intervals; give --bootstrap > 0 (or --gate-on point)")
    return gate if gate.active else None


def check_unique_tasks(task_samples: list) -> None:
    seen: dict[str, str] = {}
    for samples in task_samples:
        if samples.task in seen:
            raise InputError(
                f"task {samples.task!r} comes from two inputs ({seen[samples.task]} and {samples.source}); "
                "audit each run separately and compare them with `first compare`"
            )
        seen[samples.task] = samples.source


@app.callback()
def global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every library's own progress bars, info logs and warnings (lm-eval, transformers, datasets); by default only first's bars and warnings show."),
) -> None:
    """Reliability-first toolkit for LLMs: audit calibration, distil calibrated students."""
    import os

    from first_eval.progress import VERBOSE_ENV, quiet_third_party

    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    quiet_third_party()


@app.command("report")
def report_command(
    paths: Optional[List[Path]] = typer.Argument(None, help="More samples files (so `--samples a.jsonl b.jsonl` works).", show_default=False),
    samples: Optional[List[Path]] = typer.Option(None, "--samples", help="lm-eval samples_<task>_<date>.jsonl files, results JSONs holding 'samples', or folders of them."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for report.html, metrics.json, calibrators.json (and lm-eval's files for a live run)."),
    model: Optional[str] = typer.Option(None, "--model", help="Run lm-eval live with this model type (e.g. hf) instead of reading --samples.", rich_help_panel="Live run (lm-eval)"),
    model_args: str = typer.Option("", "--model-args", help="lm-eval model args, e.g. pretrained=DIR,dtype=float32,gguf_file=FILE.", rich_help_panel="Live run (lm-eval)"),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated lm-eval multiple-choice tasks.", rich_help_panel="Live run (lm-eval)"),
    include_path: Optional[Path] = typer.Option(None, "--include-path", help="Folder of extra lm-eval task YAMLs. A YAML that uses !function makes lm-eval import and run the Python file beside it (first names each one on stderr first).", rich_help_panel="Live run (lm-eval)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Run lm-eval's own task definitions over local files DIR/<task>/<split>.jsonl (offline).", rich_help_panel="Live run (lm-eval)"),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Few-shot examples per prompt (default: the task's).", rich_help_panel="Live run (lm-eval)"),
    limit: Optional[float] = typer.Option(None, "--limit", help="At most this many questions per task (or a fraction < 1).", rich_help_panel="Live run (lm-eval)"),
    batch_size: str = typer.Option("8", "--batch-size", help="lm-eval batch size (int, auto, auto:N).", rich_help_panel="Live run (lm-eval)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:0 ... (default: the model's).", rich_help_panel="Live run (lm-eval)"),
    format: str = typer.Option("cloze", "--format", help="cloze: each task as lm-eval defines it; letters: the task as a lettered question (options 'A. ...' in the prompt, the letters are the choices; tasks already lettered run unchanged).", rich_help_panel="Live run (lm-eval)"),
    apply_chat_template: bool = typer.Option(False, "--apply-chat-template", help="Render prompts with the model's chat template (instruct models).", rich_help_panel="Live run (lm-eval)"),
    system_instruction: Optional[str] = typer.Option(None, "--system-instruction", help="System message for every prompt.", rich_help_panel="Live run (lm-eval)"),
    bins: int = typer.Option(15, help="Equal-width confidence bins for ECE and the reliability diagram."),
    score: str = typer.Option("sum", help="Choice score: 'sum' (lm-eval acc) or 'char-norm' (lm-eval acc_norm)."),
    calibrators: str = typer.Option("temperature,platt,isotonic", help="Comma-separated calibrators to fit and cross-fit."),
    folds: int = typer.Option(5, help="Cross-fitting folds: calibrated metrics never score data the calibrator saw."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for confidence intervals (0 = none)."),
    seed: int = typer.Option(0, help="Seed for folds, bootstrap (and lm-eval in a live run)."),
    title: str = typer.Option("Calibration report", help="Report title."),
    max_ece: Optional[float] = typer.Option(None, "--max-ece", help="Release gate: exit 1 (report still written) when a task's ECE is above this (0..1).", rich_help_panel="Release gate"),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Release gate: exit 1 when a task's accuracy is below this (0..1).", rich_help_panel="Release gate"),
    gate_on: str = typer.Option("point", "--gate-on", help="point: gate the point estimates; upper: the pessimistic end of each bootstrap interval (ECE's upper, accuracy's lower bound).", rich_help_panel="Release gate"),
) -> None:
    """Audit calibration: metrics with CIs, calibrators, reliability diagrams (from lm-eval samples or a live run).

    Exit codes: 0 done; 1 the report was written but a task failed --max-ece / --min-accuracy (one line per
    task on stderr); 2 bad input (nothing written).

    Examples:

      first report --samples out/model/samples_arc_easy_*.jsonl --output runs/arc

      first report --model hf --model-args pretrained=DIR --tasks arc_easy --data-dir ../shared/datasets --limit 200 --output runs/arc

      first report --samples out/ --output runs/ci --max-ece 0.1 --min-accuracy 0.6 --gate-on upper
    """
    created = not output.exists()  # a folder this command makes is removed again when it fails on bad input
    try:
        from first_eval.input_checks import check_output_folder

        check_output_folder(output)
        config = audit_config_from_flags(bins, score, calibrators, folds, bootstrap, seed)
        gate = gate_from_flags(max_ece, min_accuracy, gate_on, bootstrap)
        inputs = list(samples or []) + list(paths or [])
        if model is not None:
            if inputs:
                raise InputError("give either --samples (re-audit lm-eval files) or --model (run lm-eval), not both")
            task_samples, model_label = live_task_samples(model, model_args, tasks, include_path, data_dir, num_fewshot,
                                                          limit, batch_size, device, seed, output, format,
                                                          apply_chat_template, system_instruction)
        else:
            live_only = [flag for flag, given in (("--format letters", format != "cloze"),
                                                  ("--apply-chat-template", apply_chat_template),
                                                  ("--system-instruction", system_instruction is not None)) if given]
            if live_only:
                raise InputError(f"{live_only[0]} applies to a live run (--model ...); --samples files were already "
                                 "scored as lm-eval ran them")
            if not inputs:
                raise InputError("give lm-eval samples with --samples PATH [PATH ...], or run a model with --model hf --model-args pretrained=DIR --tasks T")
            from first_eval.lm_eval_bridge.samples import read_samples_path

            task_samples = [task for path in expand_sample_paths(inputs) for task in read_samples_path(path)]
            model_label = None
        check_unique_tasks(task_samples)
        audit_and_write(task_samples, config, output, title, model=model_label, gate=gate)
    except InputError as error:
        if created:
            import shutil

            shutil.rmtree(output, ignore_errors=True)
        raise fail(str(error))
    print_summary(output)
    exit_on_failed_gate(output)


def exit_on_failed_gate(output: Path) -> None:
    """Exit 1 with one line per failing task on stderr when the report's gate failed (metrics.json ``gate``)."""
    import json

    from first_eval.gate import report_gate_lines

    gate = json.loads((output / "metrics.json").read_text(encoding="utf-8")).get("gate")
    if gate and not gate["passed"]:
        for line in report_gate_lines(gate):
            typer.echo(line, err=True)
        raise typer.Exit(code=1)


def live_task_samples(model, model_args, tasks, include_path, data_dir, num_fewshot, limit, batch_size, device, seed, output,
                      format="cloze", apply_chat_template=False, system_instruction=None):
    """Run lm-eval (its files kept under OUTPUT/lm-eval) and return its in-memory samples per task."""
    from first_eval.lm_eval_bridge.live import LiveRunConfig, parse_model_args, run_lm_eval

    if not tasks:
        raise InputError("--tasks is required with --model (e.g. --tasks arc_easy,piqa)")
    if limit is not None and float(limit).is_integer():
        limit = int(limit)
    run = run_lm_eval(LiveRunConfig(
        tasks=parse_list(tasks, "--tasks"), output_dir=output / "lm-eval", model=model, model_args=model_args,
        include_path=include_path, data_dir=data_dir, num_fewshot=num_fewshot, limit=limit,
        batch_size=int(batch_size) if batch_size.isdigit() else batch_size, device=device, seed=seed,
        format=format, apply_chat_template=apply_chat_template, system_instruction=system_instruction,
    ))
    label = parse_model_args(model_args).get("pretrained", model) if model_args else model
    return list(run.task_samples), label


@app.command("compare")
def compare_command(
    runs: List[Path] = typer.Argument(..., help="Folders written by `first report` (each holds metrics.json)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the comparison report.html and metrics.json."),
    names: Optional[str] = typer.Option(None, help="Comma-separated display names, one per run (default: model name or folder name)."),
    baseline: Optional[str] = typer.Option(None, help="Model the deltas are taken against (default: the first run)."),
    title: str = typer.Option("Calibration comparison", help="Report title."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the intervals of the differences (0 = none)."),
    seed: int = typer.Option(0, help="Seed of the resampled questions (the same for every model)."),
    fail_if_worse: Optional[str] = typer.Option(None, "--fail-if-worse", help="Comma-separated metrics (accuracy, ece, ece_calibrated, brier, nll): exit 1 (report still written) when a model is significantly worse than the baseline on one (its interval excludes 0 on the bad side).", rich_help_panel="Release gate"),
) -> None:
    """Compare audits of several models: decision table, deltas to a baseline with paired intervals, diagrams.

    Audits of the same questions are paired on their doc_ids (questions.jsonl.gz beside metrics.json); older
    audit folders without that file compare with unpaired intervals. Exit codes: 0 done; 1 written, but
    --fail-if-worse found a significantly worse model (one line each on stderr); 2 bad input.

    Example: first compare runs/base runs/teacher --names base,teacher --output runs/compare --fail-if-worse ece
    """
    from first_eval.compare import models_from_run_dirs, write_comparison
    from first_eval.deltas import DeltaSettings
    from first_eval.gate import parse_worse_metrics
    from first_eval.input_checks import check_output_folder

    try:
        check_output_folder(output)
        try:
            worse = parse_worse_metrics(fail_if_worse) if fail_if_worse is not None else ()
            settings = DeltaSettings(n_bootstrap=bootstrap, seed=seed)
        except ValueError as error:
            raise InputError(str(error)) from None
        if worse and bootstrap == 0:
            raise InputError("--fail-if-worse needs the intervals of the differences; give --bootstrap > 0")
        models = models_from_run_dirs(runs, parse_list(names, "--names") if names else None)
        write_comparison(models, output, title, baseline, command="first " + shlex.join(sys.argv[1:]),
                         settings=settings, fail_if_worse=worse)
    except InputError as error:
        raise fail(str(error))
    typer.echo(f"wrote {output / 'report.html'} and metrics.json", err=True)
    print_comparison_summary(output)


def print_comparison_summary(output: Path) -> None:
    """The significant differences to the baseline (a line per model and task that has one, else a line per model),
    then (exit 1) the failures of --fail-if-worse."""
    import json

    from first_eval.deltas import DELTA_LABELS, verdict
    from first_eval.gate import worse_lines

    document = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    baseline = document["baseline"]
    for name, per_task in document["deltas"].items():
        unpaired = sum(not document["pairing"][name][task]["paired"] for task in per_task)
        flagged = []
        for task, entries in per_task.items():
            marked = [f"{DELTA_LABELS[m]} {e['delta']:+.3f} ({verdict(e, m)})" for m, e in entries.items()
                      if m != "mean_confidence" and verdict(e, m)]
            if marked:
                flagged.append(f"{name} vs {baseline} on {task}: {', '.join(marked)}"
                               + ("" if document["pairing"][name][task]["paired"] else " (unpaired)"))
        for line in flagged or [f"{name} vs {baseline}: no significant difference on {len(per_task)} task(s)"
                                + (f" ({unpaired} unpaired)" if unpaired else "")]:
            typer.echo(line, err=True)
    gate = document.get("gate")
    if gate and not gate["passed"]:
        for line in worse_lines(gate, baseline):
            typer.echo(line, err=True)
        raise typer.Exit(code=1)


def _register_plugins() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group="first.commands"):
        entry.load()(app)


def main() -> None:
    _register_plugins()
    try:
        app()
    except InputError as error:  # raised outside a command's own handler (e.g. by a plugin)
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
