"""plots/roc.png: the curves as logged, chance drawn as TAR = FAR on the log axis."""

from __future__ import annotations

import numpy as np

from dml.metrics.pair_verification import RocCurve
from dml.reporting.evaluation_plots import roc_figure


def test_roc_figure_draws_each_split_and_chance_as_tar_equals_far() -> None:
    far = np.r_[0.0, np.geomspace(1e-4, 1.0, 30)]
    curve = RocCurve(far, np.sqrt(far), roc_auc=0.67, eer=0.38, same_pairs=5, different_pairs=10**4)
    figure = roc_figure({"val": curve, "test": curve})
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert "val: AUC 0.6700, EER 0.3800 (5 same / 10,000 different pairs)" in lines
    x, y = lines["test: AUC 0.6700, EER 0.3800 (5 same / 10,000 different pairs)"].get_data()
    # FAR 0 has no place on a log axis.
    assert np.array_equal(x, far[1:]) and np.array_equal(y, np.sqrt(far[1:]))
    x, y = lines["chance"].get_data()
    assert len(x) > 100 and np.allclose(x, y) and x.min() == 1e-4
