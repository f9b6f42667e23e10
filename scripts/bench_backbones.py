"""Training throughput of image backbones, float32 against bf16-mixed, side by side.

Each backbone is built as a run builds it (dml's config, random weights), and one
training step is what EmbeddingModule does: forward, the loss in float32 (the default
triplet loss with its semi-hard miner), backward, an optimizer step. bf16-mixed runs the
forward and loss inside ``torch.autocast`` with bfloat16, as Lightning's
``trainer.precision=bf16-mixed`` does. The two precisions alternate step by step, so a
change in the machine's load hits both alike; the table gives the median of the timed
steps, in images per second, with the CPU model and the load average before and after.

    python scripts/bench_backbones.py                  # batch 32, 224 px, this CPU
    python scripts/bench_backbones.py --steps 20 --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from dml.config.build import build_module
from dml.training.module import EmbeddingModule

# name in the table: the overrides that build it.
BACKBONES = {
    "resnet50 (torchvision)": ["backbone=resnet50", "backbone.weights=null"],
    "vit_small_patch16_224 (timm)": [
        "backbone=timm",
        "backbone.name=vit_small_patch16_224",
        "backbone.pretrained=false",
    ],
    "convnext_tiny (timm)": [
        "backbone=timm",
        "backbone.name=convnext_tiny",
        "backbone.pretrained=false",
    ],
}
PRECISIONS = ("float32", "bf16-mixed")


def cpu_model() -> str:
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in listing.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def module_for(overrides: list[str], size: int) -> EmbeddingModule:
    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg: DictConfig = compose(
            "train",
            overrides=[
                "dataset=imagefolder",
                f"dataset.transform.crop_size={size}",
                "backbone.embedding_dim=128",
                "optimizer=adamw",
                "scheduler=none",
                *overrides,
            ],
        )
    torch.manual_seed(0)
    return build_module(cfg)


def step_function(
    module: EmbeddingModule, batch: tuple[torch.Tensor, torch.Tensor], device: str
) -> Callable[[str], float]:
    """One training step in the given precision; returns its seconds."""
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    x, labels = batch

    def step(precision: str) -> float:
        autocast = (
            torch.autocast(device, dtype=torch.bfloat16)
            if precision == "bf16-mixed"
            else nullcontext()
        )
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = module.compute_loss(module(x), labels)[0]
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def measure(
    overrides: list[str], batch_size: int, size: int, steps: int, warmup: int, device: str
) -> tuple[int, dict[str, float]]:
    """Parameters, and images per second for each precision (median step)."""
    module = module_for(overrides, size).to(device).train()
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch_size, 3, size, size, generator=generator).to(device)
    labels = torch.arange(batch_size // 4).repeat_interleave(4).to(device)
    step = step_function(module, (x, labels), device)
    for _ in range(warmup):
        for precision in PRECISIONS:
            step(precision)
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(steps):
        for precision in PRECISIONS:
            times[precision].append(step(precision))
    params = sum(p.numel() for p in module.backbone.parameters())
    return params, {p: batch_size / statistics.median(t) for p, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.batch_size % 4:
        parser.error("--batch-size must be a multiple of 4 (P×K batches of K = 4)")
    device_name = cpu_model() if args.device == "cpu" else torch.cuda.get_device_name()
    before = load_average()
    rows = []
    for name, overrides in BACKBONES.items():
        params, speed = measure(
            overrides, args.batch_size, args.size, args.steps, args.warmup, args.device
        )
        rows.append((name, params, speed))
    print(
        f"Training throughput, batch {args.batch_size}, {args.size} px, {args.device} "
        f"({device_name}), {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"median of {args.steps} steps per precision, alternating; load average "
        f"(1, 5, 15 min) {before} before, {load_average()} after.\n"
    )
    print("| backbone | parameters | float32 (images/s) | bf16-mixed (images/s) | bf16 / fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name, params, speed in rows:
        ratio = speed["bf16-mixed"] / speed["float32"]
        print(
            f"| {name} | {params / 1e6:.1f} M | {speed['float32']:.1f} | "
            f"{speed['bf16-mixed']:.1f} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
