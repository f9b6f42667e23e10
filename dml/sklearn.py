"""Classical metric learning: a scikit-learn estimator over dml's components, and k-NN views.

``MetricLearner`` is a transformer: ``fit(X, y)`` learns an embedding and ``transform(X)``
maps data into it, so a ``KNeighborsClassifier`` (or any distance-based estimator) after it
in a ``Pipeline`` uses the learned metric. With ``backbone="linear"`` the metric is a
Mahalanobis distance and :meth:`MetricLearner.get_mahalanobis_matrix` returns M = LᵀL.

It trains exactly what ``dml train`` trains: the same option YAMLs from ``dml/conf`` are
read and :func:`dml.run.build_module` builds the ``EmbeddingModule`` from them, so a loss,
miner or backbone added for the CLI is available here by name. Two things differ, both for
speed, since a classic metric-learning fit on a small table takes tens of milliseconds:

- the YAMLs are read with OmegaConf rather than composed by Hydra, whose compose call
  alone costs about half a second;
- the optimisation is a plain loop over the module's ``forward``, ``compute_loss`` and
  ``configure_optimizers`` rather than a Lightning ``Trainer``, whose start-up costs more
  than the whole fit and which has nothing to log or checkpoint here.

The two callbacks at the end bring the classical view into ``dml train`` runs (the
``nca_iris`` demonstration): k-NN classification accuracy before and after training, and
the data as the learned linear map sees it next to its raw features.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib import effective_n_jobs
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback, LightningModule, Trainer
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor
from torch.utils.data import DataLoader

from dml.backbones.linear import LinearMetric
from dml.datasets.base import LabeledDataset
from dml.errors import DmlError
from dml.module import EmbeddingModule
from dml.plots import distinct_colors, log_plots, project_2d, save_figure, snapshot_embeddings
from dml.run import build_module
from dml.samplers import ClassBalancedBatchSampler
from dml.semi import PseudoLabeledDataset

# Groups of train.yaml that describe where data and logs live: a fit in memory has no use
# for them (the data comes as arrays, all labelled, and nothing is logged).
UNUSED_GROUPS = frozenset({"dataset", "logger", "hydra", "experiment", "semi"})
# Rows embedded at once by transform: bounds its memory on large inputs.
TRANSFORM_CHUNK = 8192
# Untrained modules above this many parameters (a ResNet) are not kept between fits:
# building one costs little next to training it, and keeping it costs memory.
PROTOTYPE_MAX_PARAMETERS = 1_000_000
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


def conf_root() -> Traversable:
    return files("dml.conf")


def group_options(group: str) -> list[str]:
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in (conf_root() / group).iterdir()
        if entry.name.endswith(".yaml")
    )


def load_option(group: str, option: str) -> DictConfig:
    """One option YAML of a config group; an unknown name lists the ones that exist."""
    path = conf_root() / group / f"{option}.yaml"
    if not path.is_file():
        raise DmlError(
            f"{group}={option!r} is not an option of dml/conf/{group}; "
            f"choose one of {', '.join(group_options(group))}"
        )
    with path.open() as handle:
        node = OmegaConf.load(handle)
    if not isinstance(node, DictConfig):
        raise DmlError(f"dml/conf/{group}/{option}.yaml must hold a mapping")
    if "defaults" in node:
        raise DmlError(
            f"dml/conf/{group}/{option}.yaml has a defaults list, which only Hydra's "
            "composition resolves; MetricLearner reads single-file options"
        )
    return node


def learner_config(choices: Mapping[str, str], values: Mapping[str, Any]) -> DictConfig:
    """The config ``dml train`` would compose, built from the same files.

    train.yaml gives the body and, through its defaults list, the default option of every
    group (a null default, like ``sweep``, adds nothing). ``choices`` replaces some of
    those options (e.g. ``{"loss": "nca"}``) and ``values`` then sets dotted keys (e.g.
    ``{"loss.margin": 0.5}``), as command-line overrides would.
    """
    root = copy.deepcopy(group_choices_config(tuple(sorted(choices.items()))))
    for key, value in values.items():
        top = key.split(".", 1)[0]
        if top not in root:
            raise DmlError(
                f"config key {key!r} names nothing in train.yaml or its groups; "
                f"its first part must be one of {', '.join(sorted(root))}"
            )
        OmegaConf.update(root, key, value, merge=True, force_add=True)
    return root


@lru_cache(maxsize=32)
def group_choices_config(choices: tuple[tuple[str, str], ...]) -> DictConfig:
    """train.yaml with the chosen options, read once per process and choice.

    The files are package data, and parsing them costs more than a whole NCA fit on a
    small table, which cross-validation repeats with the same choices.
    """
    chosen = dict(choices)
    with (conf_root() / "train.yaml").open() as handle:
        root = OmegaConf.load(handle)
    unknown = set(chosen) - {next(iter(e)) for e in root.defaults if isinstance(e, Mapping)}
    if unknown:
        raise DmlError(f"train.yaml has no config group named {', '.join(sorted(unknown))}")
    for entry in root.pop("defaults"):
        if not isinstance(entry, Mapping):
            continue
        ((group, default),) = entry.items()
        option = chosen.get(group, default)
        if group not in UNUSED_GROUPS and option is not None:
            # As Hydra with `_self_` first: the option's keys over train.yaml's own
            # (train.yaml sets loss.gather under the loss group).
            root[group] = OmegaConf.merge(root.get(group) or {}, load_option(group, option))
    # The data arrives as arrays: only its shape is kept, which backbones interpolate.
    root["dataset"] = {"input_shape": None}
    return root


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
        """Embed rows; Euclidean distance between the results is the learned metric."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        features = torch.from_numpy(np.array(X, dtype=np.float32))
        with torch.inference_mode(), torch_threads(self.n_jobs):
            parts = [self.module_(chunk) for chunk in features.split(TRANSFORM_CHUNK)]
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


