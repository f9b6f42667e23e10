"""What an evaluation pass computes beyond the retrieval metrics: pair verification
(``eval.verification``) and the retrieval examples of the test pass.

Both keep only small results (an ROC curve per split, a few query and neighbour indices)
for the run's pictures, which :mod:`dml.reporting.evaluation_plots` draws at the end.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn

from dml.metrics.pair_verification import MAX_PAIRS, RocCurve, split_verification
from dml.reporting.retrieval_examples import RetrievalExamples, pick_retrieval_examples


class EvaluationExtras:
    """``update`` is called with each evaluation's parts: (embeddings, labels, groups) of
    the evaluated set, or of the queries and the gallery."""

    def __init__(self, verification: bool = False, max_pairs: int = MAX_PAIRS) -> None:
        self.verification = verification
        self.max_pairs = max_pairs
        # The latest ROC curve of each split ("val", "test").
        self.roc_curves: dict[str, RocCurve] = {}
        # A few fixed test queries and their neighbours (retrieval_examples.png).
        self.retrieval_examples: RetrievalExamples | None = None
        self._warned: set[str] = set()

    def update(self, prefix: str, parts: list[tuple[Any, ...]]) -> dict[str, float]:
        """The verification metrics of this pass (none when off); keeps the pictures' data."""
        if prefix == "test":
            query, *gallery = parts
            self.retrieval_examples = pick_retrieval_examples(
                *query[:2], *(gallery[0][:2] if gallery else ())
            )
        if not self.verification:
            return {}
        # Queries and gallery together: the pairs of the whole evaluated set.
        result = split_verification(
            torch.cat([part[0] for part in parts]),
            torch.cat([part[1] for part in parts]),
            max_pairs=self.max_pairs,
        )
        if result.curve is not None:
            self.roc_curves[prefix] = result.curve
        for note in sorted(set(result.notes) - self._warned):
            self._warned.add(note)
            rank_zero_warn(f"{prefix}: {note}")
        return result.metrics
