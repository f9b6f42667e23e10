"""``dml export``: the trained embedding as one standalone file (ONNX or TorchScript).

The file holds everything between pixels and embedding: the dataset's channel
normalisation (mean/std, where its transform has one), the backbone, and the L2
normalisation when the run normalised its embeddings. A service then needs neither dml nor
the training config, only the documented preprocessing up to [0, 1] pixels, which
:func:`input_description` states and the command prints. A text model takes token ids,
with its tokenizer saved beside it (:mod:`dml.commands.export_text`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F

from dml.commands.evaluate import load_trained
from dml.commands.export_text import export_text
from dml.datasets.tokens import TokenBatches
from dml.datasets.user_files.query_files import is_picture_shape
from dml.errors import DmlError
from dml.transforms import ImageTransforms, NormalisesPixels, TransformPair, pixel_statistics

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_OPSET = 17


class StandaloneEmbedder(nn.Module):
    """Pixels (or features) in, embeddings out: normalisation, backbone, L2."""

    def __init__(self, backbone: nn.Module, mean: Tensor, std: Tensor, l2_normalise: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.l2_normalise = l2_normalise

    def forward(self, x: Tensor) -> Tensor:
        embeddings = self.backbone((x - self.mean) / self.std)
        return F.normalize(embeddings, dim=1) if self.l2_normalise else embeddings


def export(cfg: DictConfig) -> Path:
    """Write the model in ``cfg.format`` to ``cfg.out`` (default ``embedder.onnx|.pt``)."""
    if cfg.format not in FORMATS:
        raise DmlError(f"format={cfg.format!r} is not one of {', '.join(FORMATS)}")
    _, module, datamodule = load_trained(cfg)
    tokens = datamodule.source.collate_fn()
    if isinstance(tokens, TokenBatches):
        out = Path(str(cfg.out)) if cfg.out is not None else Path(f"embedder{FORMATS[cfg.format]}")
        return export_text(cfg.format, module, tokens, datamodule.splits.test, out)
    transform = datamodule.source.transform
    item_shape = tuple(datamodule.splits.test[0][0].shape)
    pictures = is_picture_shape(item_shape) and isinstance(transform, NormalisesPixels)
    if pictures:
        mean, std = pixel_statistics(transform, item_shape[0])
    else:
        mean, std = torch.zeros(()), torch.ones(())
    model = StandaloneEmbedder(module.backbone, mean, std, bool(module.normalize)).eval()
    out = Path(str(cfg.out)) if cfg.out is not None else Path(f"embedder{FORMATS[cfg.format]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *item_shape)
    try:
        with torch.no_grad():
            if cfg.format == "onnx":
                write_onnx(model, example, out)
            else:
                write_torchscript(model, example, out)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmlError(
            f"{type(module.backbone).__name__} could not be exported as {cfg.format}: {first}; "
            "try the other format"
        ) from None
    with torch.no_grad():
        dimension = model(example).shape[1]
    log.info(
        "wrote %s: input 'input' %s; output 'embeddings' float32 [N, %d]%s",
        out,
        input_description(transform, item_shape, pictures),
        dimension,
        ", L2-normalised" if module.normalize else "",
    )
    return out


def write_onnx(model: nn.Module, example: Tensor, out: Path) -> None:
    """Input ``input`` and output ``embeddings``, with a dynamic batch axis.

    torch's TorchScript-based exporter (``dynamo=False``) needs no package beyond torch;
    the torch.export-based one would add onnx and onnxscript to what `dml export` needs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=["input"],
            output_names=["embeddings"],
            dynamic_axes={"input": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def write_torchscript(model: nn.Module, example: Tensor, out: Path) -> None:
    """A traced module for ``torch.jit.load``. torch 2.14 marks TorchScript deprecated in
    favour of torch.export, but it remains the format that loads in plain PyTorch (and
    C++ libtorch) without the exporting code, which is what this file is for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated.*")
        torch.jit.save(torch.jit.trace(model, example), str(out))


def input_description(
    transform: TransformPair | None, item_shape: tuple[int, ...], pictures: bool
) -> str:
    """What a service must feed the exported model, exactly."""
    shape = f"float32 [N, {', '.join(str(s) for s in item_shape)}]"
    if isinstance(transform, ImageTransforms):
        return (
            f"{shape} RGB pixels in [0, 1]: convert to RGB, resize the shorter side to "
            f"{transform.resize_size} ({transform.interpolation}, antialiased), centre-crop "
            f"{transform.crop_size}×{transform.crop_size}, scale to [0, 1]; the mean/std "
            "normalisation is inside the model"
        )
    if pictures or is_picture_shape(item_shape):
        return f"{shape} pixels in [0, 1], as the dataset stores its images"
    return f"{shape}: the features as the dataset serves them"
