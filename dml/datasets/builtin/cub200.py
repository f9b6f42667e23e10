"""CUB-200-2011 (Caltech-UCSD Birds), with the DML split: classes 1–100 train, 101–200 test.

The benchmark's own ``train_test_split.txt`` splits images of the same classes, for
classification; metric learning ignores it and splits by class instead.
"""

from __future__ import annotations

from pathlib import Path

from dml.datasets.images.files import ImageList
from dml.datasets.images.source import ClassRangeSource, require_classes
from dml.errors import DmlError


def read_id_table(path: Path, what: str) -> dict[int, str]:
    """A ``<integer id> <value>`` file, one entry per line, as CUB ships all its lists."""
    table: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise DmlError(f"{path}, line {number}: expected '<id> <{what}>', got {line.strip()!r}")
        table[int(fields[0])] = fields[1].strip()
    return table


class CUB200(ClassRangeSource):
    """Birds of 200 species, about 60 photographs each (11,788 images)."""

    layout = (
        "CUB_200_2011/ with images.txt ('<image_id> <class_folder>/<file>.jpg'), "
        "image_class_labels.txt ('<image_id> <class_id>'), classes.txt ('<class_id> <name>') "
        "and images/<class_folder>/<file>.jpg"
    )

    def find_root(self) -> Path:
        """The CUB_200_2011 folder itself, or the folder the archive was extracted into."""
        return self.root_or_nested("CUB_200_2011", lambda folder: (folder / "images.txt").exists())

    def read_all(self, root: Path) -> ImageList:
        images_file = self.require_file(root / "images.txt")
        labels_file = self.require_file(root / "image_class_labels.txt")
        classes_file = self.require_file(root / "classes.txt")
        names = read_id_table(images_file, "class_folder/file.jpg")
        classes = read_id_table(labels_file, "class_id")
        class_names = read_id_table(classes_file, "class name")
        missing = sorted(set(names) - set(classes))
        if missing:
            raise DmlError(
                f"image {missing[0]} of {images_file} has no line in {labels_file}; "
                f"expected {self.layout}"
            )
        ids = sorted(names)
        try:
            labels = [int(classes[i]) for i in ids]
        except ValueError as exc:
            raise DmlError(f"{labels_file}: class ids must be integers ({exc})") from exc
        images = ImageList([root / "images" / names[i] for i in ids], labels)
        require_classes(images, class_names, labels_file, classes_file)
        return images
