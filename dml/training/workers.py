"""How many DataLoader worker processes a run uses, and whether they persist.

``data.num_workers=auto`` (the default) decodes in the main process when the data sits
in memory, where workers only add start-up and copying, and in ``min(cores, 8)`` worker
processes when every item is a file to read and decode (the image benchmarks), where one
process is the bottleneck: measured on 800 JPEGs of 500×375, ``num_workers=0`` decoded
27 images/s against 189 with two workers. A source says which it is through
:attr:`dml.datasets.base.DatasetSource.reads_files`; an explicit number always wins.

``data.persistent_workers=auto`` keeps the workers alive across epochs whenever there
are any, so the validation pass of every epoch does not pay their start-up again.
"""

from __future__ import annotations

import os
from typing import Any

from dml.datasets.base import DatasetSource
from dml.errors import DmlError

AUTO = "auto"
# Beyond this many workers JPEG decoding for one GPU stops getting faster and only
# costs memory (every worker holds its own copy of the dataset's file list).
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_num_workers(setting: Any, source: DatasetSource) -> int:
    """``data.num_workers``: ``auto`` or a number of worker processes (0: main process)."""
    if setting == AUTO:
        reads_files = getattr(source, "reads_files", False)
        return min(usable_cores(), MAX_AUTO_WORKERS) if reads_files else 0
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise DmlError(f"data.num_workers={setting!r} must be auto or an integer ≥ 0")
    return setting


def resolve_persistent_workers(setting: Any, num_workers: int) -> bool:
    """``data.persistent_workers``: ``auto`` (true with workers), true or false."""
    if setting == AUTO:
        return num_workers > 0
    if not isinstance(setting, bool):
        raise DmlError(f"data.persistent_workers={setting!r} must be auto, true or false")
    return setting and num_workers > 0
