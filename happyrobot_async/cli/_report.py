"""`report JOURNAL -o report.html`: one self-contained HTML page to look at a batch.

A timeline (a bar per job: waiting to be sent, sending, pending, training, then
its outcome), histograms of durations, and the summary, running and failures
tables. plotly (the `report` extra, imported only here) draws the charts, with
plotly.js inlined so the file opens offline. The data drawn is embedded as JSON
in `<script type="application/json" id="report-data">`, for machines.
"""

from __future__ import annotations

import argparse
import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._journal_summary import PHASES, JobRow, Summary, shown
from ._common import EXIT_OK, UsageError
from ._options import add_command
from ._status import add_journal_options, human, summary_for

if TYPE_CHECKING:
    from ._options import Subparsers

__all__: list[str] = []

_COLORS = {"waiting": "#c7ccd6", "sending": "#8e7cc3", "pending": "#f2b134", "training": "#3b82f6"}
_OUTCOMES = {  # state: (marker symbol, colour)
    "active": ("circle", "#16a34a"),
    "failed": ("x", "#dc2626"),
    "refused": ("diamond", "#7f1d1d"),
}
_LABELS = {"waiting": "waiting to be sent", "sending": "sending (POST)"}
_TITLE = "happyrobot-async batch report"
_MISSING = "the report needs plotly: pip install 'happyrobot-async[report]'"


_REPORT_HELP = """\
Write a batch's journal as one HTML page: timeline, durations, failures.

Write one self-contained HTML file (it opens offline) showing a batch from its
journal: a timeline with a bar per job, histograms of how long jobs waited, were
pending and trained, and the summary and failures tables. Read-only: safe while the
batch runs. Needs the [report] extra (plotly).
"""


def add_report(subparsers: Subparsers) -> None:
    """`report JOURNAL [-o PATH] [--jobs JOBS]`."""
    parser = add_command(subparsers, "report", _report, _REPORT_HELP)
    parser.add_argument("journal", type=Path, metavar="JOURNAL", help="the batch's journal")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="PATH",
        help="the HTML file to write (default: beside JOURNAL: run.journal -> run-report.html)",
    )
    add_journal_options(parser)


def _report(args: argparse.Namespace) -> int:
    journal: Path = args.journal
    out: Path = args.out or journal.with_name(f"{journal.stem}-report.html")
    path = write_report(summary_for(journal, args.jobs), out)
    print(path)
    return EXIT_OK


def write_report(summary: Summary, path: Path) -> Path:
    """Render `summary` into `path` (`UsageError` without plotly or if unwritable)."""
    page = render_report(summary)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    return path.resolve()


