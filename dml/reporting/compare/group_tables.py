"""The table of variants: in the terminal (Rich), as Markdown, and as compare_groups.csv.

Every cell is ``mean ± ci95`` over the variant's finished runs (the mean alone for a
single run); compare_groups.csv holds the numbers apart, for other tools.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dml.reporting.compare.groups import Separation, Summary, Variant
from dml.reporting.compare.tables import STATUS_STYLE, short_header


def format_summary(summary: Summary) -> str:
    if summary.n == 0 or math.isnan(summary.mean):
        return "—"
    if summary.ci95 is None:
        return f"{summary.mean:.4f}"
    return f"{summary.mean:.4f} ± {summary.ci95:.4f}"


def short_labels(variants: Sequence[Variant]) -> tuple[list[str], list[str]]:
    """Each variant's label less the overrides all variants share, and those shared.

    A sweep's variants repeat its fixed overrides (``dataset=digits``); showing them once
    keeps the column to what tells the variants apart.
    """
    parts = [variant.label.split(" ") for variant in variants]
    common = set.intersection(*(set(p) for p in parts)) if parts else set()
    shared = [p for p in parts[0] if p in common] if parts else []
    labels = [" ".join(p for p in part if p not in common) or "—" for part in parts]
    return labels, shared


def excluded_cell(variant: Variant) -> str:
    counts = {status: 0 for status in ("failed", "unfinished")}
    for run in variant.excluded:
        counts[run.status] += 1
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "—"


class OptionalColumns(NamedTuple):
    """The columns a table shows only when they tell something: ``dataset`` when the
    variants span several datasets, ``not averaged`` when some run was left out."""

    dataset: bool
    excluded: bool


def optional_columns(variants: Sequence[Variant]) -> OptionalColumns:
    return OptionalColumns(
        len({v.dataset for v in variants}) > 1, any(v.excluded for v in variants)
    )


def group_header(variants: Sequence[Variant], metrics: Sequence[str]) -> list[str]:
    shown = optional_columns(variants)
    return [
        "#",
        "variant",
        *(["dataset"] if shown.dataset else []),
        "n",
        *metrics,
        *(["not averaged"] if shown.excluded else []),
    ]


def group_rows(
    variants: Sequence[Variant], labels: Sequence[str], metrics: Sequence[str]
) -> list[list[str]]:
    shown = optional_columns(variants)
    rows = []
    for rank, (variant, label) in enumerate(zip(variants, labels, strict=True), start=1):
        rows.append(
            [
                str(rank),
                label,
                *([str(variant.dataset)] if shown.dataset else []),
                str(len(variant.finished)),
                *(format_summary(variant.summary(m)) for m in metrics),
                *([excluded_cell(variant)] if shown.excluded else []),
            ]
        )
    return rows


def notes(
    variants: Sequence[Variant],
    labels: Sequence[str],
    shared: list[str],
    found: Sequence[Separation],
) -> list[str]:
    """The lines under the table: the tests, the shared overrides, the runs left out."""
    short = {id(variant): label for variant, label in zip(variants, labels, strict=True)}
    lines = [s.sentence(short[id(s.best)], short[id(s.runner_up)]) for s in found]
    if shared:
        lines.append(f"Common overrides: {' '.join(shared)}")
    for variant in variants:
        for run in variant.excluded:
            label = short[id(variant)]
            lines.append(f"{run.name} ({label}): {run.status}, not averaged — {run.reason}")
    return lines


def print_group_table(
    console: Console,
    variants: Sequence[Variant],
    metrics: Sequence[str],
    caption: str,
    found: Sequence[Separation],
) -> None:
    labels, shared = short_labels(variants)
    runs = sum(len(v.runs) for v in variants)
    table = Table(
        title=f"{len(variants)} variants of {runs} runs", caption=caption, box=box.SIMPLE_HEAD
    )
    rows = group_rows(variants, labels, metrics)
    for name in group_header(variants, metrics):
        if name in ("variant", "dataset", "not averaged"):
            table.add_column(name, overflow="fold")
        elif name in ("#", "n"):
            table.add_column(name, justify="right")
        else:
            table.add_column(short_header(name), justify="right", overflow="fold")
    for variant, row in zip(variants, rows, strict=True):
        cells = [escape(cell) for cell in row]
        cells[1] = "\n".join(escape(o) for o in row[1].split(" "))
        if variant.excluded:
            cells[-1] = f"[{STATUS_STYLE['failed']}]{cells[-1]}[/]"
        table.add_row(*cells)
    console.print(table)
    for line in notes(variants, labels, shared, found):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def write_group_markdown(
    path: Path,
    variants: Sequence[Variant],
    metrics: Sequence[str],
    caption: str,
    found: Sequence[Separation],
) -> None:
    labels, shared = short_labels(variants)
    header = group_header(variants, metrics)
    text = ("variant", "dataset", "not averaged")
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" if h in text else "---:" for h in header) + " |",
    ]
    for row in group_rows(variants, labels, metrics):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    body = [caption, *(f"- {line}" for line in notes(variants, labels, shared, found))]
    path.write_text("\n".join(lines) + "\n\n" + "\n".join(body) + "\n")


def write_groups_csv(path: Path, variants: Sequence[Variant]) -> None:
    """``variant, n``, then ``<metric>_mean, _std, _ci95`` for every metric a finished run
    has (names as in metrics.json); empty cells where n is too small."""
    metrics = sorted({m for v in variants for run in v.finished for m in run.metrics} - {"epoch"})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["variant", "n", *(f"{m}_{part}" for m in metrics for part in ("mean", "std", "ci95"))]
        )
        for variant in variants:
            cells: list[object] = [variant.label, len(variant.finished)]
            for metric in metrics:
                summary = variant.summary(metric)
                for value in (summary.mean if summary.n else None, summary.std, summary.ci95):
                    cells.append("" if value is None else value)
            writer.writerow(cells)
