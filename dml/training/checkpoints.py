"""Loading checkpoints safely: tensors and plain data only, with messages a user can act on."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dml.errors import DmlError

# The checkpoints a run directory holds, in the order they are offered.
OFFERED = ("best.ckpt", "last.ckpt")


def checkpoint_file(path: str | Path | None) -> Path:
    """The checkpoint file that ``ckpt_path`` names; a directory or a missing path is a
    one-line error that offers the checkpoints inside it (a run directory, or its
    ``checkpoints/`` folder)."""
    if path is None or str(path).strip() == "":
        raise DmlError(
            "ckpt_path is not set; pass ckpt_path=<run dir>/checkpoints/best.ckpt (or last.ckpt)"
        )
    path = Path(path)
    if path.is_dir():
        found = [
            folder / name
            for folder in (path / "checkpoints", path)
            for name in OFFERED
            if (folder / name).is_file()
        ]
        if not found:
            found = sorted(path.glob("*.ckpt")) + sorted(path.glob("checkpoints/*.ckpt"))
        if not found:
            raise DmlError(
                f"ckpt_path={path} is a directory with no checkpoint in it (no "
                "checkpoints/best.ckpt or checkpoints/last.ckpt); pass a .ckpt file"
            )
        offered = " or ".join(f"ckpt_path={file}" for file in found[:3])
        raise DmlError(f"ckpt_path={path} is a directory; pass a checkpoint file in it: {offered}")
    if not path.is_file():
        raise DmlError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/best.ckpt "
            "(or last.ckpt)"
        )
    return path


def load_checkpoint(path: str | Path | None) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a pickle carrying code is refused, not executed."""
    path = checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmlError(
            f"checkpoint {path} holds more than tensors and plain data, so it is refused "
            f"({first}); load only checkpoints written by dml"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise DmlError(
            f"checkpoint {path} is truncated or not a torch checkpoint ({type(exc).__name__}); "
            "use another checkpoint, e.g. checkpoints/best.ckpt"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DmlError(f"checkpoint {path} has no state_dict; it was not written by dml train")
    if "dml_config" not in checkpoint:
        raise DmlError(f"checkpoint {path} carries no dml config; it was not written by dml train")
    return checkpoint


def load_weights(module: nn.Module, state_dict: dict[str, Any], path: str | Path) -> None:
    """Load weights strictly; a mismatch names the keys, not a torch traceback."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(
        key for key in set(own) & set(state_dict) if own[key].shape != state_dict[key].shape
    )
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape differs", wrong_shape),
        ):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}")
        raise DmlError(
            f"checkpoint {path} does not fit the configured model ({'; '.join(parts)}); "
            "evaluate with the backbone the checkpoint was trained with"
        )
    module.load_state_dict(state_dict)
