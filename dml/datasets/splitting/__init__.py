"""Every split and fold rule of dml, in one place, so that ``split=classes``,
``split=samples``, folds and the held-out minimums mean the same for every dataset.

- :mod:`.splits`: which items train, validate and test under each setting;
- :mod:`.folds`: class-disjoint folds of the training classes (``dataset.folds``);
- :mod:`.held_out`: how many items of a class a held-out split takes, and when a split
  can score retrieval at all (two classes, one of them with two items).

Sources call these functions and never re-implement a rule; ``tests/datasets/
test_splitting.py`` checks them against one table of cases.
"""

from dml.datasets.splitting.folds import ClassFolds, class_folds, no_folds_reason
from dml.datasets.splitting.held_out import (
    HELD_OUT_MIN,
    SCORED_CLASSES_MIN,
    TRAINED_MIN,
    hold_out_per_class,
    require_scorable,
    scoring_problem,
)
from dml.datasets.splitting.splits import (
    MARKED_SPLITS,
    SPLITS,
    VAL_SPLITS,
    check_split_settings,
    hold_out_val,
    marked_split,
    partition_split,
    split_indices,
    train_class_count,
)

__all__ = [
    "HELD_OUT_MIN",
    "MARKED_SPLITS",
    "SCORED_CLASSES_MIN",
    "SPLITS",
    "TRAINED_MIN",
    "VAL_SPLITS",
    "ClassFolds",
    "check_split_settings",
    "class_folds",
    "no_folds_reason",
    "hold_out_per_class",
    "hold_out_val",
    "marked_split",
    "partition_split",
    "require_scorable",
    "scoring_problem",
    "split_indices",
    "train_class_count",
]
