"""Starting the other processes of a one-node DDP run, as ``torchrun`` would.

``dml train trainer=ddp trainer.devices=2`` is one process at first: the one the user
started, which owns the run directory, the W&B run and ``metrics.json``. Once its Trainer
is built, :func:`start_ddp_processes` starts the other ranks as

    python -m dml <command> <this job's overrides> hydra.run.dir=<this run's directory>
    hydra.output_subdir=null

with ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK`` and ``LOCAL_RANK`` set
in their environment and in its own. That is how ``torchrun`` starts processes, and
Lightning's documented reading of those variables (its ``LightningEnvironment``) then
treats the processes as created outside it and launches nothing itself. dml starts them
rather than Lightning because Lightning's launcher re-runs ``sys.argv``, which is wrong for
``dml``: the console script has rewritten it (the subcommand is gone), and in a multirun it
is the whole sweep, not this job.

Where a cluster creates the processes (SLURM, torchrun), nothing is started here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.strategies import DDPStrategy
from torch import distributed as dist

from dml.errors import DmlError

# Hydra overrides that a child must not inherit: it is one job in this job's directory.
CHILD_DROPS_HYDRA = (
    "hydra.run.dir",
    "hydra.sweep.",
    "hydra.mode",
    "hydra.output_subdir",
    "hydra.job.name",
    "hydra.job.num",
    "hydra.job.id",
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
)
# What torchrun sets; restored after the run, so the next job of a multirun starts its own.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")
# Lightning's strategy names whose processes are started by multiprocessing, away from
# the process that writes the run's files.
SPAWNING = ("spawn", "fork", "notebook")
# Seconds between two looks at the children.
WATCH_INTERVAL = 1.0


@dataclass
class DdpProcesses:
    """The other ranks, started by this process, and the environment it changed."""

    children: list[subprocess.Popen] = field(default_factory=list)
    saved_env: dict[str, str | None] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)


def check_ddp_config(trainer_cfg: DictConfig) -> None:
    """Refuse, in one line, the DDP settings that cannot work with dml."""
    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(strategy, str):
        name, setting = strategy, f"trainer.strategy={strategy}"
    else:
        start_method = strategy.get("start_method", "popen")
        name, setting = str(start_method), f"trainer.strategy.start_method={start_method}"
    if any(word in name for word in SPAWNING):
        raise DmlError(
            f"{setting} trains in worker processes, away from the process that writes "
            "metrics.json and owns the W&B run; use trainer=ddp"
        )
    if trainer_cfg.get("use_distributed_sampler", False):
        raise DmlError(
            "trainer.use_distributed_sampler=true cannot split dml's P×K batch sampler; "
            "leave it false: dml shards its own batches across processes"
        )


def start_ddp_processes(trainer: pl.Trainer) -> DdpProcesses | None:
    """From rank 0 of a one-node DDP trainer, start the other ranks; None otherwise."""
    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy) or trainer.num_devices * trainer.num_nodes == 1:
        return None
    if not dist.is_available():
        raise DmlError("this torch build has no torch.distributed; use trainer=cpu")
    on_gpu = strategy.root_device.type == "cuda"
    backend = strategy.process_group_backend or ("nccl" if on_gpu else "gloo")
    if backend == "gloo" and not dist.is_gloo_available():
        raise DmlError("this torch build has no gloo backend; use trainer=cpu")
    if backend == "nccl" and not torch.cuda.is_available():
        raise DmlError(
            "the nccl backend needs CUDA GPUs, and torch sees none here; "
            "use trainer=ddp (gloo, on CPU)"
        )
    from hydra.core.hydra_config import HydraConfig

    if strategy.cluster_environment.creates_processes_externally:
        return None
    if not HydraConfig.initialized():
        # Called from Python, not `dml`: Lightning's own launcher re-runs the script.
        return None
    if trainer.num_nodes > 1:
        raise DmlError(
            f"trainer.num_nodes={trainer.num_nodes}: processes on other machines are started "
            "by the cluster (SLURM, torchrun), not by dml train; use hydra/launcher=slurm"
        )
    processes = DdpProcesses(saved_env={name: os.environ.get(name) for name in LAUNCH_ENV})
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        WORLD_SIZE=str(trainer.num_devices),
        NODE_RANK="0",
        LOCAL_RANK="0",
    )
    for local_rank in range(1, trainer.num_devices):
        command, cwd = child_command(local_rank)
        env = {**os.environ, "LOCAL_RANK": str(local_rank)}
        processes.children.append(subprocess.Popen(command, env=env, cwd=cwd))
    threading.Thread(target=watch, args=(processes,), daemon=True).start()
    return processes


def stop_ddp_processes(processes: DdpProcesses | None, failed: bool) -> None:
    """After the run: wait for the children (or, if this process failed, stop them: they
    would wait for it forever), close the process group and restore the environment."""
    if processes is None:
        return
    processes.stopping.set()
    for child in processes.children:
        if failed:
            child.kill()
        child.wait()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name, value in processes.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def watch(processes: DdpProcesses) -> None:
    """If a child dies, stop the others and this process, which would otherwise wait in its
    next collective for a rank that is gone (as Lightning's own launcher does)."""
    while not processes.stopping.wait(WATCH_INTERVAL):
        if any(child.poll() not in (None, 0) for child in processes.children):
            for child in processes.children:
                if child.poll() is None:
                    child.kill()
            os.kill(os.getpid(), signal.SIGTERM)
            return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quote_override(value: str) -> str:
    """A Hydra override value that keeps every character of a path."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def child_command(local_rank: int) -> tuple[list[str], str]:
    """The command line and working directory of the child with ``local_rank``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hydra_cfg = HydraConfig.get()
    hydra_overrides = [
        o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").startswith(CHILD_DROPS_HYDRA)
    ]
    command = [
        sys.executable,
        "-m",
        "dml",
        # One dml command per primary config: train, eval, embed.
        str(hydra_cfg.job.config_name),
        *hydra_cfg.overrides.task,
        *hydra_overrides,
        f"hydra.run.dir={quote_override(hydra_cfg.runtime.output_dir)}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, get_original_cwd()
