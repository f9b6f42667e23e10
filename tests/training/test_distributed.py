"""DDP on CPU with gloo: two processes compute what one process computes on their data.

The two-process checks share one ``torch.multiprocessing`` spawn (starting processes
costs more than the checks): each worker computes the loss and gradient of its half of a
fixed batch with the other half gathered, and evaluates the digits splits through a
Lightning DDP trainer; the test compares both with one process on the whole data.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.multiprocessing as mp
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies import DDPStrategy
from torch import distributed as dist

from dml.config.build import build_datamodule, build_loss, build_module
from dml.errors import DmlError
from dml.training.ddp_launch import check_ddp_config, child_command
from dml.training.distributed import gather_unique, gather_with_grad, mean_over_processes
from dml.training.samplers import ClassBalancedBatchSampler, ShardedSampler
from tests.commands.test_cli import dml
from tests.conftest import group_options

WORLD = 2
FAST = ["dataset=digits", "backbone=mlp", "data.batch_size=30", "data.samples_per_class=5"]
# Losses with a miner, with learnable parameters (proxies), and with a cross-batch memory.
LOSS_CASES = {
    "triplet_semihard": ["loss=triplet", "miner=semihard"],
    "multi_similarity": ["loss=multi_similarity", "miner=multi_similarity"],
    "proxy_anchor": ["loss=proxy_anchor", "miner=none"],
    "contrastive_xbm": ["loss=contrastive", "miner=none", "memory=xbm", "memory.size=100"],
}
STEPS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loss_steps(cfg: DictConfig, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Losses of a few steps (each step one batch; no optimizer step), the summed gradient
    as DDP leaves it (averaged over processes), and the cross-batch memory at the end.

    Eval mode: BatchNorm uses its running statistics, so an embedding does not depend on
    the rest of its process's batch (DDP does not synchronise batch statistics)."""
    torch.manual_seed(0)
    module = build_module(cfg).eval()
    losses = []
    for x, labels in batches:
        loss, _, _ = module.compute_loss(module(x), labels)
        loss.backward()
        losses.append(loss.item())
    grad = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
    memory = module.memory.references() if module.memory is not None else None
    return {
        "losses": losses,
        "grad": mean_over_processes(grad),
        "memory": None if memory is None else (memory.embeddings.clone(), memory.labels.clone()),
    }


def evaluate(cfg: DictConfig, trainer: pl.Trainer) -> dict[str, float]:
    torch.manual_seed(0)
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in {**val, **test}.items() if k.startswith(("val/", "test/"))}


