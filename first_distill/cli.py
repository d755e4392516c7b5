"""`first` sub-commands of first_distill (registered through the `first.commands` entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from first_eval.command_line import fail
from first_eval.errors import InputError


# Options that `first distill` and `first distill extract` share.
TEACHER_TEMPERATURE = typer.Option(None, "--teacher-temperature", help="auto (the default: fit T on the validation split of the calibration task(s) with lm-eval), none (T = 1), or a number.")
CALIBRATORS_FROM = typer.Option(None, "--calibrators-from", help="Take T from a `first report` calibrators.json.")
CALIBRATION_TASK = typer.Option(None, "--calibration-task", help="Task(s), comma-separated, whose validation split fits T for auto (default: --train-task).")
CALIBRATION_LIMIT = typer.Option(None, "--calibration-limit", help="At most N validation questions per task for auto.")
TEMPERATURE_LEVEL = typer.Option("choice", "--temperature-level", help="auto fits T on: choice (lm-eval's answer scores) or token (next-token distributions at the gold answer tokens; for multi-token answers).")
DATA_DIR = typer.Option(None, "--data-dir", help="Local task files DIR/<task>/<split>.jsonl (offline).")
INCLUDE_PATH = typer.Option(None, "--include-path", help="Folder of extra lm-eval task YAMLs. A YAML that uses !function makes lm-eval import and run the Python file beside it (first names each one on stderr first).")
LIMIT = typer.Option(None, "--limit", help="Only the first N training examples.")


distill_app = typer.Typer(
    name="distill",
    help="FIRST distillation (Shum et al., EMNLP 2024): calibrate the teacher, store its top-k knowledge, train and "
         "audit students. `first distill --teacher ... --student ...` runs it all; `first distill extract` one step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@distill_app.callback(invoke_without_command=True)
def distill_command(
    ctx: typer.Context,
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Fine-tuned teacher model folder (or DIR/NAME.gguf)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Initial student model folder (same tokenizer as the teacher)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder: stores, students, audits, report.html, metrics.json."),
    train_task: Optional[str] = typer.Option(None, "--train-task", help="lm-eval task(s) whose training split(s) are the training pairs (comma-separated)."),
    train: Optional[Path] = typer.Option(None, "--train", help="Or: training pairs as JSONL with 'prompt' and 'completion'."),
    eval_tasks: Optional[str] = typer.Option(None, "--eval-tasks", help="Multiple-choice tasks to audit every model on, in- and out-of-domain (comma-separated)."),
    data_dir: Optional[Path] = DATA_DIR,
    include_path: Optional[Path] = INCLUDE_PATH,
    variants: str = typer.Option("first,ce", "--variants", help="Students to train: first, ce, label-smoothing, full-kd, topk-notemp, topk-tail, rs-kd."),
    top_k: int = typer.Option(5, "--top-k", help="Teacher tokens stored per position."),
    teacher_temperature: Optional[str] = TEACHER_TEMPERATURE,
    calibrators_from: Optional[Path] = CALIBRATORS_FROM,
    calibration_task: Optional[str] = CALIBRATION_TASK,
    temperature_level: str = TEMPERATURE_LEVEL,
    calibration_limit: Optional[int] = CALIBRATION_LIMIT,
    limit: Optional[int] = LIMIT,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", help="Only the first N questions of each eval task."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training pairs."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimiser steps (overrides --epochs)."),
    lr: float = typer.Option(2e-5, "--lr", help="Peak learning rate (AdamW, cosine schedule)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Training examples per device per micro-batch."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimiser step."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens kept per training example (cut from the left)."),
    seed: int = typer.Option(0, "--seed", help="Seed of data order, initialisation and bootstrap."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 mixed precision (default: when the GPU supports it)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Recompute activations (less memory)."),
    save_steps: int = typer.Option(500, "--save-steps", help="Checkpoint every N optimiser steps."),
    eval_batch_size: int = typer.Option(16, "--eval-batch-size", help="lm-eval and extraction batch size."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 for extraction and audits."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the confidence intervals."),
    format: str = typer.Option("cloze", "--format", help="cloze: tasks as lm-eval defines them; letters: every train, calibration and eval task as a lettered question (options 'A. ...' in the prompt, the letters are the choices), the FIRST paper's protocol."),
    apply_chat_template: bool = typer.Option(False, "--apply-chat-template", help="Render every prompt (training pairs, T fit, audits) with the teacher's chat template."),
    system_instruction: Optional[str] = typer.Option(None, "--system-instruction", help="System message for every prompt."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in --output (same settings)."),
) -> None:
    """Run FIRST end to end: teacher temperature -> top-k store -> one student per variant -> audits -> report.

    Example:

      first distill --teacher runs/demo/world-seed0/models/teacher --student runs/demo/world-seed0/models/student-base
      --include-path runs/demo/world-seed0/tasks --train-task first_demo_boolq --eval-tasks first_demo_boolq,first_demo_boolq_ood
      --variants first,ce,topk-notemp --epochs 4 --lr 1e-3 --output runs/distill
    """
    if ctx.invoked_subcommand is not None:
        return
    from first_distill.distill_config import DistillConfig
    from first_distill.pipeline import run_distill
    from first_distill.trainer import TrainerSettings
    from first_eval.command_line import parse_list

    try:
        missing = [flag for flag, value in (("--teacher", teacher), ("--student", student), ("--output", output),
                                            ("--eval-tasks", eval_tasks)) if value is None]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (see `first distill --help`)")
        settings = TrainerSettings(epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                   gradient_accumulation_steps=grad_accum, learning_rate=lr, seed=seed, bf16=bf16,
                                   gradient_checkpointing=gradient_checkpointing, save_steps=save_steps)
        result = run_distill(DistillConfig(
            teacher=teacher, student=student, output=output, eval_tasks=parse_list(eval_tasks, "--eval-tasks"),
            train_tasks=parse_list(train_task, "--train-task") if train_task else (), train=train,
            data_dir=data_dir, include_path=include_path, variants=parse_list(variants, "--variants"), top_k=top_k,
            teacher_temperature=teacher_temperature, calibrators_from=calibrators_from,
            temperature_level=temperature_level, calibration_limit=calibration_limit,
            calibration_tasks=parse_list(calibration_task, "--calibration-task") if calibration_task else (),
            train_limit=limit, eval_limit=eval_limit, max_length=max_length, settings=settings,
            eval_batch_size=eval_batch_size, device=device, n_bootstrap=bootstrap, format=format,
            apply_chat_template=apply_chat_template, system_instruction=system_instruction, resume=resume))
    except InputError as error:
        raise fail(str(error))
    from first_distill.teacher.ranks import process_state

    if process_state().is_main_process:  # under accelerate launch only the main process audits and reports
        print_distill_summary(result.report.parent / "metrics.json")


def print_distill_summary(metrics_path: Path) -> None:
    """Accuracy / ECE per model and task, and how many of the paper's claims hold (within noise or beyond), on stderr."""
    import json

    from rich.console import Console

    document = json.loads(metrics_path.read_text(encoding="utf-8"))
    console = Console(stderr=True)
    tasks = document["task_order"]
    console.print(f"{'model':<16}" + "".join(f"{task[:26]:>28}" for task in tasks) + "   (accuracy / ECE)",
                  highlight=False, soft_wrap=True)
    for name, model in document["models"].items():
        cells = [f"{m['accuracy']:.3f} / {m['ece']:.3f}" if (m := model["tasks"].get(task)) else "—" for task in tasks]
        console.print(f"{name:<16}" + "".join(f"{cell:>28}" for cell in cells), highlight=False, soft_wrap=True)
    claims = (document.get("distill") or {}).get("claims") or []
    if claims:
        from first_distill.distill_report import claims_summary

        console.print(f"the paper's claims: {claims_summary(claims)}; judged against paired bootstrap intervals "
                      "(see the report)", highlight=False, soft_wrap=True)
    console.print(f"wrote {metrics_path.parent / 'report.html'} and metrics.json", highlight=False, soft_wrap=True)


