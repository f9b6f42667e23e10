"""torchvision ResNets with an embedding head: the standard DML image backbone.

Pretrained weights come from a file named in ``weights`` (.pth or .safetensors), or, for
a torchvision weight name such as ``IMAGENET1K_V1`` (``imagenet`` is that one, the
weights the DML literature fine-tunes), through torchvision's weights API: from the torch
hub cache, downloaded into it on first use where there is a network. Without one, the
run stops at start in one line (:mod:`dml.backbones.downloads`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision import models

from dml.backbones.downloads import missing_torch_hub_file, offline_reason, torch_hub_file
from dml.backbones.weight_files import is_weights_path, read_state_dict
from dml.errors import DmlError

ARCHITECTURES: dict[str, tuple[Callable[..., models.ResNet], type[models.WeightsEnum]]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights),
    "resnet50": (models.resnet50, models.ResNet50_Weights),
}
POOLINGS = ("avg", "max", "avgmax")
# backbone.weights=imagenet: torchvision's original ImageNet weights, which the DML
# papers (e.g. Roth et al. 2020, through the pretrainedmodels package) start from.
IMAGENET = "imagenet"
SCRATCH = "backbone.weights=null"


def weights_entry(arch: str, name: str) -> models.WeightsEnum:
    """torchvision's entry for a weight name (``imagenet``, ``IMAGENET1K_V2``, ``DEFAULT``)."""
    enum = ARCHITECTURES[arch][1]
    name = "IMAGENET1K_V1" if name == IMAGENET else name
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = [IMAGENET] + [w.name for w in enum] + ["DEFAULT"]
        raise DmlError(
            f"backbone.weights={name!r} is neither a file nor a torchvision weight name for "
            f"{arch} ({', '.join(names)}); give a path to a .pth or .safetensors file, a "
            "name, or null"
        ) from None


def load_pretrained(arch: str, weights: str) -> dict[str, Tensor]:
    """The state dict named by ``weights``; the error says where the file should be."""
    if is_weights_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DmlError(
                f"pretrained {arch} weights not found at {path}: put a {arch} state dict "
                "there (torchvision's ImageNet weights, for instance), or set "
                f"backbone.weights to a torchvision weight name, or {SCRATCH} to train "
                "from scratch"
            )
        return read_state_dict(path)
    entry = weights_entry(arch, weights)
    path = torch_hub_file(entry.url)
    if path.is_file():
        return read_state_dict(path)
    what = f"pretrained {arch} weights"
    reason = offline_reason(entry.url)
    if reason is not None:
        raise missing_torch_hub_file(what, entry.url, reason, SCRATCH)
    try:
        state = entry.get_state_dict(progress=True)
    except Exception as exc:  # urllib, hash and unpickling failures have many types
        raise DmlError(f"downloading {entry.url} for {what} failed: {exc}") from None
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_trunk(network: models.ResNet, arch: str, weights: str) -> None:
    """Load every trunk parameter; the file's classifier (``fc``) is dropped, not needed."""
    state = {k: v for k, v in load_pretrained(arch, weights).items() if not k.startswith("fc.")}
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise DmlError(f"backbone.weights={weights} does not fit {arch}: {detail}") from exc
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        example = missing[0] if missing else result.unexpected_keys[0]
        raise DmlError(
            f"backbone.weights={weights} does not hold {arch} weights: "
            f"{len(missing)} trunk parameters missing, {len(result.unexpected_keys)} unknown "
            f"(e.g. {example})"
        )


class GlobalPool(nn.Module):
    """Average, max, or their sum ("avgmax"), which many DML papers found to retrieve better."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise DmlError(f"backbone.pooling={mode!r} is not one of {POOLINGS}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


class ResNet(nn.Module):
    """A ResNet trunk, global pooling, and a linear head to ``embedding_dim``.

    ``freeze_batchnorm`` keeps every BatchNorm layer of the trunk in eval mode with fixed
    affine parameters: P×K batches hold few classes, so their statistics are far from the
    pretraining statistics, and updating them hurts retrieval. ``head_lr_multiplier``
    scales the learning rate of the freshly initialised head over the pretrained trunk's;
    see :meth:`param_groups`.
    """

    def __init__(
        self,
        arch: str,
        input_shape: Sequence[int],
        embedding_dim: int = 512,
        weights: str | None = "IMAGENET1K_V1",
        freeze_batchnorm: bool = True,
        pooling: str = "avg",
        head_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise DmlError(f"backbone.arch={arch!r} is not one of {sorted(ARCHITECTURES)}")
        if embedding_dim < 1:
            raise DmlError(f"backbone.embedding_dim={embedding_dim} must be a positive integer")
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise DmlError(
                f"backbone={arch} needs RGB image inputs [3, height, width], but "
                f"dataset.input_shape is {list(input_shape)}"
            )
        if head_lr_multiplier <= 0:
            raise DmlError(f"backbone.head_lr_multiplier={head_lr_multiplier} must be positive")
        network = ARCHITECTURES[arch][0](weights=None)
        if weights is not None:
            load_trunk(network, arch, weights)
        feature_dim = network.fc.in_features
        self.embedding_dim = embedding_dim
        self.freeze_batchnorm = freeze_batchnorm
        self.head_lr_multiplier = head_lr_multiplier
        self.trunk = nn.Sequential(
            network.conv1,
            network.bn1,
            network.relu,
            network.maxpool,
            network.layer1,
            network.layer2,
            network.layer3,
            network.layer4,
        )
        self.pool = GlobalPool(pooling)
        self.head = nn.Linear(feature_dim, embedding_dim)
        if freeze_batchnorm:
            for module in self._batchnorms():
                module.requires_grad_(False)
        self.train()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.trunk(x)))

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        if self.freeze_batchnorm:
            for module in self._batchnorms():
                module.eval()
        return self

    def _batchnorms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.trunk.modules() if isinstance(m, nn.BatchNorm2d)]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: the trainable trunk at ``lr``, the head at ``lr × multiplier``."""
        trunk = [p for p in self.trunk.parameters() if p.requires_grad]
        return [
            {"params": trunk, "lr": lr},
            {"params": list(self.head.parameters()), "lr": lr * self.head_lr_multiplier},
        ]