def render_report(summary: Summary) -> str:
    """The whole page, as one HTML string."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise UsageError(_MISSING) from None
    jobs = sorted(summary.jobs, key=lambda job: (job.sent_at or summary.now, job.label))
    timeline = _timeline(go, summary, jobs).to_html(include_plotlyjs=True, full_html=False)
    histograms = _histograms(go, make_subplots, summary)
    charts = histograms.to_html(include_plotlyjs=False, full_html=False)
    body = [
        f"<h1>{_TITLE}</h1>",
        f"<p class=meta>{_e(_headline(summary))}</p>",
        "<h2>Summary</h2>",
        _summary_table(summary),
        "<h2>Timeline</h2>",
        timeline,
        "<h2>Durations</h2>",
        _durations_table(summary),
        charts,
    ]
    if summary.running:
        body += [f"<h2>Running ({len(summary.running)})</h2>", _running_table(summary)]
    body += [f"<h2>Failures ({len(summary.failures)})</h2>", _failures_table(summary)]
    data = json.dumps({"summary": summary.to_json(), "jobs": [_job_data(summary, j) for j in jobs]})
    blob = data.replace("<", "\\u003c")  # no `</script>` can end the tag early
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{_TITLE}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n"
        f'<script type="application/json" id="report-data">{blob}</script>\n</body></html>\n'
    )


def _timeline(go: Any, summary: Summary, jobs: Sequence[JobRow]) -> Any:
    figure = go.Figure()
    spans: dict[str, list[tuple[str, Any]]] = {name: [] for name in PHASES}
    lanes = []  # one per job with a phase to draw, in order
    for job in jobs:
        phases = job.phases(summary.started_at, summary.now)
        lanes += [_axis(job)] if phases else []
        for phase in phases:
            spans[phase.name].append((_axis(job), phase))
    for name in PHASES:
        rows = spans[name]
        if not rows:
            continue
        label = _LABELS.get(name, name)
        figure.add_trace(
            go.Bar(
                name=label,
                orientation="h",
                y=[row for row, _ in rows],
                x=[phase.seconds * 1000 for _, phase in rows],  # a date axis counts in ms
                base=[_plot_time(phase.start) for _, phase in rows],
                marker={
                    "color": _COLORS[name],
                    "pattern": {"shape": ["/" if phase.open else "" for _, phase in rows]},
                },
                hovertext=[f"{row}: {label} {human(phase.seconds)}" for row, phase in rows],
                hoverinfo="text",
            )
        )
    for state, (symbol, color) in _OUTCOMES.items():
        ended = [job for job in jobs if job.state == state and job.finished_at is not None]
        if ended:
            figure.add_trace(
                go.Scatter(
                    name=state,
                    mode="markers",
                    y=[_axis(job) for job in ended],
                    x=[_plot_time(job.finished_at) for job in ended],
                    marker={"symbol": symbol, "color": color, "size": 9 if len(jobs) < 300 else 4},
                    hovertext=[f"{_axis(job)}: {state} {job.model_id or ''}" for job in ended],
                    hoverinfo="text",
                )
            )
    count = len(lanes)
    figure.update_layout(
        barmode="overlay",
        height=160 + min(22 * count, max(2200, 2 * count)),
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"},
        template="plotly_white",
    )
    figure.update_xaxes(type="date", title_text="time (UTC)")
    figure.update_yaxes(  # set, not autoranged: the markers would pad it with empty rows
        categoryorder="array",
        categoryarray=lanes,
        range=[count - 0.5, -0.5],
        automargin=True,
        showticklabels=count <= 120,
    )
    return figure


def _histograms(go: Any, make_subplots: Any, summary: Summary) -> Any:
    shown_phases = ("waiting", "pending", "training")
    seconds = summary.ended()
    longest = max(max(seconds[name], default=0.0) for name in shown_phases)
    unit, size = ("h", 3600.0) if longest > 7200 else ("min", 60.0) if longest > 120 else ("s", 1.0)
    titles = [f"{_LABELS.get(name, name)} ({unit})" for name in shown_phases]
    figure = make_subplots(rows=1, cols=3, subplot_titles=titles)
    for column, name in enumerate(shown_phases, start=1):
        values = [value / size for value in seconds[name]]
        figure.add_trace(
            go.Histogram(x=values, name=name, marker={"color": _COLORS[name]}, nbinsx=20),
            row=1,
            col=column,
        )
    figure.update_layout(
        height=320, showlegend=False, template="plotly_white", bargap=0.05, margin={"t": 40}
    )
    figure.update_yaxes(title_text="jobs", row=1, col=1)
    return figure


def _summary_table(summary: Summary) -> str:
    counts = summary.counts
    total = max(1, len(summary.jobs))
    rows = [
        [state, str(count), f"{100 * count / total:.0f} %"]
        for state, count in counts.items()
        if count or state in ("active", "failed")
    ]
    rows.append(["total", str(len(summary.jobs)), ""])
    return _table(["state", "jobs", "share"], rows, "summary")


def _durations_table(summary: Summary) -> str:
    rows = [
        [_LABELS.get(name, name), str(stats.count), human(stats.median), human(stats.max)]
        for name, stats in summary.durations().items()
    ]
    return _table(["phase", "ended", "median", "max"], rows, "durations")


def _running_table(summary: Summary) -> str:
    rows = [[*_cells(job), human(summary.for_seconds(job))] for job in summary.running]
    return _table(["job", "name", "model id", "status", "for"], rows, "running")


def _failures_table(summary: Summary) -> str:
    if not summary.failures:
        return "<p>None: no job failed or was refused.</p>"
    rows = [
        [*_cells(job), str(job.attempts), job.error or ("training failed" if job.model_id else "-")]
        for job in summary.failures
    ]
    return _table(["job", "name", "model id", "status", "attempts", "error"], rows, "failures")


def _cells(job: JobRow) -> list[str]:
    return [job.label, job.name or "-", job.model_id or "-", shown(job)]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], name: str) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _headline(summary: Summary) -> str:
    if summary.started_at is None:
        return f"Journal {summary.path} is empty: its batch has not begun."
    began = summary.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    span = human((summary.now - summary.started_at).total_seconds())
    return (
        f"Journal {summary.path}: {len(summary.jobs)} job(s), began {began}, "
        f"{span} to its last record. Bars still open at that moment are hatched."
    )


def _job_data(summary: Summary, job: JobRow) -> dict[str, Any]:
    phases = job.phases(summary.started_at, summary.now)
    return {
        "job": job.label,
        "name": job.name,
        "model_id": job.model_id,
        "state": job.state,
        "status": shown(job),
        "attempts": job.attempts,
        "error": job.error,
        "phases": [
            {
                "phase": p.name,
                "start": p.start.isoformat(),
                "seconds": round(p.seconds, 3),
                "open": p.open,
            }
            for p in phases
        ],
    }


def _axis(job: JobRow) -> str:
    return f"{job.label} · {job.name}" if job.name and job.name != job.label else job.label


def _plot_time(moment: datetime | None) -> str | None:
    """A time as plotly.js reads it (it knows no time zones): naive, in UTC."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;"
    "max-width:1200px;padding:0 16px;color:#1f2937}h1{font-size:1.6em}h2{margin-top:1.6em}"
    ".meta{color:#4b5563}table{border-collapse:collapse;margin:8px 0}"
    "th,td{border:1px solid #d1d5db;padding:4px 10px;text-align:left;font-size:14px}"
    "th{background:#f3f4f6}td:nth-child(n+2){font-variant-numeric:tabular-nums}"
)
