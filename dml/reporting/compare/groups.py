"""Variants: the runs that repeat one configuration, with their statistics.

A sweep over ``seed=0,1,2`` gives three runs of one configuration, and only their spread
says whether another configuration is better or merely luckier. Runs whose overrides
differ only in ``seed`` or ``dataset.fold`` form one variant (the ``variant`` every run
logs to W&B); ``--group-by KEY`` groups by chosen keys instead. Each variant reports,
per metric, the mean, the sample standard deviation and the half-width of a t-based 95%
confidence interval over its finished runs; the best variant is compared with the
runner-up by Welch's t-test. Failed and unfinished runs are counted, never averaged in.

Runs of different datasets are never pooled, whatever the grouping: their numbers are
not on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from dml.errors import DmlError
from dml.reporting.compare.runs import RunRecord
from dml.reporting.run_naming import REPLICATE_KEYS, override_key

# Welch's p-value below which the best variant counts as separated from the runner-up.
ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """One metric over a variant's finished runs; ``std`` and ``ci95`` need n ≥ 2."""

    n: int
    mean: float
    std: float | None
    ci95: float | None


def summarise(values: Sequence[float]) -> Summary:
    """n, mean, std (ddof=1) and the 95% CI half-width t(0.975, n−1)·std/√n."""
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        return Summary(0, math.nan, None, None)
    mean = float(data.mean())
    if n == 1:
        return Summary(1, mean, None, None)
    std = float(data.std(ddof=1))
    quantile = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1))
    return Summary(n, mean, std, quantile * std / math.sqrt(n))


@dataclass
class Variant:
    """The runs of one configuration (of one dataset), in the order they were found."""

    label: str
    dataset: str | None
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def finished(self) -> list[RunRecord]:
        return [run for run in self.runs if run.status == "finished"]

    @property
    def excluded(self) -> list[RunRecord]:
        """Failed or unfinished runs: listed, never averaged in."""
        return [run for run in self.runs if run.status != "finished"]

    def values(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.finished if metric in run.metrics]

    def summary(self, metric: str) -> Summary:
        return summarise(self.values(metric))


@dataclass(frozen=True)
class Separation:
    """Welch's t-test of the best variant of a dataset against its runner-up."""

    metric: str
    best: Variant
    runner_up: Variant
    p_value: float | None

    @property
    def separated(self) -> bool:
        return self.p_value is not None and not math.isnan(self.p_value) and self.p_value < ALPHA

    def sentence(self, best: str, runner_up: str) -> str:
        """One line for the table's notes, naming the two variants as given."""
        head = f"Best vs runner-up on {self.metric}: {best} vs {runner_up}"
        if self.p_value is None:
            return f"{head}: not tested, Welch's t-test needs at least 2 finished runs of each."
        if math.isnan(self.p_value):
            return f"{head}: not tested, neither varies across its runs."
        verdict = "separated" if self.separated else f"not separated (p ≥ {ALPHA})"
        return f"{head}, Welch's t-test p = {self.p_value:.3g}: {verdict}."


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided p-value (unequal variances); None below two values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def varying_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value is not the same in every run (or that some runs lack)."""
    settings = [{override_key(o): o for o in run.overrides} for run in runs]
    keys = sorted({key for found in settings for key in found})
    return [key for key in keys if len({found.get(key) for found in settings}) > 1]


def check_group_keys(runs: Sequence[RunRecord], keys: Sequence[str]) -> None:
    """Refuse a ``--group-by`` key that no run's overrides set, naming those that vary."""
    set_keys = {override_key(o) for run in runs for o in run.overrides}
    for key in keys:
        if key not in set_keys:
            varying = varying_keys(runs)
            hint = (
                f"the keys that vary across these runs are {', '.join(varying)}"
                if varying
                else "no override key varies across these runs"
            )
            raise DmlError(f"--group-by {key}: no run sets {key}; {hint}")


def group_label(run: RunRecord, keys: Sequence[str] | None) -> str:
    """The run's variant string, or ``key=value`` of the ``--group-by`` keys."""
    if keys is None:
        return run.variant
    return " ".join(f"{key}={run.setting(key) or 'default'}" for key in keys)


def group_runs(runs: Sequence[RunRecord], keys: Sequence[str] | None = None) -> list[Variant]:
    """Runs grouped into variants, first-found order; never across datasets."""
    if keys is not None:
        check_group_keys(runs, keys)
        replicates = [key for key in keys if key in REPLICATE_KEYS]
        if replicates:
            raise DmlError(
                f"--group-by {replicates[0]}: runs that differ in {replicates[0]} are "
                "repetitions of one variant; group by the keys that tell variants apart"
            )
    several = len({run.dataset for run in runs}) > 1
    variants: dict[tuple[str | None, str], Variant] = {}
    for run in runs:
        label = group_label(run, keys)
        if several and keys is not None and "dataset" not in keys:
            label = f"dataset={run.dataset} {label}"
        variant = variants.setdefault((run.dataset, label), Variant(label, run.dataset))
        variant.runs.append(run)
    return list(variants.values())


def datasets_of(variants: Sequence[Variant]) -> list[str | None]:
    """The datasets in first-found order."""
    return list(dict.fromkeys(variant.dataset for variant in variants))


def rank_variants(variants: Sequence[Variant], metric: str, ascending: bool) -> list[Variant]:
    """Within each dataset, by the mean of ``metric``, best first; a variant without a
    finished value of it goes last. Datasets keep their first-found order."""
    order = {dataset: index for index, dataset in enumerate(datasets_of(variants))}

    def key(variant: Variant) -> tuple[int, bool, float]:
        mean = variant.summary(metric).mean
        if math.isnan(mean):
            return (order[variant.dataset], True, 0.0)
        return (order[variant.dataset], False, mean if ascending else -mean)

    return sorted(variants, key=key)


def separations(ranked: Sequence[Variant], metric: str) -> list[Separation]:
    """Best against runner-up within each dataset that has two variants with the metric."""
    found = []
    for dataset in datasets_of(ranked):
        scored = [
            v for v in ranked if v.dataset == dataset and not math.isnan(v.summary(metric).mean)
        ]
        if len(scored) >= 2:
            best, runner_up = scored[:2]
            p_value = welch_p_value(best.values(metric), runner_up.values(metric))
            found.append(Separation(metric, best, runner_up, p_value))
    return found
