"""Stanford Online Products: 22,634 products from eBay, 120,053 images.

The release fixes the DML split itself: ``Ebay_train.txt`` lists 11,318 products for
training and ``Ebay_test.txt`` the other 11,316 for testing. Most products have only two
to six images, so validation holds out whole products (``val_split=classes``).
"""

from __future__ import annotations

from pathlib import Path

from dml.datasets.images.files import ImageList
from dml.datasets.images.source import PartitionedImageSource
from dml.errors import DmlError

HEADER = ["image_id", "class_id", "super_class_id", "path"]


class StanfordOnlineProducts(PartitionedImageSource):
    layout = (
        "Stanford_Online_Products/ with Ebay_train.txt and Ebay_test.txt (header "
        "'image_id class_id super_class_id path', then one line per image) and the image "
        "folders they name, e.g. bicycle_final/111085122871_0.JPG"
    )

    def find_root(self) -> Path:
        """The Stanford_Online_Products folder, or the folder the archive was extracted into."""
        return self.root_or_nested(
            "Stanford_Online_Products", lambda folder: (folder / "Ebay_train.txt").exists()
        )

    def read(self, root: Path) -> dict[str, ImageList]:
        parts = {
            name: self._read_list(self.require_file(root / f"Ebay_{name}.txt"), root)
            for name in ("train", "test")
        }
        shared = set(parts["train"].labels.tolist()) & set(parts["test"].labels.tolist())
        if shared:
            raise DmlError(
                f"product {min(shared)} appears in both {root / 'Ebay_train.txt'} and "
                f"Ebay_test.txt; the benchmark's products are disjoint"
            )
        return parts

    def _read_list(self, path: Path, root: Path) -> ImageList:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines or lines[0].split() != HEADER:
            raise DmlError(
                f"{path}: expected the header line '{' '.join(HEADER)}'; expected {self.layout}"
            )
        paths, labels = [], []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split()
            if len(fields) != 4 or not fields[1].isdigit():
                raise DmlError(
                    f"{path}, line {number}: expected '<image_id> <class_id> <super_class_id> "
                    f"<path>', got {line.strip()!r}"
                )
            paths.append(root / fields[3])
            labels.append(int(fields[1]))
        return ImageList(paths, labels)
