"""A Hugging Face text model and its tokenizer, from a local folder or through the hub.

``backbone.name`` is a hub repository (``sentence-transformers/all-MiniLM-L6-v2``) or a
folder holding what ``save_pretrained`` (or ``hf download REPO --local-dir FOLDER``)
writes: config.json, the weights, and the tokenizer's files. transformers fetches a hub
model through the hub client into the Hugging Face cache on first use. Where no network
is, that client would retry for most of a minute; so a hub name is read from the cache
alone first, and only if a file is missing is the hub asked once, with a short timeout
(:func:`dml.backbones.downloads.offline_reason`). Without an answer the run stops at
start with one line naming the missing file, the cache folder, and the folder option.
``HF_HUB_OFFLINE=1`` skips the question.

The model and the tokenizer share the name, so the dataset's tokenizer
(``dataset.tokenizer: ${backbone.name}``) and the backbone load through the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from dml.backbones.downloads import HubFile, cached_hub_file, hub_cache_folder, offline_reason
from dml.errors import DmlError

T = TypeVar("T")

FOLDER_OPTION = (
    "or set backbone.name=/path/to/folder (a folder with the model's config.json, weights "
    "and tokenizer files, as save_pretrained or `hf download REPO --local-dir FOLDER` "
    "writes them)"
)
SCRATCH = "backbone.pretrained=false"
CONFIG_FILES = (("config.json",),)
WEIGHT_FILES = (
    (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ),
)
TOKENIZER_FILES = (
    ("tokenizer_config.json",),
    ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"),
)


def local_folder(name: str) -> Path | None:
    """The folder ``name`` names, or None for a hub repository name; a path to nothing is
    an error rather than a hub name that cannot exist."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        raise DmlError(
            f"backbone.name={name}: no such folder ({path.resolve()}); give a Hugging Face "
            "model name (e.g. sentence-transformers/all-MiniLM-L6-v2) or a folder with the "
            "model's files"
        )
    return None


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No progress bar for reading files that are already here (transformers draws one
    per load); downloads keep the hub client's own bars."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def missing_hub_file(name: str, needed: tuple[tuple[str, ...], ...]) -> str:
    """The first of ``needed`` (each a file and its alternatives) absent from the cache."""
    for alternatives in needed:
        if cached_hub_file(HubFile(name, alternatives)) is None:
            return alternatives[0]
    return "one of its files"


def load_named(
    load: Callable[..., T],
    name: str,
    what: str,
    needed: tuple[tuple[str, ...], ...],
    weights: bool = False,
) -> T:
    """``load(name_or_folder, local_files_only=...)`` (a transformers ``from_pretrained``)
    under the rules above; ``what`` names the thing for the messages, ``needed`` the
    files it reads (to name the one missing offline), and ``weights`` says that training
    from scratch would do without them."""
    folder = local_folder(name)
    if folder is not None:
        try:
            with quiet_loading():
                return load(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DmlError(
                f"backbone.name={name}: cannot read {what} from the folder: {first_line(exc)}"
            ) from None
    try:
        with quiet_loading():
            return load(name, local_files_only=True)
    except OSError:
        pass  # not (wholly) in the cache
    except ValueError as exc:
        raise DmlError(f"{what} in the cache cannot be read: {first_line(exc)}") from None
    from huggingface_hub import constants

    reason = offline_reason(constants.ENDPOINT)
    if reason is not None:
        missing = missing_hub_file(name, needed)
        scratch = f", or {SCRATCH} to train from scratch" if weights else ""
        raise DmlError(
            f"{what} not found offline ({reason}): {missing} of the Hugging Face repository "
            f"{name} is not in the cache {hub_cache_folder(name)}; run once where there is "
            f"a network (or `hf download {name}`) and copy the cache folder here, "
            f"{FOLDER_OPTION}{scratch}"
        )
    try:
        return load(name)
    except Exception as exc:  # the hub client fails with HTTP, OS and its own errors
        raise DmlError(
            f"loading {what} from the Hugging Face hub failed: {type(exc).__name__}: "
            f"{first_line(exc)}; check backbone.name, {FOLDER_OPTION}"
        ) from None


def load_encoder(name: str, pretrained: bool) -> Any:
    """The transformers model of ``name`` in float32: with its pretrained weights, or
    initialised at random from its config.json (the checkpoint's weights follow)."""
    from transformers import AutoConfig, AutoModel

    config = load_named(AutoConfig.from_pretrained, name, f"the config of {name}", CONFIG_FILES)
    if getattr(config, "is_encoder_decoder", False):
        raise DmlError(
            f"backbone=hf_text takes an encoder (BERT, RoBERTa, MiniLM, MPNet, E5, BGE, ...), "
            f"but {name} is an encoder-decoder model ({config.model_type})"
        )
    if not pretrained:
        return AutoModel.from_config(config, dtype=torch.float32)

    def from_pretrained(source: str, **options: Any) -> Any:
        return AutoModel.from_pretrained(source, config=config, dtype=torch.float32, **options)

    what = f"pretrained weights of {name}"
    return load_named(from_pretrained, name, what, WEIGHT_FILES, weights=True)


def load_tokenizer(name: str) -> Any:
    """The tokenizer saved with the model ``name`` (transformers' AutoTokenizer)."""
    from transformers import AutoTokenizer

    return load_named(
        AutoTokenizer.from_pretrained, name, f"the tokenizer of {name}", TOKENIZER_FILES
    )
