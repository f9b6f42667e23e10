"""Any image model timm knows, as a trunk without classifier plus dml's embedding head.

``backbone=timm backbone.name=vit_small_patch16_224.dino`` (or ``convnext_tiny``,
``vit_base_patch16_clip_224.openai``, ...). The model is built with timm's own API and
its pretrained weights come through timm's own source (:mod:`dml.backbones.timm_trunks`);
the dataset's transform follows the model's data config (:mod:`dml.backbones.timm_names`).
The fine-tuning controls are those of the ViT retrieval papers: freezing the stem or the
first blocks (Ermolov et al. 2022 freeze the patch embedding) or the whole trunk (a
linear probe), layer-wise learning-rate decay (BEiT), a head learning-rate multiplier,
drop-path, and another input size than the pretrained one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dml.backbones.heads import GeM, embedding_head
from dml.backbones.layer_groups import LayerGroups, optimizer_groups
from dml.backbones.timm_names import pretrained_config
from dml.backbones.timm_trunks import build_trunk, pretrained_file
from dml.backbones.weight_files import existing_file
from dml.errors import DmlError

# "default" is the model's own pooling (a ViT's class token, a CNN's average); the others
# are timm's global_pool options, and gem is dml's GeM on a convolutional feature map.
POOLINGS = ("default", "token", "avg", "max", "avgmax", "gem")
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class TimmBackbone(nn.Module):
    """timm trunk → pooling → embedding head (``linear``, ``mlp`` or ``none``).

    Frozen parts (``freeze_stem``, ``freeze_blocks``, ``freeze_trunk``) also stay in eval
    mode, so their dropout, drop-path and BatchNorm statistics do not move either; with
    ``freeze_batchnorm`` every BatchNorm of the trunk is fixed, as for the ResNets (P×K
    batches hold few classes, far from the pretraining statistics). :meth:`param_groups`
    gives the optimizer the layer-wise learning rates.
    """

    def __init__(
        self,
        name: str,
        input_shape: Sequence[int],
        embedding_dim: int = 512,
        pretrained: bool = True,
        weights: str | None = None,
        head: str = "linear",
        head_hidden_dim: int | None = None,
        pooling: str = "default",
        img_size: int | None = None,
        drop_path_rate: float = 0.0,
        freeze_stem: bool = False,
        freeze_blocks: int = 0,
        freeze_trunk: bool = False,
        freeze_batchnorm: bool = True,
        layer_decay: float = 1.0,
        head_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        check_settings(input_shape, img_size, pooling, drop_path_rate, layer_decay)
        if head_lr_multiplier <= 0:
            raise DmlError(f"backbone.head_lr_multiplier={head_lr_multiplier} must be positive")
        if weights is not None and not pretrained:
            raise DmlError(
                f"backbone.weights={weights} loads pretrained weights, but "
                "backbone.pretrained=false; set one of them"
            )
        pretrained_config(name)  # an unknown name or tag fails here, before any download
        file = existing_file(weights) if weights is not None else None
        if file is None and pretrained:
            file = pretrained_file(name)
        height, width = int(input_shape[1]), int(input_shape[2])
        options: dict[str, Any] = {
            "in_chans": int(input_shape[0]),
            "img_size": height if height == width else (height, width),
        }
        if drop_path_rate > 0:
            options["drop_path_rate"] = float(drop_path_rate)
        self.trunk = build_trunk(name, file, **options)
        self.gem = GeM() if pooling == "gem" else None
        if pooling not in ("default", "gem"):
            set_pooling(self.trunk, name, pooling)
        feature_dim = self._feature_dim(input_shape)
        self.head = embedding_head(head, feature_dim, embedding_dim, head_hidden_dim)
        self.embedding_dim = embedding_dim
        self.layer_decay = float(layer_decay)
        self.head_lr_multiplier = float(head_lr_multiplier)
        self.layers = LayerGroups(self.trunk)
        if freeze_trunk:
            self.trunk.requires_grad_(False)
        else:
            self.layers.freeze(freeze_stem, freeze_blocks)
        if freeze_batchnorm:
            for module in self.trunk.modules():
                if isinstance(module, BATCHNORMS):
                    module.requires_grad_(False)
        self.train()

    def _feature_dim(self, input_shape: Sequence[int]) -> int:
        """The pooled width; for GeM, one probe checks that the trunk gives a feature map."""
        if self.gem is None:
            return int(getattr(self.trunk, "head_hidden_size", None) or self.trunk.num_features)
        was_training = self.trunk.training
        with torch.no_grad():
            features = self.trunk.eval().forward_features(torch.zeros(1, *input_shape))
        self.trunk.train(was_training)
        if features.dim() != 4:
            raise DmlError(
                f"backbone.pooling=gem needs a convolutional feature map, but "
                f"{type(self.trunk).__name__} gives tokens {list(features.shape)}; use "
                "pooling=token or avg"
            )
        return int(features.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        if self.gem is not None:
            return self.head(self.gem(self.trunk.forward_features(x)))
        return self.head(self.trunk(x))

    def train(self, mode: bool = True) -> TimmBackbone:
        super().train(mode)
        for module in frozen_modules(self.trunk):
            module.eval()
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The trunk's layers at ``lr × layer_decay ** (layers above)``, the head (and
        GeM's p) at ``lr × head_lr_multiplier``; no weight decay on 1-D parameters and
        the trunk's position embeddings and tokens."""
        parameters = []
        for name, p in self.trunk.named_parameters():
            if p.requires_grad:
                scale = self.layers.learning_rate_scale(name, self.layer_decay)
                parameters.append((p, scale, self.layers.decays(name, p)))
        top = [self.head] if self.gem is None else [self.gem, self.head]
        for part in top:
            for p in part.parameters():
                parameters.append((p, self.head_lr_multiplier, p.ndim > 1))
        return optimizer_groups(parameters, lr)


