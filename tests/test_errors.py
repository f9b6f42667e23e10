from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dml.errors import DmlError, one_line


class BrokenDataset(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise DmlError(f"image /data/x/{index}.jpg is corrupt; set dataset.skip_corrupt=true")


def test_an_error_from_a_dataloader_worker_keeps_only_its_message() -> None:
    loader = DataLoader(BrokenDataset(), batch_size=2, num_workers=1)
    with pytest.raises(DmlError) as error:
        next(iter(loader))
    assert "Original Traceback" in str(error.value)
    assert one_line(error.value) == (
        "image /data/x/0.jpg is corrupt; set dataset.skip_corrupt=true"
    )


def test_a_plain_error_is_unchanged() -> None:
    assert one_line(DmlError("data.batch_size=0 must be positive")) == (
        "data.batch_size=0 must be positive"
    )
