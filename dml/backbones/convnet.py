"""A small convolutional network for small images (MNIST-sized), fast on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dml.errors import DmlError


class ConvNet(nn.Module):
    """Conv 3×3 → BatchNorm → ReLU → MaxPool blocks, global average pooling, linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        embedding_dim: int = 64,
        channels: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise DmlError(f"backbone.embedding_dim={embedding_dim} must be a positive integer")
        if len(input_shape) != 3:
            raise DmlError(
                f"backbone=convnet needs image inputs shaped [channels, height, width], "
                f"but dataset.input_shape is {list(input_shape)}; use backbone=mlp"
            )
        self.embedding_dim = embedding_dim
        blocks: list[nn.Module] = []
        in_ch = input_shape[0]
        for out_ch in channels:
            blocks += [
                nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_ch, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
