"""``dml export`` of a text model: token ids in, embeddings out, and the tokenizer beside it.

The exported file takes what the model's tokenizer gives, ``input_ids`` and
``attention_mask`` (int64 [N, L], both axes dynamic), and holds the encoder, the pooling,
the head and the L2 normalisation. Tokenizing is string work that ONNX and TorchScript
graphs do not do, so the tokenizer is saved next to the file (``<name>_tokenizer/``,
loadable with transformers' ``AutoTokenizer`` or, without transformers, with the
``tokenizers`` library's ``Tokenizer.from_file(.../tokenizer.json)``), and the log line
states how to call it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dml.datasets.tokens import TextDataset, TokenBatches
from dml.errors import DmlError
from dml.training.module import EmbeddingModule

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUTS = ("input_ids", "attention_mask")


class TextEmbedder(nn.Module):
    """Token ids and attention mask in, embeddings out: backbone and L2."""

    def __init__(self, backbone: nn.Module, l2_normalise: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.l2_normalise = l2_normalise

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        embeddings = self.backbone({"input_ids": input_ids, "attention_mask": attention_mask})
        return F.normalize(embeddings, dim=1) if self.l2_normalise else embeddings


@contextmanager
def quiet_tracing() -> Iterator[None]:
    """Tracing reads every attribute of a transformers model, deprecated ones included, and
    the exporters warn of what cannot happen here (negative indices, Python control flow
    on shapes that the dynamic axes keep); the run's log keeps only dml's line."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*advanced indexing in opset.*")
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        transformers_logging.set_verbosity(level)


def export_text(
    form: str, module: EmbeddingModule, tokens: TokenBatches, examples: TextDataset, out: Path
) -> Path:
    """Write ``module`` as ``form`` (onnx or torchscript) to ``out``, traced on the tokens
    of two of ``examples``' texts, and its tokenizer to ``<out stem>_tokenizer/``."""
    model = TextEmbedder(module.backbone, bool(module.normalize)).eval()
    batch = tokens.tokens(examples.texts[:2])
    example = (batch["input_ids"], batch["attention_mask"])
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), quiet_tracing():
            if form == "onnx":
                axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
                torch.onnx.export(
                    model,
                    example,
                    str(out),
                    dynamo=False,
                    input_names=list(INPUTS),
                    output_names=["embeddings"],
                    dynamic_axes={**axes, "embeddings": {0: "batch"}},
                    opset_version=ONNX_OPSET,
                )
            else:
                torch.jit.save(torch.jit.trace(model, example), str(out))
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmlError(
            f"{type(module.backbone).__name__} could not be exported as {form}: {first}; "
            "try the other format"
        ) from None
    folder = out.parent / f"{out.stem}_tokenizer"
    tokens.tokenizer.save_pretrained(str(folder))
    with torch.no_grad():
        dimension = model(*example).shape[1]
    log.info(
        "wrote %s: inputs 'input_ids' and 'attention_mask', int64 [N, L], as the tokenizer "
        "saved in %s gives them (padding=True, truncation=True, max_length=%d, no "
        "token_type_ids); output 'embeddings' float32 [N, %d]%s",
        out,
        folder,
        tokens.max_length,
        dimension,
        ", L2-normalised" if module.normalize else "",
    )
    return out
