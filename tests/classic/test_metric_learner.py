"""MetricLearner: scikit-learn's contract, the learned Mahalanobis matrix, dml's components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from dml.classic.config import learner_config
from dml.classic.estimator import MetricLearner
from dml.errors import DmlError
from dml.losses.lmnn import LMNNLoss
from dml.losses.nca import NCALoss


@parametrize_with_checks([MetricLearner(random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def noisy_blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two informative dimensions drowned by eight loud noise dimensions.

    Euclidean KNN mostly sees the noise; a learned metric that shrinks those dimensions
    recovers the classes, so accuracy measures whether anything was learned.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 2.0]])
    signal = centres[y] + 0.3 * rng.standard_normal((300, 2))
    noise = 4.0 * rng.standard_normal((300, 8))
    return np.hstack([signal, noise]), y


@pytest.mark.parametrize("loss", ["nca", "lmnn"])
def test_learned_metric_recovers_the_informative_dimensions(loss: str) -> None:
    x, y = noisy_blobs(0)
    x_test, y_test = noisy_blobs(1)
    euclidean = KNeighborsClassifier(3).fit(x, y).score(x_test, y_test)
    learner = MetricLearner(loss=loss, random_state=0).fit(x, y)
    learned = KNeighborsClassifier(3).fit(learner.transform(x), y)
    accuracy = learned.score(learner.transform(x_test), y_test)
    assert euclidean < 0.8
    assert accuracy > 0.95
    m = learner.get_mahalanobis_matrix()
    assert np.diag(m)[:2].min() > 10 * np.diag(m)[2:].max()


@pytest.mark.parametrize("loss", ["nca", "lmnn"])
def test_mahalanobis_matrix_is_symmetric_psd_and_gives_the_transform_distance(
    iris: tuple[np.ndarray, np.ndarray], loss: str
) -> None:
    x, y = iris
    learner = MetricLearner(loss=loss, random_state=0).fit(x, y)
    m = learner.get_mahalanobis_matrix()
    assert m.shape == (4, 4)
    np.testing.assert_array_equal(m, m.T)
    eigenvalues = np.linalg.eigvalsh(m)
    assert eigenvalues.min() >= -1e-9 * eigenvalues.max()
    assert eigenvalues.max() > 0
    l_map = learner.components_
    np.testing.assert_allclose(m, l_map.T @ l_map, rtol=1e-12, atol=1e-12)
    diff = x[:20] - x[20:40]
    mahalanobis = np.sqrt(np.einsum("ij,jk,ik->i", diff, m, diff))
    embedded = learner.transform(x[:20]) - learner.transform(x[20:40])
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), mahalanobis, rtol=1e-4)


def test_pipeline_in_cross_validation_and_grid_search(iris: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = iris
    pipeline = make_pipeline(MetricLearner(random_state=0), KNeighborsClassifier(3))
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(pipeline, x, y, cv=cv)
    assert scores.mean() > 0.9
    search = GridSearchCV(
        pipeline,
        {"metriclearner__loss": ["nca", "lmnn"], "metriclearner__embedding_dim": [2, 4]},
        cv=cv,
    ).fit(x, y)
    assert search.best_score_ > 0.9
    assert (
        search.best_estimator_[0].transform(x).shape[1]
        == search.best_params_["metriclearner__embedding_dim"]
    )


def test_components_come_from_the_dml_configs(iris: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = iris
    nca = MetricLearner(max_epochs=1, config={"optimizer.max_iter": 2}).fit(x, y)
    assert isinstance(nca.module_.loss_fn, NCALoss)
    lmnn = MetricLearner(loss="lmnn", config={"loss.k": 5, "optimizer.max_iter": 2}).fit(x, y)
    assert isinstance(lmnn.module_.loss_fn, LMNNLoss)
    assert lmnn.module_.loss_fn.k == 5
    with pytest.raises(DmlError, match="loss='nope' is not an option.*lmnn.*nca"):
        MetricLearner(loss="nope").fit(x, y)
    with pytest.raises(DmlError, match="'lose.k' names nothing"):
        MetricLearner(config={"lose.k": 5}).fit(x, y)


def test_learner_config_equals_what_hydra_composes() -> None:
    """The YAMLs read directly give the same run config as `dml train` with overrides."""
    overrides = {
        "loss": "lmnn",
        "backbone": "mlp",
        "miner": "none",
        "optimizer": "sgd",
        "scheduler": "cosine",
    }
    values = {"dataset": {"input_shape": [7]}, "loss.k": 4, "trainer.max_epochs": 3}
    ours = OmegaConf.to_container(learner_config(overrides, values), resolve=True)
    with initialize_config_module("dml.conf", version_base="1.3"):
        hydras = compose(
            "train",
            overrides=[f"{k}={v}" for k, v in overrides.items()]
            + ["dataset.input_shape=[7]", "loss.k=4", "trainer.max_epochs=3"],
        )
    hydras = OmegaConf.to_container(hydras, resolve=True)
    for key in ("backbone", "loss", "miner", "memory", "optimizer", "scheduler", "data", "eval"):
        assert ours[key] == hydras[key], key
    assert ours["trainer"]["max_epochs"] == 3


def test_minibatch_training_with_a_deep_backbone(iris: tuple[np.ndarray, np.ndarray]) -> None:
    """The P×K batches, a miner and a gradient optimizer: the `dml train` way, in memory."""
    x, y = iris
    learner = MetricLearner(
        loss="triplet",
        backbone="mlp",
        miner="semihard",
        optimizer="adam",
        embedding_dim=8,
        max_epochs=15,
        batch_size=30,
        normalize=True,
        config={"data.samples_per_class": 10},
        random_state=0,
    ).fit(x, y)
    embedded = learner.transform(x)
    assert embedded.shape == (150, 8)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, rtol=1e-5)
    assert learner.loss_curve_[-1] < learner.loss_curve_[0]
    with pytest.raises(DmlError, match="backbone='linear'"):
        learner.get_mahalanobis_matrix()


def test_random_state_repeats_the_fit_and_leaves_torch_rng_alone(
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = iris
    before = torch.get_rng_state()
    kwargs = {"backbone": "mlp", "optimizer": "adam", "max_epochs": 3, "random_state": 3}
    first = MetricLearner(**kwargs).fit(x, y).transform(x)
    second = MetricLearner(**kwargs).fit(x, y).transform(x)
    np.testing.assert_array_equal(first, second)
    assert torch.equal(before, torch.get_rng_state())


def test_a_refit_of_the_same_config_equals_a_fresh_build(iris) -> None:
    """Fits of one config reuse its built module; the result must not depend on it."""
    import dml.classic.fit

    x, y = iris
    settings = {
        "backbone": "mlp",
        "optimizer": "adam",
        "max_epochs": 2,
        "batch_size": 30,
        "config": {"data.samples_per_class": 10},
        "random_state": 3,
    }
    dml.classic.fit.built_prototype.cache_clear()
    fresh = MetricLearner(**settings).fit(x, y)
    assert dml.classic.fit.built_prototype.cache_info().currsize == 1
    again = MetricLearner(**settings).fit(x, y)
    assert dml.classic.fit.built_prototype.cache_info().hits >= 1
    assert np.array_equal(fresh.transform(x), again.transform(x))
    assert fresh.loss_curve_ == again.loss_curve_
    other = MetricLearner(**{**settings, "random_state": 4}).fit(x, y)
    assert not np.array_equal(fresh.transform(x), other.transform(x))


def test_nca_with_lbfgs_defaults_to_euclidean_distances_and_8_iterations(iris) -> None:
    x, y = iris
    learner = MetricLearner(random_state=0).fit(x, y)
    assert type(learner.module_.loss_fn.distance).__name__ == "EuclideanDistance"
    assert learner.module_.optimizer_factory.keywords["max_iter"] == 8
    squared = MetricLearner(
        random_state=0, config={"loss.distance._target_": "dml.distances.SquaredEuclideanDistance"}
    ).fit(x, y)
    assert type(squared.module_.loss_fn.distance).__name__ == "SquaredEuclideanDistance"
    lmnn = MetricLearner(loss="lmnn", random_state=0).fit(x, y)
    assert type(lmnn.module_.loss_fn.distance).__name__ == "SquaredEuclideanDistance"
