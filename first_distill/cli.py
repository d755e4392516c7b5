"""`first` sub-commands of first_distill (registered through the `first.commands` entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from first_eval.cli import fail
from first_eval.errors import InputError


def demo_command(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Folder for the world cache, audits and report."),
    seed: int = typer.Option(0, help="Seed of the demo world (cached per seed)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Only the fast samples-file demo (no models): synthetic lm-eval samples with planted miscalibration."),
) -> None:
    """Built-in demo: build a tiny world (tasks with known answers, base and over-confident teacher models), audit them.

    Example: first demo --output runs/demo
    """
    from first_eval.cli import synthetic_demo

    try:
        if synthetic:
            synthetic_demo(output, seed=seed, bootstrap=bootstrap)
            return
        from first_distill.demo.pipeline import DemoRunConfig, run_demo

        report = run_demo(DemoRunConfig(output=output, seed=seed, n_bootstrap=bootstrap))
    except InputError as error:
        raise fail(str(error))
    typer.echo(f"wrote {report}", err=True)


distill_app = typer.Typer(
    name="distill",
    help="FIRST distillation (Shum et al., EMNLP 2024): store a calibrated teacher's top-k knowledge, train students.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@distill_app.command("extract")
def extract_command(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model folder (or DIR/NAME.gguf)."),
    output: Path = typer.Option(..., "--output", "-o", help="Knowledge store folder (an unfinished one is resumed)."),
    train: Optional[Path] = typer.Option(None, "--train", help="Training pairs: JSONL with 'prompt' and 'completion' per line."),
    train_task: Optional[str] = typer.Option(None, "--train-task", help="Or: the training split of this lm-eval multiple-choice task."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local task files DIR/<task>/<split>.jsonl (offline)."),
    include_path: Optional[Path] = typer.Option(None, "--include-path", help="Folder of extra lm-eval task YAMLs."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N training examples."),
    top_k: int = typer.Option(5, "--top-k", help="Teacher tokens stored per completion position (--selection topk)."),
    selection: str = typer.Option("topk", "--selection", help="topk (FIRST) or sample (random-sampling KD, Anshumann et al. 2025)."),
    samples_per_position: Optional[int] = typer.Option(None, "--samples-per-position", help="Draws per position for --selection sample."),
    teacher_temperature: Optional[str] = typer.Option(None, "--teacher-temperature", help="auto (fit on the task's validation split with lm-eval; the default), none (T = 1), or a number."),
    calibrators_from: Optional[Path] = typer.Option(None, "--calibrators-from", help="Take T from a `first report` calibrators.json."),
    calibration_task: Optional[str] = typer.Option(None, "--calibration-task", help="Task whose validation split fits T for auto (default: --train-task)."),
    calibration_limit: Optional[int] = typer.Option(None, "--calibration-limit", help="At most N validation questions for auto."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per teacher forward pass."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens kept per example, cut from the left (default: the teacher's context)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Student model folder: checked to share the teacher's tokenizer."),
    seed: int = typer.Option(0, "--seed", help="Seed for --selection sample and lm-eval."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: a GPU when there is one)."),
    prob_bits: int = typer.Option(8, "--prob-bits", help="Bits per stored probability: 8 (error <= 2e-3 / rank) or 16 (<= 7.7e-6 / rank)."),
) -> None:
    """Store the tempered teacher's top-k tokens per completion position (FIRST's concentrated knowledge).

    Examples:

      first distill extract --teacher runs/teacher --train-task arc_easy --data-dir ../shared/datasets --output runs/knowledge

      first distill extract --teacher DIR --train pairs.jsonl --calibrators-from runs/audit/calibrators.json --output runs/k
    """
    from first_distill.knowledge.extract import ExtractConfig, extract_knowledge

    try:
        result = extract_knowledge(ExtractConfig(
            teacher=teacher, output=output, train=train, train_task=train_task, data_dir=data_dir,
            include_path=include_path, train_limit=limit, top_k=top_k, selection=selection,
            samples_per_position=samples_per_position, teacher_temperature=teacher_temperature,
            calibrators_from=calibrators_from, calibration_task=calibration_task, calibration_limit=calibration_limit,
            batch_size=batch_size, max_length=max_length, student=student, seed=seed, device=device,
            prob_bits=prob_bits))
    except InputError as error:
        raise fail(str(error))
    stats, temperature = result.manifest.stats, result.teacher_temperature
    if selection == "sample":
        mass, what = stats["extraction"].get("sampled_teacher_mass_mean"), "mean teacher mass of the sampled ids"
    else:
        mass, what = (stats.get("topk_mass") or {}).get("mean"), f"mean top-{top_k} teacher mass"
    ece = "" if temperature.ece_before is None else (
        f" (teacher ECE {temperature.ece_before:.3f} -> {temperature.ece_after:.3f})" if temperature.ece_after is not None
        else f" (teacher ECE {temperature.ece_before:.3f})")
    typer.echo(f"T = {temperature.value:.4g} [{temperature.source}]{ece}", err=True)
    typer.echo(f"wrote {output}: {result.manifest.n_sequences} sequences, {result.manifest.n_positions} positions"
               + (f", {what} {mass:.3f}" if mass is not None else "")
               + f", {stats.get('bytes_per_position') or 0:.1f} bytes/position"
               + (f", {result.positions_per_second:,.0f} positions/s" if result.positions_per_second else "")
               + (f" (resumed at sequence {result.resumed_from})" if result.resumed_from else ""), err=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
    app.add_typer(distill_app, name="distill")
