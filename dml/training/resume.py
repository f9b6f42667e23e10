"""Everything a killed run needs to continue exactly where it stopped.

Checkpoints are written through a temporary file and a rename, so a kill during a save
leaves the previous checkpoint intact. They carry the RNG states (Lightning restores
model, optimizer, scheduler and loop state itself; the P×K sampler is keyed by seed and
epoch), and the run directory remembers its W&B run id
(:func:`dml.reporting.run_files.saved_wandb_id`), so a resumed run logs into the same W&B
run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from pytorch_lightning.plugins import TorchCheckpointIO

from dml.errors import DmlError
from dml.training.checkpoints import checkpoint_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into ``<name>.tmp``, then ``os.replace``: never a half-written checkpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain lists, loadable with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path``, or with ``resume=true`` the run's last."""
    if cfg.get("ckpt_path"):
        return str(checkpoint_file(cfg.ckpt_path))
    if not cfg.get("resume", False):
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise DmlError(
            f"resume=true found no checkpoint at {last}; point hydra.run.dir at the run "
            "directory to resume, or pass ckpt_path=PATH"
        )
    return str(last)


def check_writable(run_dir: Path) -> None:
    """Fail at start, naming the path, when results could not be written later."""
    probe = run_dir / ".write_probe"
    try:
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise DmlError(
            f"cannot write to the run directory {run_dir} ({exc.strerror}); "
            "free space there or choose another with hydra.run.dir=PATH"
        ) from None
