"""metrics.csv: one row per completed epoch, written as soon as the row changes.

It is a Lightning logger so that it sees exactly what the module logs, whatever other
logger (W&B, CSV, none) the user picked. Rows are keyed by the ``epoch`` value the module
logs with every metric, so the validation pass before training is row 0.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only


class EpochHistoryLogger(Logger):
    def __init__(self, path: Path, keep_existing: bool = False) -> None:
        """``keep_existing``: a resumed run continues the rows its earlier part wrote."""
        super().__init__()
        self.path = Path(path)
        self.rows: dict[int, dict[str, float]] = {}
        if keep_existing and self.path.is_file():
            with self.path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    epoch = int(row.pop("epoch"))
                    values = {k: float(v) for k, v in row.items() if v != ""}
                    self.rows[epoch] = {"epoch": epoch, **values}

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        """The composed config lives in .hydra/; nothing to add here."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "epoch" not in metrics:
            return
        epoch = int(metrics["epoch"])
        row = self.rows.setdefault(epoch, {"epoch": epoch})
        row.update({k: float(v) for k, v in metrics.items() if k != "epoch"})
        self.write()

    def write(self) -> None:
        """Rewrite the whole (small) file through a rename, so a kill never leaves half a row."""
        columns = ["epoch"] + sorted({k for row in self.rows.values() for k in row} - {"epoch"})
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for epoch in sorted(self.rows):
                writer.writerow(self.rows[epoch])
        os.replace(tmp, self.path)
