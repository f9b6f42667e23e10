"""Start-time checks that a loss, a miner and a memory can work together."""

from __future__ import annotations

from typing import Any

from dml.errors import DmlError
from dml.losses.base import EmbeddingLoss
from dml.miners.base import Miner


def check_compatible(
    loss: Any,
    miner: Any | None,
    memory: Any | None = None,
    samples_per_class: int | None = None,
    pairs: bool = False,
) -> None:
    """Raise a one-line DmlError if this combination cannot train; return None if it can.

    Checked before the first batch, so a sweep fails at submission rather than hours in.
    Non-dml components (PML losses and miners through ``_target_``) are trusted except
    where memory or a Siamese pair stream (``pairs``) is involved: their ``ref_emb``
    arguments mean something else, and PML cannot say which of its losses score each
    listed pair on its own.
    """
    loss_name = type(loss).__name__
    if pairs:
        check_pair_stream(loss, miner, memory)
        return
    tuple_kind = getattr(loss, "tuple_kind", "triplets")
    if miner is not None and tuple_kind is None:
        raise DmlError(
            f"{loss_name} uses the whole batch and takes no miner, "
            f"but miner={type(miner).__name__} was given: set miner=none"
        )
    if memory is not None:
        if not isinstance(loss, EmbeddingLoss) or not loss.supports_memory:
            raise DmlError(f"{loss_name} cannot use a cross-batch memory: set memory=none")
        if miner is not None and not isinstance(miner, Miner):
            raise DmlError(
                f"{type(miner).__name__} is not a dml miner and cannot mine a cross-batch "
                "memory: pick a dml miner or set memory=none"
            )
    needed = getattr(loss, "min_samples_per_class", 1)
    if samples_per_class is not None and samples_per_class < needed:
        raise DmlError(
            f"{loss_name} needs at least {needed} samples per class in a batch to form "
            f"positive pairs, but data.samples_per_class={samples_per_class}: raise it"
        )


def check_pair_stream(loss: Any, miner: Any | None, memory: Any | None) -> None:
    """``dataset.pairs=true`` batches hold labelled pairs, not classes: only a loss that
    scores each given pair on its own can learn from them, and there is nothing to mine."""
    loss_name = type(loss).__name__
    if not getattr(loss, "scores_pairs_alone", False):
        raise DmlError(
            f"dataset.pairs=true gives {loss_name} similar/dissimilar pairs without class "
            "labels, which it cannot learn from: use loss=contrastive or set dataset.pairs=false"
        )
    if miner is not None:
        raise DmlError(
            f"dataset.pairs=true batches are the pairs to score, so miner="
            f"{type(miner).__name__} has nothing to mine: set miner=none"
        )
    if memory is not None:
        raise DmlError(
            "dataset.pairs=true batches hold pairs, not classes, so a cross-batch memory "
            "has no labels to compare with: set memory=none"
        )
