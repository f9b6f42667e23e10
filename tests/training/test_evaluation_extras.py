"""EvaluationExtras: verification per pass, NaN reasons warned once, the test examples."""

from __future__ import annotations

import warnings

import torch

from dml.training.evaluation_extras import EvaluationExtras


def parts_of(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, None]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 4
    return torch.randn(count, 3, generator=generator) + labels[:, None], labels, None


def test_nan_reasons_are_warned_once_however_many_passes() -> None:
    extras = EvaluationExtras(verification=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            metrics = extras.update("val", [parts_of(20)])  # 150 different pairs < 1000
    assert [str(w.message).split(" is NaN")[0] for w in caught] == ["val: tar_at_far_1e-3"]
    assert metrics["verification_different_pairs"] == 150
    assert set(extras.roc_curves) == {"val"} and extras.retrieval_examples is None


def test_query_gallery_passes_verify_their_union_and_keep_gallery_examples() -> None:
    extras = EvaluationExtras(verification=True)
    metrics = extras.update("test", [parts_of(12, 1), parts_of(16, 2)])
    assert metrics["verification_same_pairs"] == 4 * 7 * 6 / 2  # 28 items, 7 per class
    assert extras.retrieval_examples.reference_split == "gallery"
    assert EvaluationExtras().update("test", [parts_of(12)]) == {}
