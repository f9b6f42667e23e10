"""Classic metric learning: dml's MetricLearner against metric-learn on iris and wine.

For each dataset, StandardScaler → learner → KNeighborsClassifier(3) is scored by
StratifiedKFold(5, shuffle=True, random_state=0): with no learner, with NCA and with LMNN.
The table gives the mean accuracy (%) and the seconds spent in the learner's ``fit`` over
the 5 folds.

metric-learn 0.7.0 does not run with scikit-learn >= 1.8, so it runs in its own Python
(``--metric-learn-python``, e.g. a venv with metric-learn==0.7.0 and scikit-learn==1.5.2).
This same file is that process's worker. Both libraries are timed in one run, fold by
fold, alternating which goes first, on the same train/test indices, each with one thread
(dml's ``n_jobs=None``; OMP/OpenBLAS/MKL limited to 1 for metric-learn), after an untimed
warm-up fit on other data, so a busy machine slows both alike.

``--repeats N`` adds a table of the mean accuracy over N shuffles of the folds
(random_state 0..N-1): a single split of 150 or 178 rows moves by a point per test error.

    python scripts/bench_classic.py --metric-learn-python /tmp/mlvenv/bin/python --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

DATASETS = {"iris": load_iris, "wine": load_wine}
METHODS = ("none", "nca", "lmnn")
FOLDS = 5
DEFAULT_ML_PYTHON = Path("/tmp/mlvenv/bin/python")


def score_fold(
    make_learner: Any, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[float, float]:
    """3-NN accuracy after the learner fitted on the fold's standardised training rows."""
    scaler = StandardScaler().fit(x[train])
    x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
    seconds = 0.0
    if make_learner is not None:
        learner = make_learner()
        start = time.perf_counter()
        learner.fit(x_train, y[train])
        seconds = time.perf_counter() - start
        x_train, x_test = learner.transform(x_train), learner.transform(x_test)
    knn = KNeighborsClassifier(3).fit(x_train, y[train])
    return float(knn.score(x_test, y[test])), seconds