def eval_trainer(**kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def worker(
    rank: int,
    port: int,
    cases: dict[str, DictConfig],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    eval_cfg: DictConfig,
    out: Path,
) -> None:
    """One of the processes; Lightning finds the process group already set up."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    mine = [(x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]) for x, y in batches]
    results: dict[str, Any] = {name: loss_steps(cfg, mine) for name, cfg in cases.items()}
    ddp = DDPStrategy(process_group_backend="gloo")
    results["metrics"] = evaluate(eval_cfg, eval_trainer(devices=WORLD, strategy=ddp))
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def test_two_processes_compute_what_one_computes_on_the_whole_data(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cases = {name: compose_cfg(*FAST, *extra) for name, extra in LOSS_CASES.items()}
    eval_cfg = compose_cfg(*FAST, "data.eval_batch_size=50")
    datamodule = build_datamodule(eval_cfg)
    train = datamodule.splits.train
    # Each step's global batch is two P×K batches, one per process, as under DDP.
    sampler = ClassBalancedBatchSampler(train.labels, 30, 5, seed=0)
    indices = iter(sampler)
    batches = []
    for _ in range(STEPS):
        index = torch.tensor(next(indices) + next(indices))
        batches.append((torch.stack([train[i][0] for i in index]), train.labels[index]))
    assert len(datamodule.splits.val) % WORLD, "an odd split makes the sampler pad"

    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(free_port(), cases, batches, eval_cfg, out), nprocs=WORLD)
    ddp = torch.load(out, weights_only=False)

    for name, cfg in cases.items():
        one = loss_steps(cfg, batches)
        assert ddp[name]["losses"] == pytest.approx(one["losses"], rel=1e-5, abs=1e-7), name
        torch.testing.assert_close(ddp[name]["grad"], one["grad"], rtol=1e-4, atol=1e-6)
        if one["memory"] is not None:
            for got, want in zip(ddp[name]["memory"], one["memory"], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    one_metrics = evaluate(eval_cfg, eval_trainer(devices=1))
    assert ddp["metrics"].keys() == one_metrics.keys()
    assert ddp["metrics"] == one_metrics


def test_sharded_batches_are_disjoint_equal_in_number_and_cover_the_epoch() -> None:
    labels = torch.arange(10).repeat_interleave(20)
    sampler = ClassBalancedBatchSampler(labels, 20, 4, seed=1)
    sampler.set_epoch(3)
    whole = list(sampler)
    shards = [ShardedSampler(sampler, 3, rank) for rank in range(3)]
    for shard in shards:
        shard.set_epoch(3)
    parts = [list(shard) for shard in shards]
    assert [len(p) for p in parts] == [len(s) for s in shards] == [len(whole) // 3] * 3
    assert [b for step in zip(*parts, strict=True) for b in step] == whole[: len(whole) // 3 * 3]
    shards[0].set_epoch(4)
    assert list(shards[0]) != parts[0]
    # Fewer batches than processes: each still gets one step.
    tiny = ClassBalancedBatchSampler(labels[::5], 20, 4)
    assert [len(list(ShardedSampler(tiny, 4, r))) for r in range(4)] == [1] * 4


def test_one_process_gathers_nothing() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x
    indices, y = gather_unique(torch.arange(4), x)
    assert y is x and indices.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("option", group_options("loss"))
def test_every_loss_accepts_gather_false(
    compose_cfg: Callable[..., DictConfig], option: str
) -> None:
    cfg = compose_cfg(f"loss={option}", "loss.gather=false")
    loss, gather = build_loss(cfg)
    assert gather is False and not hasattr(loss, "gather")
    assert build_loss(compose_cfg(f"loss={option}"))[1] is True


def test_gather_must_be_a_boolean(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(DmlError, match="loss.gather='sometimes' must be true or false"):
        build_loss(compose_cfg("loss.gather=sometimes"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.strategy=ddp_spawn"], "strategy=ddp_spawn trains in worker processes"),
        (
            ["trainer=ddp", "+trainer.strategy.start_method=spawn"],
            "strategy.start_method=spawn trains in worker processes",
        ),
        (
            ["trainer=ddp", "trainer.use_distributed_sampler=true"],
            "cannot split dml's P×K batch sampler",
        ),
    ],
)
def test_unworkable_ddp_settings_fail_with_one_line(
    compose_cfg: Callable[..., DictConfig], overrides: list[str], message: str
) -> None:
    cfg = compose_cfg("trainer.devices=2", *overrides)
    with pytest.raises(DmlError, match=message) as info:
        check_ddp_config(cfg.trainer)
    assert "\n" not in str(info.value)


def test_child_command_reenters_the_same_dml_command_in_the_same_directory(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """A multirun job's child is a single run of that job, in the job's directory."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("train", overrides=["trainer=ddp"], return_hydra_config=True)
    hydra = cfg.hydra
    OmegaConf.set_struct(cfg, False)
    hydra.runtime.output_dir = str(tmp_path / "a dir" / "0")
    hydra.runtime.cwd = str(tmp_path)
    hydra.job.config_name = "train"
    hydra.overrides.task = ["trainer=ddp", "loss=contrastive"]
    hydra.overrides.hydra = ["hydra.mode=MULTIRUN", "hydra.sweep.dir=x", "hydra.job.chdir=true"]
    HydraConfig.instance().set_config(cfg)
    try:
        command, cwd = child_command(1)
    finally:
        HydraConfig.instance().cfg = None
    assert command == [
        sys.executable,
        "-m",
        "dml",
        "train",
        "trainer=ddp",
        "loss=contrastive",
        "hydra.job.chdir=true",
        f'hydra.run.dir="{tmp_path / "a dir" / "0"}"',
        "hydra.output_subdir=null",
        "hydra.job.name=dml_rank1",
    ]
    assert cwd == str(tmp_path)


@pytest.mark.slow
def test_dml_train_on_two_processes_makes_one_run(tmp_path: Path) -> None:
    """`dml train trainer=ddp trainer.devices=2`: one run directory, one W&B run, and test
    metrics that one process reproduces from the final checkpoint."""
    train = dml(
        "train",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        *FAST,
        cwd=tmp_path,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert not (tmp_path / "outputs" / "multirun").exists()
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    assert (run_dir / ".hydra").is_dir() and (run_dir / "dml_rank1.log").is_file()
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert trained["test/map_at_r"] > 0

    evaluated = dml(
        "eval",
        f"ckpt_path={run_dir}/checkpoints/last.ckpt",
        "trainer=cpu",
        cwd=tmp_path,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    eval_dir = max((tmp_path / "outputs" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    one = json.loads((eval_dir / "metrics.json").read_text())
    test_keys = [k for k in one if k.startswith("test/")]
    assert test_keys
    assert {k: trained[k] for k in test_keys} == pytest.approx(
        {k: one[k] for k in test_keys}, rel=1e-6, abs=1e-7
    )
