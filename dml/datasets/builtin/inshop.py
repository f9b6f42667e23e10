"""In-Shop Clothes Retrieval (DeepFashion): 7,982 clothing items, 52,712 images.

``list_eval_partition.txt`` marks every image ``train``, ``query`` or ``gallery``. The
benchmark retrieves each query image among the gallery images, never among the other
queries, so this source returns ``query`` and ``gallery`` as their own splits; ``test``
is their union for code that evaluates a set against itself. Items are labelled by the
number in their id (``id_00000002`` is 2), the same number in the query and the gallery.

An item's images come in series, named by the number before the first underscore
(``02_1_front.jpg``, ``02_2_side.jpg`` and ``02_4_full.jpg`` are series 02, one shoot of
the item). The series is the image's group, so ``eval.exclude_same_group=true``
retrieves each query's item only through images of its other shoots.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dml.datasets.images.files import ImageList, group_numbers
from dml.datasets.images.source import PartitionedImageSource
from dml.errors import DmlError

HEADER = ["image_name", "item_id", "evaluation_status"]
STATUSES = ("train", "query", "gallery")
ITEM_ID = re.compile(r"id_(\d+)")
SERIES = re.compile(r"(\d+)_")


class InShop(PartitionedImageSource):
    layout = (
        "an In-Shop folder with list_eval_partition.txt (or Eval/list_eval_partition.txt: a "
        "count line, the header 'image_name item_id evaluation_status', then lines like "
        "'img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 query') and the img/ "
        "folder it names (or Img/img/)"
    )

    def read(self, root: Path) -> dict[str, ImageList]:
        candidates = [root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"]
        found = [path for path in candidates if path.is_file()]
        if not found:
            raise DmlError(
                f"annotation file {candidates[0]} is missing (so is {candidates[1]}); "
                f"expected {self.layout}"
            )
        listing = found[0]
        base = root / "Img" if not (root / "img").is_dir() and (root / "Img").is_dir() else root
        rows: dict[str, tuple[list[Path], list[int], list[str]]] = {
            s: ([], [], []) for s in STATUSES
        }
        lines = [line for line in listing.read_text().splitlines() if line.strip()]
        if len(lines) < 2 or lines[1].split() != HEADER:
            raise DmlError(
                f"{listing}: expected a count line, then the header '{' '.join(HEADER)}'"
            )
        for number, line in enumerate(lines[2:], start=3):
            fields = line.split()
            match = ITEM_ID.fullmatch(fields[1]) if len(fields) == 3 else None
            if match is None or fields[2] not in STATUSES:
                raise DmlError(
                    f"{listing}, line {number}: expected '<image_name> id_<digits> "
                    f"train|query|gallery', got {line.strip()!r}"
                )
            paths, labels, series = rows[fields[2]]
            paths.append(base / fields[0])
            labels.append(int(match.group(1)))
            shoot = SERIES.match(Path(fields[0]).name)
            # An image whose name carries no series is a group of its own.
            series.append(f"{fields[1]}/{shoot.group(1) if shoot else fields[0]}")
        if lines[0].strip().isdigit() and int(lines[0]) != len(lines) - 2:
            raise DmlError(
                f"{listing} announces {int(lines[0])} images on its first line but lists "
                f"{len(lines) - 2}; the file is incomplete"
            )
        groups = group_numbers([key for status in STATUSES for key in rows[status][2]])
        parts: dict[str, ImageList] = {}
        start = 0
        for status in STATUSES:
            paths, labels, _ = rows[status]
            parts[status] = ImageList(paths, labels, groups[start : start + len(paths)])
            start += len(paths)
        for status in STATUSES:
            if len(parts[status]) == 0:
                raise DmlError(f"{listing} marks no image '{status}'; expected {self.layout}")
        train = set(parts["train"].labels.tolist())
        tested = np.union1d(parts["query"].labels, parts["gallery"].labels)
        overlap = train.intersection(tested.tolist())
        if overlap:
            raise DmlError(
                f"{listing}: item id_{min(overlap):08d} is both a training and a test item; "
                "the benchmark's items are disjoint"
            )
        return parts
