"""``MetricLearner``: a scikit-learn transformer that learns a metric with dml's components.

``fit(X, y)`` learns an embedding and ``transform(X)`` maps data into it, so a
``KNeighborsClassifier`` (or any distance-based estimator) after it in a ``Pipeline`` uses
the learned metric. With ``backbone="linear"`` the metric is a Mahalanobis distance and
:meth:`MetricLearner.get_mahalanobis_matrix` returns M = LᵀL.

It trains exactly what ``dml train`` trains: Hydra composes the same config from
``dml/conf`` (:mod:`dml.classic.config`) and :func:`dml.config.build.build_module` builds
the ``EmbeddingModule``, so a loss, miner or backbone added for the CLI is available here by
name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from dml.backbones.linear import LinearMetric
from dml.classic.fit import optimise, untrained_module
from dml.errors import DmlError

# Rows embedded at once by transform: bounds its memory on large inputs.
TRANSFORM_CHUNK = 8192
# Where the classic learners under full-batch L-BFGS (the default optimizer) differ from
# the CLI's YAMLs; MetricLearner's ``config`` overrides them. Chosen by the 3-NN accuracy
# of StratifiedKFold(5) on iris and wine, averaged over 10 shuffles (random_state 0..9):
# NCA's softmax over Euclidean rather than squared distances, stopped after 8 L-BFGS
# iterations (its log-likelihood keeps stretching L and overfits a hundred rows), scored
# 96.5 / 97.2 % against 95.7 / 96.9 % for the YAML's squared distances and 20 iterations
# (metric-learn 0.7.0's NCA: 95.9 / 96.6 %), in under half the fit time.
LBFGS_DEFAULTS: dict[str, dict[str, Any]] = {
    "nca": {
        "loss.distance._target_": "dml.distances.EuclideanDistance",
        "optimizer.max_iter": 8,
    },
}


class MetricLearner(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Learns an embedding (a metric) from labelled rows; ``transform`` embeds new rows.

    The defaults are the classic Mahalanobis learner: NCA on a linear map, full-batch
    L-BFGS from the identity (the Euclidean metric). Any dml loss, miner, backbone,
    optimizer and scheduler can be picked by the name of its YAML in ``dml/conf``.

    Parameters
    ----------
    loss, backbone, miner, optimizer, scheduler:
        Option names of the config groups, as on the command line (``loss=lmnn``).
    embedding_dim:
        Output dimension; None keeps the backbone YAML's (the linear backbone's null
        means as many as the input, a full-rank M).
    max_epochs:
        Passes over the training data, with one optimizer step per batch. An L-BFGS step
        itself iterates up to ``optimizer.max_iter`` times, so one epoch is a whole
        optimisation with the default optimizer; gradient optimizers need many epochs.
    lr:
        Learning rate; None keeps the optimizer YAML's.
    batch_size:
        None trains on the whole training set at once, as NCA and LMNN are defined. A
        number draws class-balanced P×K batches (``data.samples_per_class`` per class),
        as ``dml train`` does; tuple losses on large data need it.
    normalize:
        L2-normalise embeddings, as ``dml train`` does by default. Off here, since a
        normalised embedding no longer gives a Mahalanobis distance.
    config:
        Further dotted config keys and values, e.g. ``{"loss.k": 5,
        "optimizer.max_iter": 50}``, applied last. With the L-BFGS optimizer, NCA
        first gets ``LBFGS_DEFAULTS`` (Euclidean distances, 8 iterations), which these
        override.
    n_jobs:
        Threads torch uses in ``fit`` and ``transform``, in scikit-learn's convention:
        None means 1 (unless in a joblib ``parallel_config`` context), -1 all cores.
        One thread is the fast choice for small tables, where spreading each tiny matrix
        operation over threads costs more than it saves, most of all on a busy machine;
        torch's own setting is restored afterwards.
    random_state:
        Seeds the initial weights and the batch order; torch's global generator is left
        as it was.
    """

    def __init__(
        self,
        loss: str = "nca",
        backbone: str = "linear",
        miner: str = "none",
        optimizer: str = "lbfgs",
        scheduler: str = "none",
        embedding_dim: int | None = None,
        max_epochs: int = 1,
        lr: float | None = None,
        batch_size: int | None = None,
        normalize: bool = False,
        config: Mapping[str, Any] | None = None,
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.loss = loss
        self.backbone = backbone
        self.miner = miner
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.embedding_dim = embedding_dim
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.normalize = normalize
        self.config = config
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> MetricLearner:
        """Learn the metric from rows ``X`` and their class labels ``y``."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2)
        check_classification_targets(y)
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs={self.max_epochs} must be at least 1")
        self.classes_, codes = np.unique(y, return_inverse=True)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        choices = {
            "loss": self.loss,
            "backbone": self.backbone,
            "miner": self.miner,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }
        features = torch.from_numpy(np.array(X, dtype=np.float32))
        labels = torch.from_numpy(codes.astype(np.int64))
        with torch.random.fork_rng(devices=[]), torch_threads(self.n_jobs):
            torch.manual_seed(seed)
            cfg, module = untrained_module(choices, self._config_values(seed))
            self.loss_curve_ = optimise(module, features, labels, cfg)
        module.eval()
        self.module_ = module
        self._n_features_out = int(module(features[:1]).shape[1])
        return self

    def _config_values(self, seed: int) -> dict[str, Any]:
        values: dict[str, Any] = {
            "dataset": {"input_shape": [self.n_features_in_]},
            "normalize_embeddings": bool(self.normalize),
            "seed": seed,
            "trainer.max_epochs": self.max_epochs,
            "data.batch_size": self.batch_size,
        }
        if self.embedding_dim is not None:
            values["backbone.embedding_dim"] = self.embedding_dim
        if self.lr is not None:
            values["optimizer.lr"] = self.lr
        if self.optimizer == "lbfgs":
            values.update(LBFGS_DEFAULTS.get(self.loss, {}))
        values.update(self.config or {})
        return values

    def transform(self, X: Any) -> np.ndarray:
        """Embed rows; Euclidean distance between the results is the learned metric.

        The fitted map is applied in float64. A float32 matmul rounds a row differently
        depending on the rows it comes with (BLAS picks its blocking by the matrix shape,
        and CPUs differ), and a transformer must map a row the same way whether it is
        given alone, in a batch or in a subset; in float64 that rounding lies far below
        float32's resolution.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        features = torch.from_numpy(np.array(X, dtype=np.float64))
        backbone = copy.deepcopy(self.module_.backbone).to(torch.float64)
        with torch.inference_mode(), torch_threads(self.n_jobs):
            parts = [
                self.module_.embed(backbone(chunk)) for chunk in features.split(TRANSFORM_CHUNK)
            ]
        return torch.cat(parts).numpy().astype(X.dtype, copy=False)

    def get_mahalanobis_matrix(self) -> np.ndarray:
        """M = LᵀL, symmetric positive semi-definite, as metric-learn's learners return it."""
        return self._linear_metric().mahalanobis_matrix()

    @property
    def components_(self) -> np.ndarray:
        """L, the learned linear map (metric-learn's and scikit-learn's NCA's name for it)."""
        weight = self._linear_metric().transform.weight
        return weight.detach().to(torch.float64).numpy().copy()

    def _linear_metric(self) -> LinearMetric:
        check_is_fitted(self)
        backbone = self.module_.backbone
        if not isinstance(backbone, LinearMetric):
            raise DmlError(
                f"backbone={self.backbone!r} learns a non-linear embedding, which no single "
                "Mahalanobis matrix describes; use backbone='linear'"
            )
        if self.module_.normalize:
            raise DmlError(
                "normalize=True divides each embedding by its norm, so the distance is no "
                "longer Mahalanobis; fit with normalize=False"
            )
        return backbone

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


@contextmanager
def torch_threads(n_jobs: int | None) -> Iterator[None]:
    """Run with ``n_jobs`` torch threads (joblib's reading of it), then restore the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(effective_n_jobs(n_jobs))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
