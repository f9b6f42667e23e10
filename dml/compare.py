"""`dml compare DIR [DIR...]`: one table of a sweep's runs, read from their run directories.

Everything comes from files a run directory holds (``.hydra/overrides.yaml``,
``metrics.json``, ``metrics.csv``), so a sweep can be compared on a machine with no W&B
account, or after the W&B runs were deleted. W&B's local run file is read only to tell a
crashed run from one still going, and only when the ``wandb`` command is there.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dml.errors import DmlError
from dml.plots import RunCurves, compare_figure, read_history, read_metrics, save_figure

FAILED_MARKER = "FAILED"
BEST_METRIC = "val/map_at_r"
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


@dataclass
class RunRecord:
    """One run directory as compare sees it.

    ``metrics`` is metrics.json for a finished run; for any other run it is the latest
    value of each column in metrics.csv, so a crashed run still shows how far it got.
    """

    path: Path
    overrides: list[str]
    status: str
    reason: str
    metrics: dict[str, float]
    history: dict[str, np.ndarray] = field(repr=False)
    best_epoch: int | None
    best_value: float | None
    epochs: int

    @property
    def name(self) -> str:
        return self.path.name


def write_failure_marker(run_dir: Path, error: BaseException) -> None:
    """Leave ``FAILED`` in a run directory, holding the error, so compare can mark the run.

    Without it a crash and a run still training look the same from the files alone.
    """
    Path(run_dir, FAILED_MARKER).write_text(f"{type(error).__name__}: {error}\n")


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "metrics.csv").is_file()


def natural_key(path: Path) -> tuple[int, int | str]:
    """Job directories 0, 1, …, 10 in numeric order, other names after them."""
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories named directly, or the job directories inside a multirun directory."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise DmlError(
                f"{path}: no such directory; give a multirun directory or run directories"
            )
        if is_run_dir(path):
            runs.append(path)
            continue
        jobs = sorted((p for p in path.iterdir() if p.is_dir() and is_run_dir(p)), key=natural_key)
        if not jobs:
            raise DmlError(
                f"{path} holds no run directories: a run directory has .hydra/ or metrics.csv, "
                "and a multirun directory holds them as numbered job directories"
            )
        runs.extend(jobs)
    return runs


def read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def wandb_exit_code(run_dir: Path) -> int | None:
    """The exit code a W&B run recorded for itself, or None if it recorded none (yet).

    Read with ``wandb leet inspect``, the reader W&B ships for its local run files.
    """
    files = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"))
    executable = Path(sys.executable).with_name("wandb")
    command = str(executable) if executable.exists() else shutil.which("wandb")
    if not files or command is None:
        return None
    try:
        result = subprocess.run(
            [command, "leet", "inspect", "--summary", "--json", str(files[-1])],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        code = json.loads(result.stdout).get("exit_code")
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None
    return None if code is None else int(code)


def latest_values(history: dict[str, np.ndarray]) -> dict[str, float]:
    latest = {}
    for column, values in history.items():
        present = values[~np.isnan(values)]
        if len(present):
            latest[column] = float(present[-1])
    return latest


def best_epoch(
    history: dict[str, np.ndarray], metric: str = BEST_METRIC
) -> tuple[int | None, float | None]:
    """The epoch with the highest value of ``metric`` (the first, on ties) and that value."""
    values = history.get(metric)
    if values is None or np.isnan(values).all():
        return None, None
    index = int(np.nanargmax(values))
    return int(history["epoch"][index]), float(values[index])


def load_run(run_dir: Path) -> RunRecord:
    history = read_history(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else {}
    epochs = int(np.nanmax(history["epoch"])) if len(history.get("epoch", ())) else 0
    marker = run_dir / FAILED_MARKER
    if (run_dir / "metrics.json").is_file():
        status, reason, metrics = "finished", "", read_metrics(run_dir / "metrics.json")
    elif marker.is_file():
        lines = marker.read_text().strip().splitlines()
        status, reason, metrics = "failed", lines[0] if lines else "FAILED", latest_values(history)
    else:
        code = wandb_exit_code(run_dir)
        metrics = latest_values(history)
        if code:
            status, reason = "failed", f"W&B run exited with code {code}"
        elif history:
            status, reason = "unfinished", f"no metrics.json; metrics.csv reaches epoch {epochs}"
        else:
            status, reason = "unfinished", "no metrics.json nor metrics.csv"
    best, best_value = best_epoch(history)
    return RunRecord(
        path=run_dir,
        overrides=read_overrides(run_dir),
        status=status,
        reason=reason,
        metrics=metrics,
        history=history,
        best_epoch=best,
        best_value=best_value,
        epochs=epochs,
    )


def sort_runs(runs: list[RunRecord], metric: str, ascending: bool) -> list[RunRecord]:
    """Finished runs first, each part ordered by ``metric``; a run without it goes last."""

    def key(run: RunRecord) -> tuple[bool, bool, float]:
        value = run.metrics.get(metric, math.nan)
        if math.isnan(value):
            return (run.status != "finished", True, 0.0)
        return (run.status != "finished", False, value if ascending else -value)

    return sorted(runs, key=key)


def varying_overrides(runs: Sequence[RunRecord]) -> tuple[list[list[str]], list[str]]:
    """Each run's overrides that differ across the runs, and those all runs share.

    A sweep's jobs repeat the same fixed overrides (``dataset=digits``); showing them once
    keeps the table's column to what tells the runs apart.
    """
    common = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    shared = [o for o in runs[0].overrides if o in common] if runs else []
    return [[o for o in run.overrides if o not in common] for run in runs], shared


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


def write_csv(path: Path, runs: Sequence[RunRecord]) -> None:
    """Every metric of every run, overrides in full: the file to load into a notebook."""
    metric_names = sorted({m for run in runs for m in run.metrics if m != "epoch"})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "run",
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
        for run in runs:
            writer.writerow(
                [
                    run.name,
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