def warm_up(learners: dict[str, Any]) -> None:
    """One untimed fit per learner on other data: imports and first-call costs go here."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3))
    y = np.arange(60) % 3
    for make in learners.values():
        if make is not None:
            make().fit(x, y)


def metric_learn_learners() -> dict[str, Any]:
    from metric_learn import LMNN, NCA

    return {"none": None, "nca": lambda: NCA(random_state=0), "lmnn": lambda: LMNN(random_state=0)}


def dml_learners() -> dict[str, Any]:
    from dml.classic.estimator import MetricLearner

    return {
        "none": None,
        "nca": lambda: MetricLearner(loss="nca", random_state=0),
        "lmnn": lambda: MetricLearner(loss="lmnn", random_state=0),
    }


def worker() -> None:
    """metric-learn's side: one JSON request per line in, one JSON result per line out."""
    import metric_learn
    import sklearn

    learners = metric_learn_learners()
    warm_up(learners)
    versions = {"metric_learn": metric_learn.__version__, "sklearn": sklearn.__version__}
    sys.stdout.write(json.dumps(versions) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        accuracy, seconds = score_fold(
            learners[request["method"]],
            np.asarray(request["x"]),
            np.asarray(request["y"]),
            np.asarray(request["train"]),
            np.asarray(request["test"]),
        )
        sys.stdout.write(json.dumps({"accuracy": accuracy, "seconds": seconds}) + "\n")
        sys.stdout.flush()


class MetricLearnProcess:
    """The worker above, run by metric-learn's Python with one thread per library."""

    def __init__(self, python: Path) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [str(python), __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.versions = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the metric-learn worker exited; run it by hand to see why")
        return json.loads(line)

    def score(
        self, method: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
    ) -> tuple[float, float]:
        assert self.process.stdin is not None
        request = {
            "method": method,
            "x": x.tolist(),
            "y": y.tolist(),
            "train": train.tolist(),
            "test": test.tolist(),
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        result = self._read()
        return result["accuracy"], result["seconds"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


Results = dict[tuple[str, str, str], list[tuple[float, float]]]


def run(ml: MetricLearnProcess | None, repeats: int) -> dict[int, Results]:
    """Per shuffle seed: (library, dataset, method) -> one (accuracy, seconds) per fold."""
    learners = dml_learners()
    warm_up(learners)
    by_seed: dict[int, Results] = {}
    for seed in range(repeats):
        results: Results = {}
        for name, load in DATASETS.items():
            x, y = load(return_X_y=True)
            folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(x, y)
            for index, (train, test) in enumerate(folds):
                for method in METHODS:
                    sides = ["dml", "metric-learn"] if ml is not None else ["dml"]
                    if index % 2:
                        sides.reverse()
                    for side in sides:
                        if side == "dml":
                            outcome = score_fold(learners[method], x, y, train, test)
                        else:
                            outcome = ml.score(method, x, y, train, test)
                        results.setdefault((side, name, method), []).append(outcome)
        by_seed[seed] = results
    return by_seed


def cell(folds: list[tuple[float, float]], method: str, first: bool) -> str:
    accuracy = 100 * np.mean([a for a, _ in folds])
    if method == "none":
        return f"{accuracy:.1f}"
    seconds = sum(s for _, s in folds)
    timing = f"{seconds:.2f} s to fit {FOLDS} folds" if first else f"{seconds:.2f} s"
    return f"{accuracy:.1f} ({timing})"


def print_split_table(results: Results, side: str, title: str) -> None:
    print(f"\n{title}\n")
    print("| data | no metric | NCA | LMNN |")
    print("|---|---|---|---|")
    for name in DATASETS:
        cells = [
            cell(results[(side, name, m)], m, first=(name == "iris" and m == "nca"))
            for m in METHODS
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_comparison(results: Results) -> None:
    print("\ndml against metric-learn on the same folds (accuracy difference, fit-time ratio)\n")
    print(
        "| data | method | dml | metric-learn | dml − metric-learn | fit time dml / metric-learn |"
    )
    print("|---|---|---|---|---|---|")
    for name in DATASETS:
        for method in METHODS[1:]:
            ours, theirs = results[("dml", name, method)], results[("metric-learn", name, method)]
            acc = [100 * np.mean([a for a, _ in r]) for r in (ours, theirs)]
            ratio = sum(s for _, s in ours) / sum(s for _, s in theirs)
            print(
                f"| {name} | {method.upper()} | {acc[0]:.1f} | {acc[1]:.1f} | "
                f"{acc[0] - acc[1]:+.1f} | {ratio:.2f} |"
            )


def print_repeats(by_seed: dict[int, Results], sides: list[str]) -> None:
    seeds = sorted(by_seed)
    span = f"random_state {seeds[0]}..{seeds[-1]}"
    print(f"\nMean accuracy over {len(seeds)} shuffles of the folds ({span})\n")
    print("| data | method | " + " | ".join(sides) + " |")
    print("|---|---|" + "---|" * len(sides))
    for name in DATASETS:
        for method in METHODS:
            means = [
                100 * np.mean([a for s in seeds for a, _ in by_seed[s][(side, name, method)]])
                for side in sides
            ]
            print(f"| {name} | {method} | " + " | ".join(f"{m:.1f}" for m in means) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metric-learn-python",
        type=Path,
        default=DEFAULT_ML_PYTHON if DEFAULT_ML_PYTHON.exists() else None,
        help="a Python with metric-learn 0.7.0 and scikit-learn < 1.8 (default: "
        f"{DEFAULT_ML_PYTHON} if it exists); without it only dml is measured",
    )
    parser.add_argument("--repeats", type=int, default=1, help="shuffles of the folds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    import sklearn
    import torch

    ml = MetricLearnProcess(args.metric_learn_python) if args.metric_learn_python else None
    try:
        by_seed = run(ml, args.repeats)
    finally:
        if ml is not None:
            ml.close()
    results = by_seed[0]
    print_split_table(
        results,
        "dml",
        f"dml MetricLearner (torch {torch.__version__}, scikit-learn {sklearn.__version__}), "
        "StratifiedKFold(5, shuffle=True, random_state=0), 1 thread",
    )
    sides = ["dml"]
    if ml is not None:
        print_split_table(
            results,
            "metric-learn",
            f"metric-learn {ml.versions['metric_learn']} (scikit-learn "
            f"{ml.versions['sklearn']}), same folds, timed alternately with dml in this run, "
            "1 thread",
        )
        print_comparison(results)
        sides.append("metric-learn")
    if args.repeats > 1:
        print_repeats(by_seed, sides)


if __name__ == "__main__":
    main()
