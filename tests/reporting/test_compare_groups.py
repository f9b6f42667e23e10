"""`dml compare` variants: seeds (and folds) pooled, checked against an independent computation.

The expected numbers come from the runs' own metrics.json files, read here with json and
grouped by hand, then numpy's mean and std, scipy's t quantile, and Welch's test written
out from its formula (scipy's t distribution for the p-value).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dml.reporting.compare.command import main
from dml.reporting.run_files import write_failure_marker
from dml.reporting.run_naming import variant_of
from tests.reporting.test_compare import COMMON, make_run

METRICS = ("val/map_at_r", "test/map_at_r", "test/precision_at_1")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def make_sweep(
    root: Path, centres: dict[str, float], seeds: int, spread: float, rng: np.random.Generator
) -> None:
    """``seeds`` finished runs per loss, its metrics drawn around the loss's centre."""
    job = 0
    for loss, centre in centres.items():
        for seed in range(seeds):
            values = {m: float(centre + spread * rng.standard_normal()) for m in METRICS}
            overrides = [f"loss={loss}", f"seed={seed}", *COMMON]
            make_run(root / str(job), overrides, [0.1, values["val/map_at_r"]], values)
            job += 1


def expected_groups(root: Path, key: str = "loss") -> dict[str, list[dict[str, float]]]:
    """Finished runs' metrics.json, grouped by the value of ``key`` in their overrides."""
    import yaml

    groups: dict[str, list[dict[str, float]]] = {}
    for job in root.iterdir():
        if not (job / "metrics.json").is_file():
            continue
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        value = dict(o.split("=", 1) for o in overrides)[key]
        groups.setdefault(value, []).append(json.loads((job / "metrics.json").read_text()))
    return groups


def welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided test from its formula, with the Welch–Satterthwaite df."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_variants_match_numpy_scipy_and_welch_on_the_runs_own_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "multirun"
    rng = np.random.default_rng(3)
    make_sweep(root, {"triplet": 0.50, "contrastive": 0.52, "multi_similarity": 0.40}, 5, 0.03, rng)
    crashed = make_run(root / "20", ["loss=triplet", "seed=5", *COMMON], [0.1, 0.99])
    write_failure_marker(crashed, RuntimeError("loss became nan"))
    make_run(root / "21", ["loss=triplet", "seed=6", *COMMON], [0.1, 0.98])
    assert main([str(root)]) == 0
    out = capsys.readouterr().out

    groups = expected_groups(root)
    rows = read_rows(root / "compare_groups.csv")
    assert [r["variant"] for r in rows] == [
        f"backbone=mlp dataset=digits loss={loss}"
        for loss in sorted(groups, key=lambda g: -np.mean([m["val/map_at_r"] for m in groups[g]]))
    ]
    header = list(rows[0])
    assert header[:2] == ["variant", "n"]
    for metric in METRICS:
        assert f"{metric}_mean" in header and f"{metric}_ci95" in header
    for row in rows:
        runs = groups[row["variant"].rsplit("=", 1)[1]]
        assert row["n"] == "5"
        for metric in METRICS:
            values = np.array([m[metric] for m in runs])
            std = values.std(ddof=1)
            ci95 = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
            assert float(row[f"{metric}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(row[f"{metric}_std"]) == pytest.approx(std, rel=1e-12)
            assert float(row[f"{metric}_ci95"]) == pytest.approx(ci95, rel=1e-12)
            assert f"{values.mean():.4f} ± {ci95:.4f}" in out

    best, runner_up = (rows[i]["variant"].rsplit("=", 1)[1] for i in (0, 1))
    p = welch_p(*([m["val/map_at_r"] for m in groups[name]] for name in (best, runner_up)))
    verdict = "separated." if p < 0.05 else "not separated (p ≥ 0.05)."
    sentence = (
        f"Best vs runner-up on val/map_at_r: loss={best} vs loss={runner_up}, "
        f"Welch's t-test p = {p:.3g}: {verdict}"
    )
    assert sentence in out
    assert f"- {sentence}" in (root / "compare.md").read_text()

    per_run = read_rows(root / "compare.csv")
    assert len(per_run) == 17
    by_run = {r["run"]: r for r in per_run}
    assert by_run["20"]["status"] == "failed" and by_run["21"]["status"] == "unfinished"
    assert by_run["20"]["variant"] == "backbone=mlp dataset=digits loss=triplet"
    triplet = next(r for r in rows if r["variant"].endswith("loss=triplet"))
    assert float(triplet["val/map_at_r_mean"]) < 0.9  # the crashed runs' 0.98/0.99 stay out
    assert "1 failed, 1 unfinished" in out
    assert "20 (loss=triplet): failed, not averaged — RuntimeError: loss became nan" in out


@pytest.mark.parametrize(("spread", "separated"), [(0.002, True), (0.2, False)])
def test_best_and_runner_up_are_marked_by_welchs_p_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spread: float, separated: bool
) -> None:
    root = tmp_path / "multirun"
    make_sweep(root, {"a": 0.60, "b": 0.55}, 4, spread, np.random.default_rng(0))
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    groups = expected_groups(root)
    p = welch_p(*([m["val/map_at_r"] for m in groups[name]] for name in ("a", "b")))
    assert (p < 0.05) is separated
    assert f"p = {p:.3g}" in out
    assert ("not separated" in out) is not separated


def test_a_single_run_shows_no_interval(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    make_sweep(root, {"a": 0.6}, 2, 0.01, np.random.default_rng(1))
    make_run(root / "9", ["loss=b", "seed=0", *COMMON], [0.1, 0.7], {m: 0.7 for m in METRICS})
    assert main([str(root)]) == 0
    rows = {r["variant"].rsplit("=", 1)[1]: r for r in read_rows(root / "compare_groups.csv")}
    assert rows["b"]["n"] == "1" and rows["b"]["val/map_at_r_mean"] == "0.7"
    assert rows["b"]["val/map_at_r_std"] == rows["b"]["val/map_at_r_ci95"] == ""
    assert rows["a"]["val/map_at_r_ci95"] != ""
    table = (root / "compare.md").read_text().splitlines()
    assert table[2].startswith("| 1 | loss=b | 1 | 0.7000 | 0.7000 | 0.7000 |")
    assert "±" in table[3]
    assert "not tested, Welch's t-test needs at least 2 finished runs of each" in "\n".join(table)


def test_group_by_pools_the_other_overrides(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    rng = np.random.default_rng(5)
    job = 0
    for loss in ("triplet", "contrastive"):
        for miner in ("hard", "semihard"):
            for seed in range(3):
                values = {m: float(rng.uniform()) for m in METRICS}
                overrides = [f"loss={loss}", f"miner={miner}", f"seed={seed}", *COMMON]
                make_run(root / str(job), overrides, [0.1, values["val/map_at_r"]], values)
                job += 1
    assert main([str(root), "--group-by", "loss"]) == 0
    groups = expected_groups(root, "loss")
    rows = read_rows(root / "compare_groups.csv")
    assert sorted(r["variant"] for r in rows) == ["loss=contrastive", "loss=triplet"]
    for row in rows:
        values = [m["test/map_at_r"] for m in groups[row["variant"].split("=")[1]]]
        assert row["n"] == "6"
        assert float(row["test/map_at_r_mean"]) == pytest.approx(np.mean(values), rel=1e-12)
    assert main([str(root), "--group-by", "loss,miner", "--out", str(tmp_path / "b")]) == 0
    rows = read_rows(tmp_path / "b" / "compare_groups.csv")
    assert len(rows) == 4 and {r["n"] for r in rows} == {"3"}
    assert "loss=triplet miner=hard" in {r["variant"] for r in rows}


def test_group_by_a_key_no_run_sets_names_the_keys_that_vary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "multirun"
    make_sweep(root, {"a": 0.6, "b": 0.5}, 2, 0.01, np.random.default_rng(0))
    assert main([str(root), "--group-by", "optimizer.lr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: --group-by optimizer.lr: no run sets optimizer.lr; the keys that vary "
        "across these runs are loss, seed"
    )
    assert not (root / "compare.csv").exists()


def test_runs_of_two_datasets_are_grouped_apart_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "multirun"
    job = 0
    for dataset, centre in (("digits", 0.8), ("iris", 0.3)):
        for loss in ("a", "b"):
            for seed in range(2):
                values = {m: centre + 0.01 * seed for m in METRICS}
                overrides = [f"dataset={dataset}", f"loss={loss}", f"seed={seed}"]
                make_run(root / str(job), overrides, [0.1, centre], values)
                job += 1
    assert main([str(root), "--group-by", "loss"]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: these runs use 2 datasets (digits, iris); their variants are grouped and "
        "ranked apart, never averaged together"
    ) in out
    rows = read_rows(root / "compare_groups.csv")
    assert [(r["variant"], r["n"]) for r in rows] == [
        ("dataset=digits loss=a", "2"),
        ("dataset=digits loss=b", "2"),
        ("dataset=iris loss=a", "2"),
        ("dataset=iris loss=b", "2"),
    ]
    means = [float(r["test/map_at_r_mean"]) for r in rows]
    assert means == pytest.approx([0.805, 0.805, 0.305, 0.305])
    assert out.count("Best vs runner-up") == 2


def test_folds_are_repetitions_of_one_variant_like_seeds(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    values = [0.5, 0.6, 0.55, 0.65]
    for fold, value in enumerate(values):
        overrides = ["dataset.folds=4", f"dataset.fold={fold}", "loss=triplet", *COMMON]
        make_run(root / str(fold), overrides, [0.1, value], {"val/map_at_r": value})
    assert main([str(root)]) == 0
    (row,) = read_rows(root / "compare_groups.csv")
    assert row["variant"] == "backbone=mlp dataset.folds=4 dataset=digits loss=triplet"
    assert row["n"] == "4"
    assert float(row["val/map_at_r_mean"]) == pytest.approx(np.mean(values))


def test_variant_ignores_order_seed_fold_and_hydra_keys() -> None:
    a = ["loss=triplet", "seed=0", "miner=hard", "hydra.sweep.dir=x"]
    b = ["miner=hard", "+seed=3", "dataset.fold=2", "loss=triplet"]
    assert variant_of(a) == variant_of(b) == "loss=triplet miner=hard"
    assert variant_of(["seed=1"]) == "defaults"
    assert variant_of(["loss=triplet"]) != variant_of(["loss=contrastive"])
