"""What every `first` command shares, public for the sub-commands of other packages (first_distill, first_demo):
a one-line failure with exit code 2, and comma-separated list options."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from first_eval.errors import InputError


def fail(message: str) -> "typer.Exit":
    """Print a one-line error and return the exit to raise (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def parse_list(value: str, flag: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise InputError(f"{flag} is empty; give a comma-separated list")
    return items


def audit_config_from_flags(bins: int, score: str, calibrators: str, folds: int, bootstrap: int, seed: int):
    from first_eval.audit import AuditConfig

    try:
        return AuditConfig(n_bins=bins, score_mode=score, calibrators=parse_list(calibrators, "--calibrators"),
                           n_folds=folds, n_bootstrap=bootstrap, seed=seed)
    except ValueError as error:
        raise InputError(str(error)) from None


def audit_and_write(task_samples: list, config, output: Path, title: str, model: Optional[str], gate=None) -> list[Path]:
    """Audit every task (with a progress bar), then write the report files atomically (``gate``: a ``ReportGate``)."""
    from first_eval.audit import audit_task
    from first_eval.progress import progress_bar
    from first_eval.report import ReportMeta, write_report

    audits = []
    with progress_bar(len(task_samples), "auditing", unit="tasks") as bar:
        for samples in task_samples:
            bar.describe(f"auditing {samples.task}")
            audits.append(audit_task(samples, config))
            bar.advance(1)
    meta = ReportMeta(title=title, model=model, command="first " + shlex.join(sys.argv[1:]))
    return write_report(audits, output, meta, gate)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def print_summary(output: Path) -> None:
    import json

    document = json.loads((output / "metrics.json").read_text())
    console = stderr_console()
    for task, metrics in document["tasks"].items():
        temperature = metrics.get("calibrated", {}).get("temperature", {})
        after = temperature.get("ece")
        console.print(
            f"{task:<32} n={metrics['n']:<6} acc={metrics['accuracy']:.3f} conf={metrics['mean_confidence']:.3f} "
            f"ECE={metrics['ece']:.3f}"
            + (f" -> {after:.3f} at T={temperature['temperature']:.3g}" if after is not None else "")
            + (f" (T at its search bound: {temperature['at_bound']})" if temperature.get("at_bound") else "")
            + (f" letter-mass={metrics['letters']['mean_mass']:.3f}" if "letters" in metrics else ""),
            highlight=False, soft_wrap=True,
        )
    console.print(f"wrote {output / 'report.html'}, metrics.json, calibrators.json, questions.jsonl.gz", highlight=False,
                  soft_wrap=True)