def untrained_module(
    choices: Mapping[str, str], values: Mapping[str, Any]
) -> tuple[DictConfig, EmbeddingModule]:
    """The config and a freshly built module, as ``build_module`` gives them.

    Call it with torch's generator seeded from ``values``' seed. Cross-validation and
    grid search fit one config many times, and reading the YAMLs and instantiating the
    module costs about as much as a whole NCA fit on a small table, so a config that
    can be written as JSON is built once: later calls get a copy of that module and the
    generator state its build left, which is exactly what building it again would give.
    """
    try:
        key = json.dumps([sorted(choices.items()), values], sort_keys=True)
    except TypeError:
        cfg = learner_config(choices, values)
        return cfg, build_module(cfg)
    cfg, prototype, rng_after_build = built_prototype(key)
    if sum(p.numel() for p in prototype.parameters()) > PROTOTYPE_MAX_PARAMETERS:
        built_prototype.cache_clear()
    torch.set_rng_state(rng_after_build)
    # The module's run_config (the whole config, for checkpoints) is only read: shared.
    shared = {id(prototype.run_config): prototype.run_config}
    return cfg, copy.deepcopy(prototype, shared)


@lru_cache(maxsize=8)
def built_prototype(key: str) -> tuple[DictConfig, EmbeddingModule, Tensor]:
    """``untrained_module``'s cache: config, module and generator state, by JSON key."""
    choices, values = json.loads(key)
    cfg = learner_config(dict(choices), values)
    module = build_module(cfg)
    return cfg, module, torch.get_rng_state()


def optimise(module: EmbeddingModule, x: Tensor, y: Tensor, cfg: DictConfig) -> list[float]:
    """Train ``module`` in place on (x, y); returns each epoch's mean loss over its steps.

    The loss is the module's own ``compute_loss`` on its own ``forward``, and the optimizer
    and scheduler come from its ``configure_optimizers``: what ``dml train`` steps.
    """
    configured = module.configure_optimizers()
    if isinstance(configured, dict):
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]
    else:
        optimizer, scheduler = configured, None
    batches = batch_plan(y, cfg.data.batch_size, cfg.data.samples_per_class, cfg.seed)
    module.train()
    curve = []
    for epoch in range(cfg.trainer.max_epochs):
        losses = [step(module, optimizer, x[i], y[i], epoch) for i in batches(epoch)]
        curve.append(float(np.mean(losses)))
        if scheduler is not None:
            scheduler.step()
    return curve


def batch_plan(
    labels: Tensor, batch_size: int | None, samples_per_class: int, seed: int
) -> Callable[[int], list[Tensor]]:
    """Each epoch's batches: the whole set at once, or ``dml train``'s P×K batches."""
    if batch_size is None or batch_size >= len(labels):
        everything = [torch.arange(len(labels))]
        return lambda epoch: everything
    sampler = ClassBalancedBatchSampler(labels, batch_size, samples_per_class, seed)

    def batches(epoch: int) -> list[Tensor]:
        sampler.set_epoch(epoch)
        return [torch.tensor(batch) for batch in sampler]

    return batches


def step(
    module: EmbeddingModule, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, epoch: int
) -> float:
    """One optimizer step; returns the loss at its last evaluation.

    The loss is computed in a closure so that L-BFGS can evaluate it as often as its line
    search needs; its last evaluation is then the loss where the step ended.
    """
    evaluated: list[Tensor] = []

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss, _, _ = module.compute_loss(module(x), y)
        loss.backward()
        evaluated.append(loss.detach())
        return loss

    optimizer.step(closure)
    last = float(evaluated[-1])
    if not np.isfinite(last):
        raise DmlError(
            f"the loss became {last} in epoch {epoch}; lower lr or check X for extreme "
            "values (standardise it, e.g. with StandardScaler)"
        )
    return last