def check_settings(
    input_shape: Sequence[int],
    img_size: int | None,
    pooling: str,
    drop_path_rate: float,
    layer_decay: float,
) -> None:
    if len(input_shape) != 3:
        raise DmlError(
            f"backbone=timm needs image inputs shaped [channels, height, width], but "
            f"dataset.input_shape is {list(input_shape)}"
        )
    if img_size is not None and list(input_shape[1:]) != [img_size, img_size]:
        raise DmlError(
            f"backbone.img_size={img_size}, but the dataset's images are "
            f"{input_shape[1]}×{input_shape[2]} (dataset.transform.crop_size); leave "
            "dataset.transform.crop_size unset, and it follows backbone.img_size"
        )
    if pooling not in POOLINGS:
        raise DmlError(f"backbone.pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
    if not 0 <= drop_path_rate < 1:
        raise DmlError(f"backbone.drop_path_rate={drop_path_rate} must be in [0, 1)")
    if not 0 < layer_decay <= 1:
        raise DmlError(f"backbone.layer_decay={layer_decay} must be in (0, 1]; 1 is off")


def set_pooling(trunk: nn.Module, name: str, pooling: str) -> None:
    """timm's own pooling switch; an option the architecture lacks is named."""
    try:
        trunk.reset_classifier(0, global_pool=pooling)
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        raise DmlError(
            f"backbone.pooling={pooling} does not apply to timm's {name} ({exc}); a ViT "
            "takes token or avg, a CNN avg, max, avgmax or gem"
        ) from None


def frozen_modules(trunk: nn.Module) -> list[nn.Module]:
    """The outermost submodules whose parameters are all frozen (the trunk itself when
    it is frozen whole)."""
    found: list[nn.Module] = []
    prefixes: list[str] = []
    for name, module in trunk.named_modules():
        if any(name.startswith(prefix) for prefix in prefixes):
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            found.append(module)
            prefixes.append(f"{name}." if name else "")
    return found