@distill_app.command("extract")
def extract_command(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model folder (or DIR/NAME.gguf)."),
    output: Path = typer.Option(..., "--output", "-o", help="Knowledge store folder (an unfinished one is resumed)."),
    train: Optional[Path] = typer.Option(None, "--train", help="Training pairs: JSONL with 'prompt' and 'completion' per line."),
    train_task: Optional[str] = typer.Option(None, "--train-task", help="Or: the training split of this lm-eval multiple-choice task."),
    data_dir: Optional[Path] = DATA_DIR,
    include_path: Optional[Path] = INCLUDE_PATH,
    limit: Optional[int] = LIMIT,
    top_k: int = typer.Option(5, "--top-k", help="Teacher tokens stored per completion position (--selection topk)."),
    selection: str = typer.Option("topk", "--selection", help="topk (FIRST) or sample (random-sampling KD, Anshumann et al. 2025)."),
    samples_per_position: Optional[int] = typer.Option(None, "--samples-per-position", help="Draws per position for --selection sample."),
    teacher_temperature: Optional[str] = TEACHER_TEMPERATURE,
    calibrators_from: Optional[Path] = CALIBRATORS_FROM,
    calibration_task: Optional[str] = CALIBRATION_TASK,
    calibration_limit: Optional[int] = CALIBRATION_LIMIT,
    temperature_level: str = TEMPERATURE_LEVEL,
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per teacher forward pass."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens kept per example, cut from the left (default: the teacher's context)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Student model folder: checked to share the teacher's tokenizer."),
    seed: int = typer.Option(0, "--seed", help="Seed for --selection sample and lm-eval."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: a GPU when there is one)."),
    prob_bits: int = typer.Option(8, "--prob-bits", help="Bits per stored probability: 8 (error <= 2e-3 / rank) or 16 (<= 7.7e-6 / rank)."),
) -> None:
    """Store the tempered teacher's top-k tokens per completion position (FIRST's concentrated knowledge).

    Under `accelerate launch --num_processes N -m first_eval.cli distill extract ...` (or torchrun) the N processes
    split the training sequences and write one store; a killed run is resumed with the same N.

    Examples:

      first distill extract --teacher runs/teacher --train-task arc_easy --data-dir ../shared/datasets --output runs/knowledge

      first distill extract --teacher DIR --train pairs.jsonl --calibrators-from runs/audit/calibrators.json --output runs/k
    """
    from first_distill.teacher.extract import ExtractConfig, extract_knowledge
    from first_eval.input_checks import check_device, check_output_folder

    try:
        check_output_folder(output)
        check_device(device)
        result = extract_knowledge(ExtractConfig(
            teacher=teacher, output=output, train=train, train_task=train_task, data_dir=data_dir,
            include_path=include_path, train_limit=limit, top_k=top_k, selection=selection,
            samples_per_position=samples_per_position, teacher_temperature=teacher_temperature,
            calibrators_from=calibrators_from, calibration_task=calibration_task, calibration_limit=calibration_limit,
            temperature_level=temperature_level,
            batch_size=batch_size, max_length=max_length, student=student, seed=seed, device=device,
            prob_bits=prob_bits))
    except InputError as error:
        raise fail(str(error))
    if result.rank != 0:  # the summary once, from the main process
        return
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
               + (f" with {result.world_size} processes" if result.world_size > 1 else "")
               + ((f" (resumed at sequence {result.resumed_from})" if result.world_size == 1 else
                   f" (resumed: {result.resumed_from} sequences were already extracted)") if result.resumed_from else ""),
               err=True)


@distill_app.command("init-student")
def init_student_command(
    source: Path = typer.Option(..., "--from", help="Teacher model folder (or DIR/NAME.gguf) to cut the student from."),
    layers: int = typer.Option(..., "--layers", help="Decoder layers the student keeps (the first N)."),
    output: Path = typer.Option(..., "--output", "-o", help="New model folder for the student."),
) -> None:
    """Make an initial student from a teacher's embeddings, first N layers, final norm and head (same tokenizer).

    Example: first distill init-student --from runs/teacher --layers 6 --output runs/student6
    """
    from first_distill.student_init import truncated_student
    from first_eval.input_checks import check_output_folder

    try:
        check_output_folder(output)
        folder = truncated_student(source, layers, output)
    except InputError as error:
        raise fail(str(error))
    typer.echo(f"wrote {folder}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(distill_app, name="distill")
