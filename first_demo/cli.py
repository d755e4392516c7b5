"""`first demo` (registered through the `first.commands` entry point): the demo world's FIRST run, or the synthetic
samples demo."""

from __future__ import annotations

from pathlib import Path

import typer

from first_eval.command_line import fail
from first_eval.errors import InputError


def demo_command(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Folder for the world cache, audits and report."),
    seed: int = typer.Option(0, help="Seed of the demo world (cached per seed)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Only the fast samples-file demo (no models): synthetic lm-eval samples with planted miscalibration."),
) -> None:
    """Built-in demo: a tiny world (tasks with known answers, base models, an over-confident teacher), then FIRST
    and its baselines trained on it, every model audited with lm-eval -> OUTPUT/report.html.

    Example: first demo --output runs/demo
    """
    try:
        if synthetic:
            synthetic_demo(output, seed=seed, bootstrap=bootstrap)
            return
        from first_demo.pipeline import DemoRunConfig, run_demo

        report = run_demo(DemoRunConfig(output=output, seed=seed, n_bootstrap=bootstrap))
    except InputError as error:
        raise fail(str(error))
    from first_distill.cli import print_distill_summary

    print_distill_summary(Path(report).parent / "metrics.json")
    print_demo_reference(Path(report).parent / "metrics.json", seed)


def print_demo_reference(metrics_path: Path, seed: int) -> None:
    """The seed's own figures beside the README's multi-seed mean ± sd (first_demo/reference.py)."""
    import json

    from first_demo.config import WorldConfig
    from first_demo.reference import load_reference, reference_lines

    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    for line in reference_lines(metrics, load_reference(WorldConfig().config_hash()), seed):
        typer.echo(line, err=True)


def synthetic_demo(output: Path, seed: int = 0, bootstrap: int = 1000) -> None:
    """Synthetic lm-eval samples with a planted miscalibration, audited like `first report --samples`."""
    from first_eval.command_line import audit_and_write, audit_config_from_flags, print_summary
    from first_eval.lm_eval_bridge import read_samples_path
    from first_demo.synthetic import DEMO_TASKS, write_demo_samples

    paths = write_demo_samples(output / "samples", seed=seed)
    task_samples = [task for path in paths for task in read_samples_path(path)]
    config = audit_config_from_flags(15, "sum", "temperature,platt,isotonic", 5, bootstrap, seed)
    audit_and_write(task_samples, config, output, "first demo: synthetic tasks with planted miscalibration",
                    model="synthetic (planted sharpness: " + ", ".join(f"{t.name}={t.sharpness}" for t in DEMO_TASKS) + ")")
    print_summary(output)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
