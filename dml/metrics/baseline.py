"""The raw-input baseline: retrieval with the identity embedding, logged at epoch 0.

A learned embedding is only worth its training if it retrieves better than the inputs
themselves; on unseen classes that is not a given. Every run measures the inputs on its
own test split (through the same eval transform), so the comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.nn import functional as F

from dml.datasets.base import DataSplits, stacked_inputs
from dml.metrics import retrieval_metrics

# Above these sizes the inputs are images meant for a CNN; their pixels are no baseline.
MAX_FEATURES = 4096
MAX_ITEMS = 20_000


def raw_input_baseline(
    splits: DataSplits,
    normalize: bool,
    k_values: Sequence[int],
    *,
    backend: str = "torch",
    exclude_same_group: bool = False,
) -> dict[str, float]:
    """``test/raw_*`` retrieval metrics of the flattened test inputs, or {} when too big,
    or when the inputs are no vectors: texts (``dataset=text``), whose token ids are
    vocabulary indices, between which a distance means nothing.

    Measured under the run's own evaluation protocol (``eval.*``), groups included."""
    if len(splits.test) > MAX_ITEMS:
        return {}
    first = splits.test[0][0]
    if not isinstance(first, Tensor) or first.numel() > MAX_FEATURES:
        return {}
    inputs = stacked_inputs(splits.test).flatten(1).float()
    if normalize:
        inputs = F.normalize(inputs, dim=1)
    groups = splits.test.groups if exclude_same_group else None
    metrics = retrieval_metrics(
        inputs, splits.test.labels, k_values=k_values, query_groups=groups, backend=backend
    )
    return {f"test/raw_{key}": value for key, value in metrics.items()}
