"""EmbeddingModule: trains a backbone with a metric-learning loss and evaluates retrieval."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn import functional as F

from dml.backbones.contracts import HasParameterGroups
from dml.datasets.pairs import PairBatch
from dml.datasets.tokens import joined
from dml.errors import DmlError
from dml.losses.base import EmbeddingLoss, HasOwnLearningRate, KnowsCollapsedValue
from dml.metrics.pair_verification import MAX_PAIRS
from dml.reporting.snapshots import EmbeddingSnapshot
from dml.training.distributed import (
    all_gather_cat,
    gather_unique,
    gather_with_grad,
    loader_indices,
    mean_over_processes,
    world_size,
)
from dml.training.evaluation_extras import EvaluationExtras
from dml.training.health import CollapseDetector
from dml.training.memory import CrossBatchMemory
from dml.training.precision import in_float32
from dml.training.resume import restore_rng_state, rng_state
from dml.training.selection import weights_epoch
from dml.training.split_metrics import parts_by_loader, split_metrics
from dml.training.weighted_loss import semi_supervised_loss
from dml.tuples import Mined, siamese_pairs

SNAPSHOT_SAMPLES = 5000
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class EmbeddingModule(pl.LightningModule):
    """Backbone, loss and miner come in by injection, already built from their configs.

    Every validation pass logs the retrieval metrics and the distance curves with an
    ``epoch`` key that counts completed training epochs, so the pass run before training
    is epoch 0 and curves from different runs line up on the same axis.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        miner: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        normalize: bool = True,
        k_values: Sequence[int] = (1, 2, 4, 8),
        run_config: dict[str, Any] | None = None,
        memory: CrossBatchMemory | None = None,
        gather: bool = True,
        eval_backend: str = "torch",
        verification: bool = False,
        verification_max_pairs: int = MAX_PAIRS,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.loss_fn = loss
        self.miner = miner
        self.memory = memory
        # Under DDP, the loss and miner see every process's batch (loss.gather).
        self.gather = gather
        self.optimizer_factory = optimizer or torch.optim.Adam
        self.scheduler_factory = scheduler
        self.normalize = normalize
        self.k_values = tuple(k_values)
        # Neighbour search of the retrieval metrics (eval.backend): torch or faiss.
        self.eval_backend = eval_backend
        self.run_config = run_config or {}
        self._eval_batches: list[tuple[Tensor, Tensor, Tensor | None, int]] = []
        self._epoch_sums = torch.zeros(5, dtype=torch.float64)
        # Siamese pair distances of the epoch: count, sum, sum of squares, similar then
        # dissimilar pairs.
        self._pair_sums = torch.zeros(2, 3, dtype=torch.float64)
        self._warned_empty = False
        self._last_train_loss: float | None = None
        # Embeddings kept for the run's pictures: "start" (epoch 0), "end" (latest
        # validation) and "test"; taken from the evaluation passes, so no extra pass.
        self.snapshots: dict[str, EmbeddingSnapshot] = {}
        # Verification metrics (eval.verification) and the data of the evaluation pictures.
        self.extras = EvaluationExtras(verification, verification_max_pairs)
        self.collapse = CollapseDetector(
            collapsed_loss=loss.collapsed_value if isinstance(loss, KnowsCollapsedValue) else None
        )
        # The training epoch (1-based, as metrics.csv rows) of the weights loaded from a
        # checkpoint; the test pass logs it as test/epoch. None: weights not from a file.
        self.weights_epoch: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.backbone(x))

    @in_float32
    def embed(self, raw: Tensor) -> Tensor:
        """Float32 whatever precision the backbone ran in (:mod:`dml.training.precision`)."""
        return F.normalize(raw, dim=1) if self.normalize else raw

    def completed_epochs(self) -> int:
        epoch = self.trainer.current_epoch
        fitting_now = (
            self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        )
        return epoch + 1 if fitting_now else epoch

    @in_float32
    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, mined: Mined | None = None
    ) -> tuple[Tensor, int, int]:
        """The loss with its tuple counts; PML losses (no ``compute``) count mined tuples.

        Tuples given as ``mined`` (a Siamese batch's pairs) are scored instead of mining.

        With a cross-batch memory the miner and loss also compare the batch with the stored
        embeddings; the batch is enqueued only after the loss, so it never meets itself.

        Under DDP (``loss.gather``, the default) the miner and loss see the batches of all
        processes, and the memory stores them; see :mod:`dml.training.distributed` for why the
        gradient then equals the one-process gradient on the concatenated batch. Given
        tuples index this process's batch, so they are scored on it alone.
        """
        gathered = self.gather and mined is None and world_size() > 1
        if gathered:
            embeddings, labels = gather_with_grad(embeddings), all_gather_cat(labels)
        if self.memory is None:
            if mined is None and self.miner is not None:
                mined = self.miner(embeddings, labels)
            if not isinstance(self.loss_fn, EmbeddingLoss):
                value = self.loss_fn(embeddings, labels, mined)
                count = len(mined[0]) if mined is not None else 0
                return value, count, count
            out = self.loss_fn.compute(embeddings, labels, mined)
            return out.loss, out.num_tuples, out.num_active
        refs = self.memory.references()
        if mined is None and self.miner is not None:
            mined = self.miner(embeddings, labels, refs)
        out = self.loss_fn.compute(embeddings, labels, mined, refs)
        if gathered:
            self.memory.enqueue(embeddings.detach(), labels)
        else:
            self.memory.enqueue(all_gather_cat(embeddings.detach()), all_gather_cat(labels))
        return out.loss, out.num_tuples, out.num_active

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """A batch is ``(x, labels)``, or ``(x, labels, weights)`` from a semi-supervised
        training split: labelled items weigh 1, pseudo-labelled ones ``semi.weight``.
        A :class:`PairBatch` (``dataset.pairs=true``) is scored pair by pair."""
        if isinstance(batch, PairBatch):
            return self.record_step(*self.pair_loss(batch))
        x, labels, *weights = batch
        raw = self.backbone(x)
        embeddings = self.embed(raw)
        if weights:
            loss, num_tuples, num_active = semi_supervised_loss(
                self.compute_loss, embeddings, labels, weights[0]
            )
        else:
            loss, num_tuples, num_active = self.compute_loss(embeddings, labels)
        return self.record_step(raw, loss, num_tuples, num_active)

    def pair_loss(self, batch: PairBatch) -> tuple[Tensor, Tensor, int, int]:
        """Both members of every pair go through the one backbone in one pass (shared
        weights, one set of batch statistics), and the loss scores exactly the stream's
        pairs (:func:`dml.tuples.siamese_pairs`). The labels it is given make a similar
        pair's members share a label and a dissimilar pair's differ, so they agree with
        the pairs for any loss that reads them."""
        count = len(batch.same)
        raw = self.backbone(joined(batch.first, batch.second))
        embeddings = self.embed(raw)
        same = batch.same.bool()
        index = torch.arange(count, device=same.device)
        labels = torch.cat([index, torch.where(same, index, index + count)])
        loss, num_tuples, num_active = self.compute_loss(embeddings, labels, siamese_pairs(same))
        distance = (embeddings[:count] - embeddings[count:]).detach().double().norm(dim=1)
        for row, members in enumerate((same, ~same)):
            values = distance[members]
            self._pair_sums[row] += torch.stack(
                [values.new_tensor(len(values)), values.sum(), (values * values).sum()]
            ).cpu()
        return raw, loss, num_tuples, num_active

    def record_step(self, raw: Tensor, loss: Tensor, num_tuples: int, num_active: int) -> Tensor:
        """Stop on a non-finite loss, warn once on an empty batch, add to the epoch's sums."""
        if not torch.isfinite(loss):
            raise DmlError(
                f"train/loss became {loss.item()} at epoch {self.trainer.current_epoch}, "
                f"step {self.global_step}; training stopped and checkpoints/last.ckpt keeps the "
                "last good epoch. Lower optimizer.lr or check the inputs for NaN/inf"
            )
        if num_tuples == 0 and not self._warned_empty:
            self._warned_empty = True
            rank_zero_warn(
                "the miner selected no tuples in a batch, so that step's loss is zero; "
                "if this repeats, loosen the miner's margin or raise data.samples_per_class"
            )
        norms = raw.detach().norm(dim=1).mean()
        step = torch.tensor([loss.item(), num_tuples, num_active, norms.item(), 1.0])
        self._epoch_sums += step.double()
        self.log("loss", loss.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's sums, and give the P×K sampler its epoch: Lightning only calls
        ``set_epoch`` on ``batch_sampler.sampler``, so without this every epoch would replay
        the same batches. A miner with a warm-up gets its epoch too."""
        self._epoch_sums.zero_()
        self._pair_sums.zero_()
        batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        for user in (batch_sampler, self.miner):
            if hasattr(user, "set_epoch"):
                user.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        sums = mean_over_processes(self._epoch_sums.to(self.device)).cpu()
        loss_sum, tuples, active, norm_sum, steps = sums.tolist()
        steps = max(steps, 1.0)
        self._last_train_loss = loss_sum / steps
        self.log_dict(
            {
                "train/loss": loss_sum / steps,
                "train/active_fraction": active / tuples if tuples else 0.0,
                "train/tuples_per_step": tuples / steps,
                "train/embedding_norm": norm_sum / steps,
                "epoch": float(self.completed_epochs()),
            }
        )
        if self._pair_sums[:, 0].sum() > 0:
            self.log_dict(self._pair_distance_curves())

    def _pair_distance_curves(self) -> dict[str, float]:
        """The epoch's mean (and std) distance of the similar and the dissimilar training
        pairs, the curves Hadsell et al. plot, next to ``val/dist_*`` of the labelled split."""
        curves = {}
        for row, kind in enumerate(("pos", "neg")):
            count, total, total_sq = self._pair_sums[row].tolist()
            mean = total / count if count else float("nan")
            spread = max(total_sq / count - mean * mean, 0.0) ** 0.5 if count else float("nan")
            curves[f"train/dist_{kind}_mean"] = mean
            curves[f"train/dist_{kind}_std"] = spread
        return curves

    def on_validation_epoch_start(self) -> None:
        self._eval_batches = []

    def on_test_epoch_start(self) -> None:
        self._eval_batches = []

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def _collect(self, batch: Sequence[Tensor], loader: int = 0) -> None:
        """Loader 0 is the evaluated set (or the queries); loader 1, if any, the gallery.

        A batch is ``(x, labels)``, or ``(x, labels, groups)`` when the evaluation
        excludes each query's own group (``eval.exclude_same_group``)."""
        x, labels, *groups = batch
        self._eval_batches.append((self(x).detach(), labels, groups[0] if groups else None, loader))

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val", clustering=False)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test", clustering=True)

    @in_float32
    def _log_evaluation(self, prefix: str, clustering: bool) -> None:
        parts = self._gather_parts(prefix, parts_by_loader(self._eval_batches))
        self._eval_batches = []
        metrics, embeddings, labels = split_metrics(
            parts, self.k_values, self.eval_backend, clustering
        )
        metrics.update(self.extras.update(prefix, parts))
        self._keep_snapshot(prefix, embeddings, labels)
        logged = {f"{prefix}/{key}": float(value) for key, value in metrics.items()}
        logged["epoch"] = float(self.completed_epochs())
        if prefix == "test" and self.weights_epoch is not None:
            logged["test/epoch"] = float(self.weights_epoch)
        if prefix == "val" and self.completed_epochs() > 0:
            self._check_collapse(metrics, embeddings, logged)
        self.log_dict(logged)

    def _gather_parts(self, prefix: str, parts: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Under DDP, every process's samples of each loader (a tuple of per-sample tensors,
        or None), once each, in dataset order: the metrics equal one process's."""
        if world_size() == 1:
            return parts
        loaders = self.trainer.val_dataloaders if prefix == "val" else self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, list) else [loaders]
        gathered = []
        for loader, part in zip(loaders, parts, strict=True):
            indices = loader_indices(loader, len(part[0])).to(part[0].device)
            _, *present = gather_unique(indices, *(t for t in part if t is not None))
            filled = iter(present)
            gathered.append(tuple(None if t is None else next(filled) for t in part))
        return gathered

    def _keep_snapshot(self, prefix: str, embeddings: Tensor, labels: Tensor) -> None:
        """A fixed random subset (same items every epoch), so start and end are comparable."""
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        keep = keep[:SNAPSHOT_SAMPLES].sort().values
        epoch = self.completed_epochs()
        snapshot = EmbeddingSnapshot(
            embeddings[keep.to(embeddings.device)].float().cpu().numpy(),
            labels[keep.to(labels.device)].cpu().numpy(),
            epoch,
            prefix,
        )
        key = "test" if prefix == "test" else ("start" if epoch == 0 else "end")
        self.snapshots[key] = snapshot

    def _check_collapse(self, metrics: dict, embeddings: Tensor, logged: dict[str, float]) -> None:
        """Warn once, in the console and in W&B (``health/collapse`` and a summary note)."""
        pos, neg = metrics["dist_pos_mean"], metrics["dist_neg_mean"]
        scale = float(embeddings.double().norm(dim=1).mean())
        warning = self.collapse.update(pos, neg, self._last_train_loss, scale)
        logged["health/collapse"] = float(self.collapse.warned)
        if warning is None:
            return
        rank_zero_warn(warning)
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "summary"):
                experiment.summary["health/warning"] = warning

    def configure_optimizers(self) -> Any:
        """Backbones with ``param_groups`` (e.g. a head at a higher learning rate than the
        trunk) shape their own groups; loss parameters (proxies) get theirs, at ``loss.lr``."""
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        if isinstance(self.backbone, HasParameterGroups) and base_lr is not None:
            groups: list[dict[str, Any]] = self.backbone.param_groups(base_lr)
        else:
            groups = [{"params": list(self.backbone.parameters())}]
        loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        if loss_params:
            group: dict[str, Any] = {"params": loss_params}
            if isinstance(self.loss_fn, HasOwnLearningRate) and self.loss_fn.lr is not None:
                group["lr"] = self.loss_fn.lr
            groups.append(group)
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dml_config"] = self.run_config
        checkpoint["dml_rng"] = rng_state()
        checkpoint["dml_health"] = self.collapse.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restoring the RNGs makes a resumed run draw what the uninterrupted one drew, and
        the collapse detector's streaks keep counting; testing a checkpoint (best.ckpt)
        changes neither, so the run's health stays the whole run's."""
        self.weights_epoch = weights_epoch(checkpoint)
        if self.trainer.state.fn != TrainerFn.FITTING:
            return
        if "dml_rng" in checkpoint:
            restore_rng_state(checkpoint["dml_rng"])
        if "dml_health" in checkpoint:
            self.collapse.load_state_dict(checkpoint["dml_health"])
