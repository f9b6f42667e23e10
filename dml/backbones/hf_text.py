"""A Hugging Face text encoder as a trunk, pooled over its tokens, under dml's embedding head.

``backbone=hf_text backbone.name=sentence-transformers/all-MiniLM-L6-v2`` (or any
encoder transformers' ``AutoModel`` builds, or a folder holding one). Its tokenizer runs
in the data pipeline (``dataset=text``, :mod:`dml.datasets.tokens`), so a batch reaches
the backbone as ``input_ids`` and ``attention_mask``, which is also what the exported
model takes. The pooling is that of sentence encoders: the mean of the token states
under the attention mask (Sentence-BERT, E5, MiniLM), or the first token's state (CLS;
BERT, BGE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from dml.backbones.heads import embedding_head
from dml.backbones.hf_text_files import load_encoder
from dml.backbones.layer_groups import optimizer_groups
from dml.errors import DmlError

POOLINGS = ("mean", "cls")
TOKEN_KEYS = ("input_ids", "attention_mask")


class HFTextBackbone(nn.Module):
    """transformers encoder → pooling → embedding head (``linear``, ``mlp`` or ``none``).

    ``freeze_trunk`` trains the head alone (the linear-probe baseline), with the encoder
    in eval mode so its dropout is off too.
    """

    def __init__(
        self,
        name: str,
        embedding_dim: int = 256,
        pretrained: bool = True,
        pooling: str = "mean",
        head: str = "linear",
        head_hidden_dim: int | None = None,
        freeze_trunk: bool = False,
        head_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise DmlError(f"backbone.pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        if head_lr_multiplier <= 0:
            raise DmlError(f"backbone.head_lr_multiplier={head_lr_multiplier} must be positive")
        self.trunk = load_encoder(str(name), bool(pretrained))
        # The encoder's own pooler (BERT's tanh layer over CLS) is never used: dropped, as
        # add_pooling_layer=False drops it, so that no parameter goes without a gradient.
        if isinstance(getattr(self.trunk, "pooler", None), nn.Module):
            self.trunk.pooler = None
        feature_dim = int(self.trunk.config.hidden_size)
        self.head = embedding_head(head, feature_dim, embedding_dim, head_hidden_dim)
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.freeze_trunk = bool(freeze_trunk)
        self.head_lr_multiplier = float(head_lr_multiplier)
        if self.freeze_trunk:
            self.trunk.requires_grad_(False)
        self.train()

    def forward(self, tokens: Mapping[str, Tensor]) -> Tensor:
        if not isinstance(tokens, Mapping) or any(key not in tokens for key in TOKEN_KEYS):
            given = (
                f"a tensor of shape {list(tokens.shape)}"
                if isinstance(tokens, Tensor)
                else f"a {type(tokens).__name__}"
            )
            raise DmlError(
                f"backbone=hf_text takes tokenized text (input_ids and attention_mask, from "
                f"dataset=text), but the data give {given}; use dataset=text, or another "
                "backbone for these inputs"
            )
        mask = tokens["attention_mask"]
        states = self.trunk(input_ids=tokens["input_ids"], attention_mask=mask)
        return self.head(pooled(states.last_hidden_state, mask, self.pooling))

    def train(self, mode: bool = True) -> HFTextBackbone:
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The encoder at ``lr``, the head at ``lr × head_lr_multiplier``; no weight decay
        on biases and LayerNorms (1-D parameters), as BERT's fine-tuning recipe has it."""
        parameters = [(p, 1.0, p.ndim > 1) for p in self.trunk.parameters() if p.requires_grad] + [
            (p, self.head_lr_multiplier, p.ndim > 1) for p in self.head.parameters()
        ]
        return optimizer_groups(parameters, lr)


def pooled(states: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """One vector per text from the token states [N, L, D]: the first token's (``cls``,
    with the tokenizer padding on the right), or the mean of the tokens the mask keeps."""
    if pooling == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
