"""The GPU path of dml, checked end to end in a few minutes on one GPU (run by gpu_check.sh).

On a generated CUB tree (``backbone.weights=null``, so nothing needs downloading), with
the cub200_resnet50 preset shrunk to small batches and one epoch:

1. ``trainer=gpu`` with ``precision=16-mixed`` (and ``backbone.channels_last=true``) trains;
2. ``dml eval`` of that checkpoint on the GPU gives the CPU's test metrics to 1e-5
   (TF32 is switched off for the GPU evaluation: with it, convolutions round to 10-bit
   mantissas and the embeddings are not the float32 ones the CPU computes);
3. ``trainer=gpu trainer.strategy=ddp trainer.devices=1`` trains over NCCL;
4. ``backbone.compile=true`` trains on the GPU;
5. a timm ViT (the cub200_vit_small_dino preset, ``backbone.pretrained=false``) trains with
   ``precision=16-mixed``.

One line per check: PASS, FAIL or SKIP with the reason. Without CUDA every GPU check is
skipped and the CPU parts still run (the checkpoint is then trained on the CPU), which is
how the test suite runs this script. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dml.datasets.fakes.benchmarks import make_benchmark

TOLERANCE = 1e-5
# Runs `dml` with TF32 off, for an evaluation that must equal the CPU's float32 one.
FULL_FLOAT32 = (
    "import sys, torch; torch.backends.cudnn.allow_tf32 = False; "
    "torch.backends.cuda.matmul.allow_tf32 = False; from dml.cli import main; main(sys.argv[1:])"
)


class Report:
    """Prints one line per check and counts the outcomes."""

    def __init__(self) -> None:
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def line(self, outcome: str, check: str, detail: str) -> None:
        self.counts[outcome] += 1
        print(f"{outcome} {check}: {detail}", flush=True)


def compare_metrics(
    cpu: dict[str, float], gpu: dict[str, float], tolerance: float = TOLERANCE
) -> tuple[bool, str]:
    """Whether every test metric agrees within ``tolerance``, and the largest difference."""
    keys = sorted(k for k in cpu if k.startswith("test/"))
    if not keys or keys != sorted(k for k in gpu if k.startswith("test/")):
        return False, f"different test metrics: {keys} vs {sorted(gpu)}"
    worst = max(keys, key=lambda k: abs(cpu[k] - gpu[k]))
    gap = abs(cpu[worst] - gpu[worst])
    return gap <= tolerance, f"largest difference {gap:.2e} ({worst}), tolerance {tolerance:.0e}"


def run_dml(args: list[str], float32: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = [sys.executable, "-c", FULL_FLOAT32] if float32 else [sys.executable, "-m", "dml"]
    return subprocess.run(prefix + args, capture_output=True, text=True)


def failure(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines() or ["(no output)"]
    return f"exit {result.returncode}: {lines[-1]}"


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--scale", type=float, default=0.1, help="size of the CUB tree")
    parser.add_argument("--crop", type=int, default=224, help="dataset.transform.crop_size")
    parser.add_argument("--batch-size", type=int, default=32, help="data.batch_size (8 × K=4)")
    parser.add_argument("--limit-batches", type=int, default=None, help="training batches")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dml_gpu_check_"))
    report = Report()
    cuda = torch.cuda.is_available()
    no_cuda = "no CUDA device here (torch.cuda.is_available() is false)"

    start = time.perf_counter()
    tree = make_benchmark("cub200", out / "data", scale=args.scale)
    seconds = time.perf_counter() - start
    report.line(
        "PASS", "generated CUB tree", f"{tree.root}, {len(tree.images)} JPEGs, {seconds:.0f} s"
    )
    common = [
        "experiment=cub200_resnet50",
        *tree.overrides[1:],
        "backbone.weights=null",
        f"dataset.transform.crop_size={args.crop}",
        f"dataset.transform.resize_size={math.ceil(args.crop * 8 / 7)}",
        f"data.batch_size={args.batch_size}",
        "data.samples_per_class=4",
        "trainer.max_epochs=1",
        "logger=none",
    ]
    vit = [
        "experiment=cub200_vit_small_dino",
        "backbone.pretrained=false",
        *(o for o in common[1:] if not o.startswith("backbone.")),
    ]
    if args.limit_batches is not None:
        for overrides in (common, vit):
            overrides.append(f"+trainer.limit_train_batches={args.limit_batches}")

    def train(
        name: str, *extra: str, base: list[str] = common
    ) -> tuple[subprocess.CompletedProcess[str], Path, float]:
        run_dir = out / name
        begin = time.perf_counter()
        result = run_dml(["train", *base, *extra, f"hydra.run.dir={run_dir}"])
        return result, run_dir, time.perf_counter() - begin

    fp16 = "trainer=gpu precision=16-mixed channels_last"
    if cuda:
        result, trained, seconds = train("gpu_16_mixed", "backbone.channels_last=true")
        if result.returncode == 0:
            recall = metrics_of(trained)["test/recall_at_1"]
            report.line("PASS", fp16, f"test/recall_at_1={recall:.4f}, {seconds:.0f} s")
        else:
            report.line("FAIL", fp16, failure(result))
    else:
        report.line("SKIP", fp16, no_cuda)
        result, trained, seconds = train("cpu_checkpoint", "trainer=cpu")
        outcome = "PASS" if result.returncode == 0 else "FAIL"
        detail = f"{seconds:.0f} s" if result.returncode == 0 else failure(result)
        report.line(outcome, "trainer=cpu checkpoint for the evaluation checks", detail)

    checkpoint = trained / "checkpoints" / "last.ckpt"
    cpu_eval = gpu_eval = None
    if checkpoint.is_file():
        for device, float32 in (("cpu", False), ("gpu", True)):
            if device == "gpu" and not cuda:
                continue
            run_dir = out / f"eval_{device}"
            overrides = [f"trainer={device}", "trainer.precision=32-true", "logger=none"]
            result = run_dml(
                ["eval", f"ckpt_path={checkpoint}", *overrides, f"hydra.run.dir={run_dir}"],
                float32=float32,
            )
            if result.returncode != 0:
                report.line("FAIL", f"dml eval on {device}", failure(result))
                continue
            metrics = metrics_of(run_dir)
            cpu_eval, gpu_eval = (metrics, gpu_eval) if device == "cpu" else (cpu_eval, metrics)
            report.line(
                "PASS", f"dml eval on {device}", f"test/map_at_r={metrics['test/map_at_r']:.6f}"
            )
    equal = "eval on gpu equals eval on cpu"
    if not cuda:
        report.line("SKIP", equal, no_cuda)
    elif cpu_eval is None or gpu_eval is None:
        report.line("FAIL", equal, "an evaluation above failed")
    else:
        same, detail = compare_metrics(cpu_eval, gpu_eval)
        report.line("PASS" if same else "FAIL", equal, detail)

    for check, name, extra, base in (
        ("trainer=gpu strategy=ddp devices=1 (NCCL)", "gpu_ddp", ["trainer.strategy=ddp"], common),
        ("trainer=gpu backbone.compile=true", "gpu_compile", ["backbone.compile=true"], common),
        (
            "timm ViT-S/16 (cub200_vit_small_dino) trainer=gpu precision=16-mixed",
            "gpu_vit_16_mixed",
            ["trainer.precision=16-mixed"],
            vit,
        ),
    ):
        if not cuda:
            report.line("SKIP", check, no_cuda)
            continue
        result, run_dir, seconds = train(
            name, "trainer=gpu", "trainer.devices=1", *extra, base=base
        )
        if result.returncode == 0:
            recall = metrics_of(run_dir)["test/recall_at_1"]
            report.line("PASS", check, f"test/recall_at_1={recall:.4f}, {seconds:.0f} s")
        else:
            report.line("FAIL", check, failure(result))

    counts = report.counts
    print(
        f"gpu_check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
        f"(work folder {out})"
    )
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
