"""A timm trunk's layers in input order, for the fine-tuning controls of ViT papers:
freezing the first layers, and layer-wise learning-rate decay.

timm numbers every parameter's layer through the model's own ``group_matcher``: 0 is the
stem (a ViT's patch embedding, position embedding and class token; a CNN's first
convolutions), then one number per block (a transformer block, a residual block), the
last block sharing its number with the final norm. The numbering is timm's, so it holds
for every architecture it knows.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

from dml.errors import DmlError


class LayerGroups:
    """Layer numbers of a trunk's parameters: 0 the stem, 1..``blocks`` the blocks."""

    def __init__(self, trunk: nn.Module) -> None:
        from timm.models import group_parameters

        self.trunk = trunk
        if hasattr(trunk, "group_matcher"):
            matcher = trunk.group_matcher(coarse=False)
            self.layer_of: dict[str, int] = group_parameters(trunk, matcher, reverse=True)
        else:
            self.layer_of = {}
        self.blocks = max(self.layer_of.values(), default=0)
        no_decay = trunk.no_weight_decay() if hasattr(trunk, "no_weight_decay") else ()
        self.no_decay_patterns = tuple(no_decay)

    def freeze(self, stem: bool, blocks: int) -> None:
        """Stop the gradient of the stem and the first ``blocks`` blocks (the stem too
        when ``blocks`` > 0: a block learns nothing useful on a moving input below it)."""
        if blocks < 0 or blocks > self.blocks:
            raise DmlError(
                f"backbone.freeze_blocks={blocks} must be between 0 and the trunk's "
                f"{self.blocks} blocks; backbone.freeze_trunk=true freezes all of it"
            )
        if not (stem or blocks):
            return
        if not self.layer_of:
            raise DmlError(
                f"timm's {type(self.trunk).__name__} names no layers (no group_matcher), so "
                "backbone.freeze_stem and freeze_blocks cannot apply; use freeze_trunk=true"
            )
        for name, parameter in self.trunk.named_parameters():
            if self.layer_of[name] <= blocks:
                parameter.requires_grad_(False)

    def learning_rate_scale(self, name: str, decay: float) -> float:
        """``decay`` ** (layers above this one): the embedding head, on top, trains at the
        full rate, the last block at ``decay`` times it, the stem at the least (BEiT's
        layer-wise decay, with the head as the top layer)."""
        layer = self.layer_of.get(name, self.blocks)
        return decay ** (self.blocks + 1 - layer)

    def decays(self, name: str, parameter: nn.Parameter) -> bool:
        """Weight decay for matrices and kernels only: not for biases, norms, position
        embeddings and class tokens, as DINO, DeiT and timm's optimizer factory do."""
        if parameter.ndim <= 1:
            return False
        return not any(fnmatch.fnmatch(name, pattern) for pattern in self.no_decay_patterns)


def optimizer_groups(
    parameters: list[tuple[nn.Parameter, float, bool]], lr: float
) -> list[dict[str, Any]]:
    """One optimizer group per (learning-rate scale, decays) pair. Each item is a
    parameter, its scale and whether it decays; a group without decay sets weight_decay 0,
    one with decay leaves the optimizer's."""
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for parameter, scale, decays in parameters:
        group = groups.get((scale, decays))
        if group is None:
            group = {"params": [], "lr": lr * scale}
            if not decays:
                group["weight_decay"] = 0.0
            groups[(scale, decays)] = group
        group["params"].append(parameter)
    return list(groups.values())