class KNNAccuracy(Callback):
    """k-NN classification accuracy over the embedding: the classic test of a learned metric.

    Retrieval metrics rank neighbours within one split; this asks what NCA and LMNN
    optimise: does a ``k``-NN classifier fitted on the embedded training split label held-out
    items correctly? It logs ``val/knn_accuracy`` after every validation pass (the pass at
    epoch 0 is before training) and, at test, ``test/knn_accuracy`` beside
    ``test/raw_knn_accuracy``, the same classifier on the raw inputs: the Euclidean
    baseline the learned metric has to beat. Training items are embedded as the training
    loader serves them, so they carry its transform.
    """

    def __init__(self, k: int = 3, batch_size: int = 1024) -> None:
        self.k = k
        self.batch_size = batch_size

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            splits = trainer.datamodule.splits
            accuracy = self.accuracy(pl_module, known_labels(splits.train), splits.val)
            pl_module.log("val/knn_accuracy", accuracy)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        splits = trainer.datamodule.splits
        train = known_labels(splits.train)
        pl_module.log("test/knn_accuracy", self.accuracy(pl_module, train, splits.test))
        train_x, train_y = raw_inputs(train, self.batch_size)
        test_x, test_y = raw_inputs(splits.test, self.batch_size)
        raw = KNeighborsClassifier(self.k).fit(train_x, train_y).score(test_x, test_y)
        pl_module.log("test/raw_knn_accuracy", float(raw))

    def accuracy(
        self, module: LightningModule, train: LabeledDataset, held_out: LabeledDataset
    ) -> float:
        fitted = embed(module, train, self.batch_size)
        scored = embed(module, held_out, self.batch_size)
        classifier = KNeighborsClassifier(self.k).fit(*fitted)
        return float(classifier.score(*scored))


class LinearProjectionPlot(Callback):
    """After test, ``plots/linear_projection.png``: raw features beside the learned map.

    The left panel is every item's first two raw features, the right one the same items
    after the backbone (its 2-D output as is; a wider one through PCA). With a 2-D linear
    backbone trained by NCA the classes that overlap on the left come apart on the right:
    the picture of what the learned L does. The file also goes to W&B as
    ``plots/linear_projection``.
    """

    def __init__(self, batch_size: int = 1024) -> None:
        self.batch_size = batch_size

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        splits = trainer.datamodule.splits
        parts = [known_labels(splits.train), splits.val, splits.test]
        raw = np.concatenate([raw_inputs(part, self.batch_size)[0] for part in parts])
        embedded = [embed(pl_module, part, self.batch_size) for part in parts]
        points = np.concatenate([e for e, _ in embedded])
        labels = np.concatenate([y for _, y in embedded])
        figure = linear_projection_figure(raw, points, labels)
        path = Path(trainer.default_root_dir) / "plots" / "linear_projection.png"
        log_plots(trainer.loggers, [save_figure(figure, path)])


def known_labels(train: LabeledDataset) -> LabeledDataset:
    """The training items whose labels a run may use: with ``dataset.labeled_fraction < 1``
    only the labelled part (a k-NN classifier fitted on hidden labels would be cheating)."""
    return train.labeled_items() if isinstance(train, PseudoLabeledDataset) else train


def embed(
    module: LightningModule, dataset: LabeledDataset, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every item's embedding (eval mode, no gradient) and label, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    snapshot = snapshot_embeddings(module, loader, epoch=0, split="", max_samples=len(dataset))
    return snapshot.embeddings, snapshot.labels


def raw_inputs(dataset: LabeledDataset, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item's input, flattened, and its label: the identity embedding."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    batches = [(x.flatten(1), y) for x, y in loader]
    return (
        torch.cat([x for x, _ in batches]).numpy(),
        torch.cat([y for _, y in batches]).numpy(),
    )


def linear_projection_figure(raw: np.ndarray, embedded: np.ndarray, labels: np.ndarray) -> Figure:
    """Two scatter plots of the same items, one colour per class: raw and embedded."""
    if embedded.shape[1] == 2:
        points, name = embedded, "embedding"
    else:
        points, name = project_2d(embedded, method="pca")
        name = f"{name} of the embedding"
    classes = np.unique(labels)
    figure = Figure(figsize=(11.0, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    for ax, xy in ((left, raw[:, :2]), (right, points)):
        for cls, color in zip(classes, distinct_colors(len(classes)), strict=True):
            mask = labels == cls
            ax.scatter(xy[mask, 0], xy[mask, 1], s=14, alpha=0.8, color=color, label=str(cls))
        ax.grid(alpha=0.3)
    left.set_title("raw features 1 and 2")
    left.set_xlabel("feature 1")
    left.set_ylabel("feature 2")
    right.set_title(f"after the learned map ({name})")
    right.set_xlabel(f"{name} 1")
    right.set_ylabel(f"{name} 2")
    right.legend(title="class", loc="best", frameon=False)
    return figure
