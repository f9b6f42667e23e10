"""``dml train cv.folds=K``: one job trains the K class-disjoint folds in turn.

Tuning on one validation split rewards settings that suit its few classes; the Reality
Check protocol scores a setting by the mean validation metric over K class-disjoint
folds of the training classes. A sweeper (Optuna) sees one number per trial, so one job
must train every fold: fold i runs as an ordinary ``dml train`` with ``dataset.folds=K
dataset.fold=i`` in ``<run dir>/fold_<i>`` (its own metrics.json, splits.json, plots and
W&B run), and the job's own metrics.json holds the mean over the folds of every metric,
which is what ``dml train`` returns to the sweeper. ``cv.json`` keeps the per-fold values
and their standard deviation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from dml.commands.train import train
from dml.config.build import build_source
from dml.config.checks import check_config
from dml.errors import DmlError
from dml.reporting.console import print_metrics_table
from dml.reporting.run_files import read_metrics, resolve_run_dir, write_json

log = logging.getLogger(__name__)


def cv_folds(cfg: DictConfig) -> int | None:
    """``cv.folds``, checked; None when the job trains one split as usual."""
    folds = OmegaConf.select(cfg, "cv.folds", default=None)
    if folds is None:
        return None
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise DmlError(f"cv.folds={folds!r} must be an integer of at least 2, or null")
    dataset_folds = OmegaConf.select(cfg, "dataset.folds", default=None)
    if dataset_folds not in (None, folds) or OmegaConf.select(cfg, "dataset.fold") not in (0, None):
        raise DmlError(
            f"cv.folds={folds} trains every fold itself; drop dataset.folds and dataset.fold "
            "(or train one fold per job with dataset.folds=K dataset.fold=i and no cv.folds)"
        )
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    several = (isinstance(devices, int) and devices > 1) or not isinstance(devices, int | str)
    if several or nodes != 1:
        raise DmlError(
            f"cv.folds={folds} trains the folds one after another in this process, which "
            "cannot start DDP processes for each; run the folds as a multirun instead: "
            f"dml train -m dataset.folds={folds} dataset.fold={','.join(map(str, range(folds)))}"
        )
    return folds


def check_foldable(cfg: DictConfig, folds: int) -> None:
    """Refuse, before fold 0, data whose training classes cannot be folded, naming
    ``cv.folds`` (what the user typed), not the ``dataset.folds`` each fold is given.

    Whether a source can be folded is the source's rule (``folds_problem``).
    """
    check_config(cfg)
    problem = build_source(cfg).folds_problem("cv.folds")
    if problem is not None:
        raise DmlError(f"cv.folds={folds}: {problem}")


def fold_config(cfg: DictConfig, folds: int, fold: int, fold_dir: Path) -> DictConfig:
    """The job's config for one fold. With ``resume=true`` a fold continues from its own
    last checkpoint where it has one and starts afresh where it has none.

    ``cv.folds`` stays set, so that the fold's config records which job it belongs to and
    a refused fold count is named by the key the user set.
    """
    fold_cfg = cfg.copy()
    with open_dict(fold_cfg):
        fold_cfg.dataset.folds = folds
        fold_cfg.dataset.fold = fold
        if cfg.get("resume", False):
            fold_cfg.resume = (fold_dir / "checkpoints" / "last.ckpt").is_file()
    return fold_cfg


def mean_metrics(per_fold: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std (ddof=1) over the folds of every metric all folds have."""
    keys = sorted(set.intersection(*(set(m) for m in per_fold)) - {"epoch"})
    table = np.array([[m[k] for k in keys] for m in per_fold], dtype=np.float64)
    means = dict(zip(keys, table.mean(axis=0).tolist(), strict=True))
    stds = dict(zip(keys, table.std(axis=0, ddof=1).tolist(), strict=True))
    return means, stds


def cross_validate(cfg: DictConfig, run_dir: Path | str | None = None) -> dict[str, float]:
    """Train fold 0 … K−1 in ``<run dir>/fold_<i>``; write and return the mean metrics.

    With ``resume=true``, a fold that already wrote its metrics.json is not trained again,
    so a killed cross-validation continues with the fold it was in.
    """
    folds = cv_folds(cfg)
    if folds is None:
        raise DmlError("cross_validate needs cv.folds=K")
    check_foldable(cfg, folds)
    run_dir = resolve_run_dir(run_dir)
    per_fold = []
    for fold in range(folds):
        fold_dir = run_dir / f"fold_{fold}"
        done = fold_dir / "metrics.json"
        if cfg.get("resume", False) and done.is_file():
            log.info("fold %d of %d finished earlier: %s", fold, folds, done)
            per_fold.append(read_metrics(done))
            continue
        log.info("fold %d of %d: %s", fold, folds, fold_dir)
        per_fold.append(train(fold_config(cfg, folds, fold, fold_dir), fold_dir))
    means, stds = mean_metrics(per_fold)
    write_json(
        run_dir / "cv.json",
        {"folds": folds, "mean": means, "std": stds, "per_fold": per_fold},
    )
    write_json(run_dir / "metrics.json", means)
    print_metrics_table(means, run_dir, title=f"Mean over {folds} class-disjoint folds")
    return means
