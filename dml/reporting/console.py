"""The Rich table of final metrics that closes every run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def print_metrics_table(
    metrics: dict[str, float], run_dir: Path, title: str = "Final metrics"
) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("test/", "val/")):
            table.add_row(key, f"{metrics[key]:.4f}")
    console = Console()
    console.print(table)
    # One line however long the path (no wrapping), so it can be copied and grepped.
    console.print(f"Run directory: {run_dir.resolve()}", soft_wrap=True)
