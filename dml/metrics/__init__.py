"""Evaluation metrics for embeddings: retrieval, clustering and pair verification.

``retrieval_metrics`` follows pytorch-metric-learning's AccuracyCalculator definitions,
computed exactly in bounded memory (see :mod:`dml.metrics.neighbours` for how).
"""

from dml.metrics.clustering import clustering_metrics
from dml.metrics.retrieval import retrieval_metrics

__all__ = ["clustering_metrics", "retrieval_metrics"]
