"""The comparison table: in the terminal (Rich), as Markdown and as CSV."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dml.reporting.compare.runs import BEST_METRIC, RunRecord

DEFAULT_METRICS = (
    "val/map_at_r",
    "test/map_at_r",
    "test/precision_at_1",
    "test/recall_at_1",
    "test/nmi",
)
SHORT_NAMES = {
    "map_at_r": "MAP@R",
    "precision_at_1": "P@1",
    "r_precision": "R-Prec",
    "nmi": "NMI",
    "ami": "AMI",
}
# The epoch with the best val/map_at_r, over the last epoch the run reached.
EPOCH_COLUMN = "best/last epoch"
STATUS_STYLE = {"finished": "green", "failed": "bold red", "unfinished": "yellow"}


def run_label(run: RunRecord, varying: list[str]) -> str:
    return " ".join(varying) if varying else run.name


def format_value(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.4f}"


def table_rows(
    runs: Sequence[RunRecord], varying: Sequence[list[str]], metrics: Sequence[str]
) -> list[list[str]]:
    rows = []
    for rank, (run, changed) in enumerate(zip(runs, varying, strict=True), start=1):
        rows.append(
            [
                str(rank),
                run.name,
                run.status,
                " ".join(changed) or "—",
                *(format_value(run.metrics.get(m)) for m in metrics),
                f"{'—' if run.best_epoch is None else run.best_epoch}/{run.epochs}",
            ]
        )
    return rows


def table_header(metrics: Sequence[str]) -> list[str]:
    return ["#", "run", "status", "overrides", *metrics, EPOCH_COLUMN]


def short_header(name: str) -> str:
    """``test/map_at_r`` → ``test\\nMAP@R``: the names DML papers use, split over two lines."""
    split, _, metric = name.rpartition("/")
    label = SHORT_NAMES.get(metric, metric)
    if metric.startswith("recall_at_") and metric[len("recall_at_") :].isdigit():
        label = f"R@{metric[len('recall_at_') :]}"
    return f"{split}\n{label}" if split else label


def print_table(
    console: Console,
    runs: Sequence[RunRecord],
    varying: Sequence[list[str]],
    shared: list[str],
    metrics: Sequence[str],
    caption: str,
) -> None:
    table = Table(title=f"{len(runs)} runs", caption=caption, box=box.SIMPLE_HEAD)
    # Short headers and one override per line keep each column about as wide as its values,
    # so a sweep's table fits a terminal without folding numbers.
    widest = max((len(o) for changed in varying for o in changed), default=0)
    for name in table_header(metrics):
        if name == "overrides":
            table.add_column(name, overflow="fold", min_width=min(widest, 24))
        elif name in ("run", "status"):
            table.add_column(name, overflow="fold", no_wrap=name == "status")
        elif name == EPOCH_COLUMN:
            table.add_column("best/last\nepoch", justify="right")
        else:
            table.add_column(short_header(name), justify="right", overflow="fold")
    rows = table_rows(runs, varying, metrics)
    for run, changed, row in zip(runs, varying, rows, strict=True):
        cells = [escape(cell) for cell in row]
        style = STATUS_STYLE[run.status]
        cells[2] = f"[{style}]{run.status}[/{style}]"
        cells[3] = "\n".join(escape(o) for o in changed) or cells[3]
        table.add_row(*cells)
    console.print(table)
    if shared:
        console.print(f"common overrides: {' '.join(shared)}", markup=False)
    for run in runs:
        if run.status != "finished":
            style = STATUS_STYLE[run.status]
            line = f"[{style}]{escape(run.name)}: {run.status}[/{style}] — {escape(run.reason)}"
            console.print(line, soft_wrap=True)


def write_csv(path: Path, runs: Sequence[RunRecord], variants: Sequence[str]) -> None:
    """Every metric of every run, overrides in full: the file to load into a notebook.

    ``variants`` names each run's variant, as compare_groups.csv names its rows.
    """
    metric_names = sorted({m for run in runs for m in run.metrics if m != "epoch"})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "run",
                "variant",
                "path",
                "status",
                "reason",
                "overrides",
                "epochs",
                "best_epoch",
                f"best_{BEST_METRIC}",
                *metric_names,
            ]
        )
        for run, variant in zip(runs, variants, strict=True):
            writer.writerow(
                [
                    run.name,
                    variant,
                    str(run.path),
                    run.status,
                    run.reason,
                    " ".join(run.overrides),
                    run.epochs,
                    "" if run.best_epoch is None else run.best_epoch,
                    "" if run.best_value is None else run.best_value,
                    *(run.metrics.get(m, "") for m in metric_names),
                ]
            )


def write_markdown(
    path: Path,
    runs: Sequence[RunRecord],
    varying: Sequence[list[str]],
    shared: list[str],
    metrics: Sequence[str],
    caption: str,
) -> None:
    header = table_header(metrics)
    lines = [
        "| " + " | ".join(header) + " |",
        "| "
        + " | ".join("---" if h in ("run", "status", "overrides") else "---:" for h in header)
        + " |",
    ]
    for row in table_rows(runs, varying, metrics):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    notes = [caption]
    if shared:
        notes.append(f"Common overrides: `{' '.join(shared)}`.")
    notes += [f"- `{r.name}` {r.status}: {r.reason}" for r in runs if r.status != "finished"]
    path.write_text("\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n")
