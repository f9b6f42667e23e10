"""Does `experiment=mnist5k_unseen` beat raw pixels on the digits it never trained on?

For each seed: the raw-pixel baseline (the identity embedding, Euclidean, and L2-normalised
as the runs evaluate) on that seed's test split (digits 5–9), then, with ``--train``, the
full `dml train experiment=mnist5k_unseen seed=<seed>` run through :func:`dml.commands.train.train`.

    .venv/bin/python scripts/bench_unseen.py                     # baselines only, seconds
    .venv/bin/python scripts/bench_unseen.py --train --seeds 0 1 2

Run directories go to outputs/bench_unseen/seed_<seed>.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from torch.nn import functional as F

from dml.commands.train import train
from dml.config.build import build_source
from dml.datasets.base import stacked_inputs
from dml.metrics import retrieval_metrics


def config(seed: int) -> DictConfig:
    overrides = [
        "experiment=mnist5k_unseen",
        f"seed={seed}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_module("dml.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def raw_pixel_map_at_r(cfg: DictConfig) -> tuple[float, float]:
    """MAP@R of the flattened test inputs: Euclidean, and after L2 normalisation."""
    test = build_source(cfg).load().test
    pixels = stacked_inputs(test).flatten(1)
    euclidean = retrieval_metrics(pixels, test.labels)["map_at_r"]
    normalised = retrieval_metrics(F.normalize(pixels, dim=1), test.labels)["map_at_r"]
    return euclidean, normalised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train", action="store_true", help="also run the experiment")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    rows = ["seed  raw pixels  raw pixels (L2)  trained  minutes"]
    for seed in args.seeds:
        cfg = config(seed)
        euclidean, normalised = raw_pixel_map_at_r(cfg)
        trained, minutes = "-", "-"
        if args.train:
            start = time.perf_counter()
            metrics = train(cfg, Path("outputs/bench_unseen") / f"seed_{seed}")
            trained = f"{metrics['test/map_at_r']:.4f}"
            minutes = f"{(time.perf_counter() - start) / 60:.1f}"
        rows.append(f"{seed:<4}  {euclidean:10.4f}  {normalised:15.4f}  {trained:>7}  {minutes:>7}")
    print("test/map_at_r on the unseen digits 5–9\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
