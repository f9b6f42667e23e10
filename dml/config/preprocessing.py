"""The input preprocessing of a run's images, following its backbone.

``conf/dataset/transform/imagenet.yaml`` fills crop_size, resize_size, interpolation, mean
and std with ``${dml.model_input:KEY}``, resolved here from the run's backbone: timm's
data config for ``backbone=timm``, the ImageNet standard for the others. A key the user
sets replaces the interpolation, which is how the record below tells a value the model
chose from one the user chose. The run prints the record at start and keeps it in its
``.hydra/config.yaml``; ``dml export`` can read the same values from the transform
(:meth:`dml.transforms.ImageTransforms.preprocessing`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dml.backbones.timm_names import ModelInput, model_input
from dml.reporting.run_files import record_config
from dml.training.distributed import is_rank_zero
from dml.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

TIMM_BACKBONE = "dml.backbones.timm_backbone.TimmBackbone"
IMAGENET_INPUT = ModelInput(
    crop_size=224,
    crop_pct=0.875,
    interpolation="bilinear",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    source="the ImageNet standard",
)
KEYS = ("resize_size", "crop_size", "interpolation", "mean", "std")
RESOLVER = "dml.model_input"


def backbone_input(backbone: Any) -> ModelInput:
    """What the configured backbone expects of its input."""
    if backbone is not None and backbone.get("_target_") == TIMM_BACKBONE:
        return model_input(str(backbone.name), backbone.get("img_size"))
    return IMAGENET_INPUT


def model_input_value(key: str, transform: Any, root: Any) -> Any:
    """The value of ``${dml.model_input:KEY}`` in the transform node ``transform``."""
    model = backbone_input(root.get("backbone"))
    if key == "resize_size":
        return model.resize_size(int(transform.crop_size))
    if key in ("mean", "std"):
        return list(getattr(model, key))
    if key in ("crop_size", "interpolation"):
        return getattr(model, key)
    raise ValueError(f"${{{RESOLVER}:{key}}}: the key must be one of {', '.join(KEYS)}")


def resolved_preprocessing(cfg: DictConfig) -> dict[str, Any] | None:
    """The preprocessing values of the run's transform, which of them came from the model,
    and from where; None for a transform without them (small in-memory images)."""
    node = OmegaConf.select(cfg, "dataset.transform")
    if not isinstance(node, DictConfig) or not any(key in node for key in KEYS):
        return None
    raw = OmegaConf.to_container(node, resolve=False)
    resolved = OmegaConf.to_container(node, resolve=True)
    assert isinstance(raw, dict) and isinstance(resolved, dict)
    from_model = [key for key in KEYS if str(raw.get(key, "")).startswith(f"${{{RESOLVER}:")]
    return {
        "values": {key: resolved[key] for key in KEYS if key in resolved},
        "from_model": from_model,
        "source": backbone_input(cfg.get("backbone")).source,
    }


def describe(record: dict[str, Any]) -> str:
    """One line: what the evaluation transform does, and where its values came from."""
    values = record["values"]
    parts = []
    if "resize_size" in values:
        parts.append(f"resize {values['resize_size']}")
    if "crop_size" in values:
        parts.append(f"centre crop {values['crop_size']}")
    if "interpolation" in values:
        parts.append(str(values["interpolation"]))
    for key in ("mean", "std"):
        if key in values:
            parts.append(f"{key} ({', '.join(f'{v:.4g}' for v in values[key])})")
    chosen = set(values) - set(record["from_model"])
    origin = f"from {record['source']}" if record["from_model"] else "all set in the config"
    if record["from_model"] and chosen:
        origin += f"; set in the config: {', '.join(k for k in KEYS if k in chosen)}"
    return f"input preprocessing: {', '.join(parts)} ({origin})"


def pinned(cfg: DictConfig, record: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` whose transform holds the values themselves, not the resolver: the
    run's config as it ran, readable without dml."""
    result = copy.deepcopy(cfg)
    for key in record["from_model"]:
        OmegaConf.update(result, f"dataset.transform.{key}", record["values"][key], merge=False)
    return result


def announce(cfg: DictConfig, run_dir: Path) -> None:
    """Print the run's preprocessing in one line, and pin it in ``.hydra/config.yaml``."""
    record = resolved_preprocessing(cfg)
    if record is None or not is_rank_zero():
        return
    log.info(describe(record))
    if record["from_model"]:
        record_config(run_dir, pinned(cfg, record))
