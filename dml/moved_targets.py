"""Component classes that moved to another module, so that checkpoints written before the
move still load.

A checkpoint stores its run's config, ``_target_`` strings included, and ``dml eval``,
``embed``, ``search`` and ``export`` rebuild the model and data from it. When a class
moves, its old path is listed here with its new one; :func:`moved_to_current` rewrites a
stored config before it is built. Entries stay as long as such checkpoints may exist.
"""

from __future__ import annotations

from typing import Any

#: Old ``_target_`` → current one. The dataset sources moved into subpackages that show
#: what they are (built-in sources, readers of the user's files) in 2026-12.
MOVED_TARGETS: dict[str, str] = {
    "dml.datasets.cars196.Cars196": "dml.datasets.builtin.cars196.Cars196",
    "dml.datasets.cub200.CUB200": "dml.datasets.builtin.cub200.CUB200",
    "dml.datasets.digits.Digits": "dml.datasets.builtin.digits.Digits",
    "dml.datasets.inshop.InShop": "dml.datasets.builtin.inshop.InShop",
    "dml.datasets.mnist.TorchvisionMNIST": "dml.datasets.builtin.mnist.TorchvisionMNIST",
    "dml.datasets.mnist5k.MNIST5k": "dml.datasets.builtin.mnist5k.MNIST5k",
    "dml.datasets.sop.StanfordOnlineProducts": "dml.datasets.builtin.sop.StanfordOnlineProducts",
    "dml.datasets.synthetic.GaussianClusters": "dml.datasets.builtin.synthetic.GaussianClusters",
    "dml.datasets.tabular.SklearnTabular": "dml.datasets.builtin.sklearn_sets.SklearnTabular",
    "dml.datasets.features.FeatureFile": "dml.datasets.user_files.feature_file.FeatureFile",
    "dml.datasets.imagefolder.ImageFolder": "dml.datasets.user_files.image_folder.ImageFolder",
    "dml.datasets.table.ImageTable": "dml.datasets.user_files.oml_csv.ImageTable",
}


def moved_to_current(config: Any) -> Any:
    """``config`` (plain dicts and lists, as a checkpoint stores it) with every moved
    ``_target_`` replaced by its current path; the rest is returned as it is."""
    if isinstance(config, dict):
        return {
            key: MOVED_TARGETS.get(value, value)
            if key == "_target_" and isinstance(value, str)
            else moved_to_current(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [moved_to_current(value) for value in config]
    return config
