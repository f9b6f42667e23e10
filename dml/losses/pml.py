"""Any loss of pytorch-metric-learning (PML) by name: ``loss=pml loss.name=CircleLoss``.

PML's losses already take dml's call (``loss(embeddings, labels, indices_tuple)``), but a
``_target_`` override keeps the keys of the loss option it replaces (``margin``, ``soft``,
``distance``), which PML's constructors reject. One option whose only required key is the
class name, with the class's own settings added as ``+loss.<key>=<value>``, covers every
PML loss, including ones released after this file, and names the problem in one line when
PML is missing, the name is wrong or a setting is unknown. PML stays optional: it is
imported only when such an option is built.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dml.distances import References
from dml.errors import DmlError
from dml.losses.base import EmbeddingLoss, LossOutput
from dml.pml_lookup import pml_component
from dml.tuples import Mined, TripletSelection


class PMLLoss(EmbeddingLoss):
    """A PML loss by class name. PML cannot say how many tuples it scored, so the loss
    reports the mined tuples when a miner gave some and the batch size otherwise (as dml's
    whole-batch losses do); a cross-batch memory and Siamese pair streams are refused at
    start, since PML's ``ref_emb`` means something else."""

    supports_memory = False
    min_samples_per_class = 1

    def __init__(self, name: str, distance: Any = None, **settings: Any) -> None:
        super().__init__()
        if distance is not None:
            settings["distance"] = distance
        self.name = name
        self.loss = pml_component("losses", name, settings)

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        if memory is not None:
            raise DmlError(f"loss=pml ({self.name}) cannot use a cross-batch memory: memory=none")
        if isinstance(mined, TripletSelection):
            # dml's rule-based miners select lazily; PML wants the triplets listed.
            mined = mined.triplets
        value = self.loss(embeddings, labels, mined)
        count = len(mined[0]) if mined is not None else len(labels)
        return LossOutput(value, count, count)
