"""Classical metric learning: a scikit-learn estimator over dml's components (a Mahalanobis
metric by default), and k-NN views of a run."""

from dml.classic.estimator import MetricLearner

__all__ = ["MetricLearner"]
