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
) -> None:
    """Raise a one-line DmlError if this combination cannot train; return None if it can.

    Checked before the first batch, so a sweep fails at submission rather than hours in.
    Non-dml components (PML losses and miners through ``_target_``) are trusted except
    where memory is involved: their ``ref_emb`` arguments mean something else.
    """
    loss_name = type(loss).__name__
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
