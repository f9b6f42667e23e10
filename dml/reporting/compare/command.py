"""`dml compare DIR [DIR...]`: one table of a sweep's runs, with CSV, Markdown and a plot."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from dml.errors import DmlError
from dml.reporting.compare.runs import (
    BEST_METRIC,
    find_runs,
    load_run,
    sort_runs,
    varying_overrides,
)
from dml.reporting.compare.tables import (
    DEFAULT_METRICS,
    print_table,
    run_label,
    write_csv,
    write_markdown,
)
from dml.reporting.compare_plots import RunCurves, compare_figure
from dml.reporting.figures import save_figure


def default_out(paths: Sequence[Path]) -> Path:
    """The one directory given, or the directory the given run directories share."""
    if len(paths) == 1:
        return paths[0]
    return Path(os.path.commonpath([p.resolve() for p in paths]))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dml compare",
        description="Compare the runs of a sweep, from their run directories alone. Writes "
        "compare.csv, compare.md and compare.png.",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a multirun directory (holding numbered job directories), or run directories",
    )
    parser.add_argument(
        "--sort",
        default=BEST_METRIC,
        metavar="METRIC",
        help=f"metric to rank runs by, highest first (default: {BEST_METRIC})",
    )
    parser.add_argument(
        "--ascending",
        action="store_true",
        help="rank lowest first, for metrics where lower is better (losses)",
    )
    parser.add_argument(
        "--metrics",
        type=lambda text: [m for m in text.split(",") if m],
        metavar="M1,M2",
        help="metrics to show in the table "
        f"(default: {','.join(DEFAULT_METRICS)}); compare.csv always has all",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write compare.* (default: DIR, or the directory that several DIRs share)",
    )
    return parser.parse_args(list(argv))


def main(argv: list[str]) -> int:
    """Entry point of `dml compare`; returns the process exit status."""
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into a file, a pager or a CI log: Rich's 80 columns would crop the table.
        console = Console(width=160)
    try:
        runs = [load_run(path) for path in find_runs(args.dirs)]
    except DmlError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    runs = sort_runs(runs, args.sort, args.ascending)
    wanted = args.metrics or list(DEFAULT_METRICS)
    if args.sort not in wanted:
        wanted = [args.sort, *wanted]
    metrics = [m for m in wanted if any(m in run.metrics for run in runs)]
    if args.sort not in metrics:
        console.print(f"[yellow]no run has the metric {args.sort!r}; order left as found[/]")
    varying, shared = varying_overrides(runs)
    caption = f"Sorted by {args.sort}, {'lowest' if args.ascending else 'highest'} first."
    print_table(console, runs, varying, shared, metrics, caption)

    out = args.out or default_out(args.dirs)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", runs)
    write_markdown(out / "compare.md", runs, varying, shared, metrics, caption)
    labelled = zip(runs, varying, strict=True)
    curves = [RunCurves(run_label(r, v), r.history, r.metrics) for r, v in labelled]
    save_figure(compare_figure(curves), out / "compare.png")
    console.print(f"Wrote {out / 'compare.csv'}, compare.md and compare.png")
    return 0
