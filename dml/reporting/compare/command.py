"""`dml compare DIR [DIR...]`: one table of a sweep's variants (or runs), CSV, Markdown, a plot.

By default the runs that repeat one configuration (seeds, folds) are one variant, shown
as ``mean ± ci95`` (:mod:`dml.reporting.compare.groups`); ``--no-group`` shows every run
on its own row, as compare did before variants.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from dml.errors import DmlError
from dml.reporting.compare.group_tables import (
    print_group_table,
    short_labels,
    write_group_markdown,
    write_groups_csv,
)
from dml.reporting.compare.groups import (
    Variant,
    datasets_of,
    group_runs,
    rank_variants,
    separations,
)
from dml.reporting.compare.runs import (
    BEST_METRIC,
    RunRecord,
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
from dml.reporting.compare_plots import VariantCurves, compare_figure
from dml.reporting.figures import save_figure


def default_out(paths: Sequence[Path]) -> Path:
    """The one directory given, or the directory the given run directories share."""
    if len(paths) == 1:
        return paths[0]
    return Path(os.path.commonpath([p.resolve() for p in paths]))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dml compare",
        description="Compare the runs of a sweep, from their run directories alone. Runs "
        "that differ only in seed (or dataset.fold) form one variant, shown as mean ± 95% "
        "CI. Writes compare.csv (one row per run), compare_groups.csv (one per variant), "
        "compare.md and compare.png.",
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
        help=f"metric to rank variants (runs) by, highest mean first (default: {BEST_METRIC})",
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
    grouping = parser.add_mutually_exclusive_group()
    grouping.add_argument(
        "--group-by",
        type=lambda text: [k for k in text.split(",") if k],
        metavar="KEY[,KEY]",
        help="group runs by these override keys (e.g. loss or loss,miner), pooling "
        "whatever else differs; default: runs whose overrides differ only in seed or "
        "dataset.fold form one variant",
    )
    grouping.add_argument(
        "--no-group",
        action="store_true",
        help="one row per run, no variants (and no compare_groups.csv)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write compare.* (default: DIR, or the directory that several DIRs share)",
    )
    return parser.parse_args(list(argv))


def print_error(exc: DmlError) -> int:
    Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
    return 2


def single_runs(runs: list[RunRecord]) -> list[Variant]:
    """Each run as a variant of its own (``--no-group``), labelled as the run table does."""
    varying, _ = varying_overrides(runs)
    return [
        Variant(run_label(run, changed), run.dataset, [run])
        for run, changed in zip(runs, varying, strict=True)
    ]


def curves_of(variant: Variant, label: str, metric: str) -> VariantCurves:
    """The finished runs' curves; a variant with none shows how far its runs got."""
    drawn = variant.finished or variant.runs
    summary = variant.summary(metric)
    return VariantCurves(
        label,
        [run.history for run in drawn],
        [run.metrics for run in drawn],
        summary.mean,
        summary.ci95,
    )


def main(argv: list[str]) -> int:
    """Entry point of `dml compare`; returns the process exit status."""
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into a file, a pager or a CI log: Rich's 80 columns would crop the table.
        console = Console(width=160)
    try:
        runs = [load_run(path) for path in find_runs(args.dirs)]
        variants = [] if args.no_group else group_runs(runs, args.group_by)
    except DmlError as exc:
        return print_error(exc)
    runs = sort_runs(runs, args.sort, args.ascending)
    wanted = args.metrics or list(DEFAULT_METRICS)
    if args.sort not in wanted:
        wanted = [args.sort, *wanted]
    metrics = [m for m in wanted if any(m in run.metrics for run in runs)]
    if args.sort not in metrics:
        console.print(f"[yellow]no run has the metric {args.sort!r}; order left as found[/]")
    order = "lowest" if args.ascending else "highest"
    out = args.out or default_out(args.dirs)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "compare.csv"]
    if args.no_group:
        varying, shared = varying_overrides(runs)
        caption = f"Sorted by {args.sort}, {order} first."
        print_table(console, runs, varying, shared, metrics, caption)
        write_csv(out / "compare.csv", runs, [run.variant for run in runs])
        write_markdown(out / "compare.md", runs, varying, shared, metrics, caption)
        ranked = single_runs(runs)
    else:
        datasets = datasets_of(variants)
        if len(datasets) > 1:
            names = ", ".join(str(d) for d in datasets)
            console.print(
                f"[yellow]warning: these runs use {len(datasets)} datasets ({names}); their "
                "variants are grouped and ranked apart, never averaged together[/]",
                soft_wrap=True,
            )
        ranked = rank_variants(variants, args.sort, args.ascending)
        found = separations(ranked, args.sort)
        caption = (
            f"Ranked by the mean of {args.sort}, {order} first; cells are mean ± 95% CI "
            "half-width (t-based) over finished runs, n = finished runs."
        )
        print_group_table(console, ranked, metrics, caption, found)
        label = {id(run): variant.label for variant in ranked for run in variant.runs}
        write_csv(out / "compare.csv", runs, [label[id(run)] for run in runs])
        write_groups_csv(out / "compare_groups.csv", ranked)
        write_group_markdown(out / "compare.md", ranked, metrics, caption, found)
        written.append(out / "compare_groups.csv")
    labels = short_labels(ranked)[0] if not args.no_group else [v.label for v in ranked]
    curves = [curves_of(v, label, args.sort) for v, label in zip(ranked, labels, strict=True)]
    figure = compare_figure(curves, args.sort)
    save_figure(figure, out / "compare.png")
    names = ", ".join(p.name for p in [*written[1:], out / "compare.md", out / "compare.png"])
    console.print(f"Wrote {written[0]}, {names}", markup=False, soft_wrap=True)
    return 0
