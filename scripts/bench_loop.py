"""Lightning's overhead: one training epoch of EmbeddingModule vs a plain PyTorch loop.

Both run the same model, loss, miner, optimizer and data loader (the default config,
mnist5k); rounds alternate between the two so machine noise hits both alike. Prints a
Markdown table of the median epoch time and the ratio. Run: python scripts/bench_loop.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from dml.config.build import build_datamodule, build_module


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter() - self.start)


def lightning_epoch(cfg: DictConfig, epochs: int) -> float:
    """The last of ``epochs`` epochs, so start-up and first-touch costs are excluded."""
    pl.seed_everything(cfg.seed, verbose=False)
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.times[-1]


def plain_epoch(cfg: DictConfig, epochs: int) -> float:
    pl.seed_everything(cfg.seed, verbose=False)
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    datamodule.setup("fit")
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    scheduler = configured.get("lr_scheduler") if isinstance(configured, dict) else None
    loader = datamodule.train_dataloader()
    module.train()
    elapsed = 0.0
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        start = time.perf_counter()
        for x, labels in loader:
            optimizer.zero_grad()
            embeddings = module(x)
            mined = module.miner(embeddings, labels) if module.miner is not None else None
            loss = module.loss_fn(embeddings, labels, mined)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        elapsed = time.perf_counter() - start
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round; the last is timed")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. backbone=mlp")
    args = parser.parse_args()
    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    lightning, plain = [], []
    for _ in range(args.rounds):
        lightning.append(lightning_epoch(cfg, args.epochs))
        plain.append(plain_epoch(cfg, args.epochs))
    lit, raw = statistics.median(lightning), statistics.median(plain)
    print(f"threads: {torch.get_num_threads()}, rounds: {args.rounds}, overrides: {args.overrides}")
    print("| loop | median epoch (s) | all rounds (s) |")
    print("|---|---|---|")
    print(f"| Lightning EmbeddingModule | {lit:.3f} | {', '.join(f'{t:.2f}' for t in lightning)} |")
    print(f"| plain PyTorch | {raw:.3f} | {', '.join(f'{t:.2f}' for t in plain)} |")
    print(f"| ratio Lightning / plain | {lit / raw:.3f} | |")


if __name__ == "__main__":
    main()
