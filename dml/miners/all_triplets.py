"""Every valid triplet of the batch, as a rule rather than a list."""

from __future__ import annotations

from torch import Tensor

from dml.distances import References, positive_negative_masks
from dml.miners.base import Miner
from dml.tuples import TripletSelection


class AllTripletsMiner(Miner):
    """Selects every (anchor, positive, negative) triplet: the baseline that mines nothing away.

    It returns a :class:`TripletSelection`, so triplet losses score the B·K·B triplets in
    fused chunks instead of receiving millions of indices. The same result as passing no
    miner to a triplet loss, kept as a miner so sweeps can name it.
    """

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> TripletSelection:
        pos, neg = positive_negative_masks(labels, None if memory is None else memory.labels)
        return TripletSelection(pos, neg)
