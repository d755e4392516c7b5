"""Audits -> self-contained HTML report, ``metrics.json`` and ``calibrators.json``, written atomically.

The only module that renders HTML. Templates live in the checkout's ``reports/templates/`` and ship
in the wheel as the data package ``first_eval._templates``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from first_eval.audit import TaskAudit
from first_eval.errors import InputError
from first_eval.gate import ReportGate
from first_eval.questions import QUESTION_FIELDS, QUESTIONS_FILE, QUESTIONS_SCHEMA, questions_bytes

# Unchanged by issue 12: ``questions`` (the per-question file) and ``gate`` are new keys, older readers skip them.
REPORT_SCHEMA = "first.report/1"


def template_dir() -> Path:
    """Checkout first (``<repo>/reports/templates``), else the copy installed with the package."""
    checkout = Path(__file__).resolve().parent.parent / "reports" / "templates"
    if (checkout / "base.html.j2").is_file():
        return checkout
    return Path(__file__).resolve().parent / "_templates"  # the wheel's copy (package first_eval._templates)


def jinja_environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = format_number
    environment.filters["pct"] = lambda v, digits=1: "—" if v is None else f"{100 * v:.{digits}f}%"
    environment.filters["signed"] = lambda v, digits=3: "—" if v is None else f"{v:+.{digits}f}"
    environment.filters["slug"] = slug
    return environment


def format_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** -digits):
        return f"{value:.{max(digits - 1, 1)}e}"
    return f"{value:.{digits}f}"


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text)).strip("-").lower() or "item"


def render(template_name: str, **context: Any) -> str:
    environment = jinja_environment()
    css = (template_dir() / "report.css").read_text(encoding="utf-8")
    return environment.get_template(template_name).render(css=css, **context)


def json_ready(value: Any) -> Any:
    """numpy scalars/arrays -> Python; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def write_outputs_atomically(output_dir: Path, files: Mapping[str, str | bytes]) -> list[Path]:
    """Write every file to a temporary name in ``output_dir`` first, then rename them all into place.

    Nothing is written until every text is ready (the caller computes them first), so an error never
    leaves a half-written report; a kill during writing leaves only ``.tmp`` files, never a truncated
    ``report.html`` that looks complete. A ``bytes`` value is written as it is (``questions.jsonl.gz``), text as
    UTF-8. The files get the mode any new file gets (0666 less the umask),
    not ``mkstemp``'s private 0600. A folder that cannot be written is ``InputError`` naming ``--output``.
    """
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"--output {output_dir}: is a file, not a folder") from None
    except OSError as error:
        raise InputError(f"--output {output_dir}: cannot create the folder ({error.strerror or error})") from None
    staged: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            tmp_path = output_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            # O_EXCL: never follow or reuse an existing path; mode 0o666 is masked by the umask like open(..., "w").
            handle = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            staged.append((tmp_path, output_dir / name))
            # backslashreplace: a lone surrogate (an undecodable file name, say) cannot make the write fail
            data = text if isinstance(text, bytes) else text.encode("utf-8", errors="backslashreplace")
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        for tmp_path, final_path in staged:
            os.replace(tmp_path, final_path)
    except OSError as error:
        raise InputError(f"--output {output_dir}: cannot write there ({error.strerror or error})") from None
    finally:
        for tmp_path, _ in staged:
            try:
                tmp_path.unlink(missing_ok=True)
            except OSError:
                pass  # the folder went read-only: nothing better to do than leave the .tmp file
    return [final for _, final in staged]


@dataclass(frozen=True)
class ReportMeta:
    """Who/what produced a report, shown in its header and stored in metrics.json."""

    title: str
    model: str | None = None
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from first_eval import __version__

        return {"title": self.title, "model": self.model, "command": self.command, "version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def metrics_document(audits: Sequence[TaskAudit], meta: ReportMeta, gate: ReportGate | None = None) -> dict[str, Any]:
    """``metrics.json``: meta, config, each task's metrics; ``questions`` names the per-question file when the
    audits hold their questions, ``gate`` records the thresholds checked and what failed (``gate.py``)."""
    config = audits[0].config.to_dict() if audits else {}
    document = {
        "schema": REPORT_SCHEMA,
        "meta": meta.to_dict(),
        "config": config,
        "tasks": {audit.task: audit.to_dict() for audit in audits},
    }
    if audits and all(audit.questions is not None for audit in audits):
        document["questions"] = {"file": QUESTIONS_FILE, "schema": QUESTIONS_SCHEMA, "fields": list(QUESTION_FIELDS)}
    if gate is not None and gate.active:
        document["gate"] = gate.check(document["tasks"])
    return json_ready(document)


def calibrators_document(audits: Sequence[TaskAudit]) -> dict[str, Any]:
    """The calibrators fit on *all* of each task's questions, for reuse (e.g. ``first distill``)."""
    return json_ready({
        "schema": "first.calibrators/1",
        "score_mode": audits[0].config.score_mode if audits else None,
        "tasks": {
            audit.task: {name: result.fitted for name, result in audit.calibrated.items() if result.fitted is not None}
            for audit in audits
        },
    })


def task_figures(audit: TaskAudit) -> dict[str, str]:
    """Reliability diagram (before, and after cross-fitted temperature scaling when available)."""
    from first_eval.plots import ReliabilityCurve, reliability_diagram_svg

    def curve(label: str, bins) -> ReliabilityCurve:
        return ReliabilityCurve(label, bins.edges, bins.counts, bins.mean_confidence, bins.accuracy)

    curves = [curve(f"raw ({audit.config.score_mode})", audit.metrics.reliability)]
    scaled = audit.calibrated.get("temperature")
    if scaled is not None and scaled.metrics is not None:
        curves.append(curve(f"after temperature (T={format_number(audit.temperature)}, cross-fitted)", scaled.metrics.reliability))
    return {"reliability": reliability_diagram_svg(curves)}


def build_report_files(audits: Sequence[TaskAudit], meta: ReportMeta, gate: ReportGate | None = None) -> dict[str, str | bytes]:
    """Everything ``first report`` writes, keyed by file name (nothing touches the disk)."""
    document = metrics_document(audits, meta, gate)
    figures = {audit.task: task_figures(audit) for audit in audits}
    html = render(
        "report.html.j2", meta=document["meta"], config=document["config"], audits=audits,
        tasks=document["tasks"], figures=figures, gate=document.get("gate"),
    )
    files: dict[str, str | bytes] = {
        "report.html": html,
        "metrics.json": json.dumps(document, indent=2) + "\n",
        "calibrators.json": json.dumps(calibrators_document(audits), indent=2) + "\n",
    }
    if "questions" in document:
        files[QUESTIONS_FILE] = questions_bytes({audit.task: audit.questions for audit in audits})
    return files


def write_report(audits: Sequence[TaskAudit], output_dir: Path, meta: ReportMeta,
                 gate: ReportGate | None = None) -> list[Path]:
    return write_outputs_atomically(Path(output_dir), build_report_files(audits, meta, gate))


def unique_tasks(audits: Iterable[TaskAudit]) -> None:
    seen: dict[str, str] = {}
    for audit in audits:
        if audit.task in seen:
            raise ValueError(f"task {audit.task!r} appears twice ({seen[audit.task]} and {audit.source}); "
                             "audit different runs separately and compare them with `first compare`")
        seen[audit.task] = audit.source
