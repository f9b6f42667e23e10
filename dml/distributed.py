"""Training and evaluating on several processes (DDP): how they start, and what they share.

``dml train trainer=ddp trainer.devices=2`` runs two processes with the gloo backend
(CPU; ``trainer=gpu trainer.strategy=ddp`` runs one per GPU with NCCL).

Starting the processes. Lightning's subprocess launcher re-runs ``sys.argv``, which is
wrong for ``dml``: the console script has rewritten it to ``dml-train <overrides>`` (the
subcommand is gone), and in a multirun it is the whole sweep. :class:`HydraChildLauncher`
starts ``python -m dml <command> <this job's overrides> hydra.run.dir=<this run's
directory> hydra.output_subdir=null`` instead: each child composes the same config into
the same run directory, and writes no ``.hydra/`` of its own. The launching process is
rank 0, and has set everything up before the children start, so only it creates the run
directory, the W&B run, ``metrics.json`` and the plots.

What the processes share:

- the training batch: :func:`gather_with_grad` gives the loss and miner the embeddings of
  every process, so negatives come from the global batch (``loss.gather=false`` keeps each
  process to its own). Each process computes the same loss on the same global batch, and
  its gradient flows into its own rows only, scaled by the world size; DDP then averages
  the processes' gradients, so the update is exactly the one-process gradient of the loss
  on the concatenated batch, for the backbone and for loss parameters (proxies) alike.
  (Scaling the loss instead would multiply the proxies' gradients by the world size.)
- evaluation: :func:`gather_unique` collects every process's embeddings with their
  sample indices and drops the copies a padded DistributedSampler adds, so the metrics
  equal the one-process metrics on the same data.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
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
# Environment variables the launcher sets for the children; restored after the run, so the
# next job of a multirun starts its own processes.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def world_size() -> int:
    """Processes in the default group; 1 without torch.distributed (one process)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    """Whether this is the launching process; known before the process group exists."""
    return rank_zero_only.rank == 0


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def all_gather_uneven(tensor: Tensor) -> list[Tensor]:
    """Every process's ``tensor`` (detached), in rank order; sizes may differ along dim 0."""
    world = world_size()
    if world == 1:
        return [tensor.detach()]
    size = torch.tensor([len(tensor)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes).item())
    padded = tensor.detach().new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return [part[: int(n.item())] for part, n in zip(parts, sizes, strict=True)]


def all_gather_cat(tensor: Tensor) -> Tensor:
    """The concatenation of every process's ``tensor``, detached; ``tensor`` on one process."""
    if world_size() == 1:
        return tensor
    return torch.cat(all_gather_uneven(tensor))


def gather_with_grad(tensor: Tensor) -> Tensor:
    """The global batch, with this process's rows on the autograd graph (see the module doc).

    The other rows are constants here: their gradient is computed by their own process,
    which computes the same loss. Scaling the local gradient by the world size makes DDP's
    average equal the sum over processes, i.e. the one-process gradient.
    """
    world = world_size()
    if world == 1:
        return tensor
    parts = all_gather_uneven(tensor)
    parts[dist.get_rank()] = _ScaleGrad.apply(tensor, float(world))
    return torch.cat(parts)


def gather_unique(indices: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Every process's evaluated samples, once each, in sample-index order.

    ``indices`` are the dataset indices of this process's rows; a padded DistributedSampler
    gives some samples to two processes, and only the first copy is kept. Returns the
    sorted unique indices, then each of ``tensors`` reordered to match.
    """
    if world_size() == 1:
        return (indices, *tensors)
    indices = all_gather_cat(indices)
    order = torch.argsort(indices, stable=True)
    ordered = indices[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = order[first]
    return (indices[keep], *(all_gather_cat(t)[keep.to(t.device)] for t in tensors))


def mean_over_processes(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over the processes (a copy); ``tensor`` itself on one process."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total / world_size()


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


class StoppableObserver(_ChildProcessObserver):
    """Lightning's watcher of the children (it ends every process when one of them dies),
    which can be told to stop watching, before the children are stopped on purpose."""

    def __init__(self, child_processes: list[subprocess.Popen]) -> None:
        super().__init__(main_pid=os.getpid(), child_processes=child_processes)
        self.stopped = threading.Event()

    def _run(self) -> bool:
        return self.stopped.is_set() or super()._run()


class HydraChildLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher, starting each child as this Hydra job's ``dml``
    command (see the module doc); it keeps what :func:`finish_distributed` needs: the
    watcher of the children and the environment it changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved_env: dict[str, str | None] = {}
        self.observer: StoppableObserver | None = None

    def launch(self, function: Any, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = StoppableObserver(self.procs)
            self.observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        self.saved_env = {name: os.environ.get(name) for name in LAUNCH_ENV}
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            command, cwd = child_command(local_rank)
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))


def prepare_distributed(trainer: pl.Trainer) -> None:
    """Give a DDP trainer dml's launcher, or stop with one line if it cannot work here."""
    from hydra.core.hydra_config import HydraConfig

    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy):
        return
    launcher = strategy.launcher
    if isinstance(launcher, _MultiProcessingLauncher):
        raise DmlError(
            f"a DDP strategy with start method {strategy._start_method!r} trains in worker "
            "processes, away from the process that writes metrics.json and owns the W&B run; "
            "use trainer=ddp"
        )
    if not dist.is_available():
        raise DmlError("this torch build has no torch.distributed; use trainer=cpu")
    backend = strategy._get_process_group_backend()
    if backend == "gloo" and not dist.is_gloo_available():
        raise DmlError("this torch build has no gloo backend; use trainer=cpu")
    if backend == "nccl" and not torch.cuda.is_available():
        raise DmlError(
            "the nccl backend needs CUDA GPUs, and torch sees none here; "
            "use trainer=ddp (gloo, on CPU)"
        )
    if trainer._accelerator_connector.use_distributed_sampler:
        raise DmlError(
            "trainer.use_distributed_sampler=true cannot split dml's P×K batch sampler; "
            "leave it false: dml shards its own batches across processes"
        )
    if isinstance(launcher, _SubprocessScriptLauncher) and HydraConfig.initialized():
        strategy._launcher = HydraChildLauncher(
            strategy.cluster_environment, strategy.num_processes, strategy.num_nodes
        )


def finish_distributed(trainer: pl.Trainer | None, failed: bool) -> None:
    """After the run: wait for the children (or, if this process failed, stop them: they
    would wait for it forever), close the process group and restore the environment, so
    the next job of a multirun starts its own processes."""
    launcher = trainer.strategy.launcher if trainer is not None else None
    if not isinstance(launcher, HydraChildLauncher) or not launcher.procs:
        return
    if launcher.observer is not None:
        launcher.observer.stopped.set()
    for proc in launcher.procs:
        if failed:
            proc.kill()
        proc.wait()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name, value in launcher.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def loader_indices(loader: Iterable[Any], count: int) -> Tensor:
    """The dataset indices of the first ``count`` samples of an unshuffled DataLoader."""
    batches = getattr(loader, "batch_sampler", None)
    if batches is None:
        raise DmlError("evaluation under DDP needs batched DataLoaders (batch_size set)")
    return torch.tensor(list(itertools.islice(itertools.chain.from_iterable(batches), count)))
