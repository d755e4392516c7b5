"""`first` sub-commands of first_distill (registered through the `first.commands` entry point)."""

from __future__ import annotations

from pathlib import Path

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


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
