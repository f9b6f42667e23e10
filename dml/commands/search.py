"""``dml search``: the nearest gallery items of a user's queries, as a table and a picture.

The model and data come from the checkpoint, as for ``dml eval``. The gallery is a split
of the checkpoint's dataset (by default its gallery split where it has one, else its test
split; ``dataset=...`` overrides point at other data), or an ``.npz`` that ``dml embed``
wrote, so a large catalogue is embedded once and searched many times.

For text data (``dataset=text``) a query is text: ``query="some text"``, a list
``query=["first","second"]``, or a ``.txt`` file of one query per line; the gallery items
are listed by their texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from torch import Tensor

from dml.commands.embed import without_augmentation
from dml.commands.evaluate import load_trained
from dml.datasets.base import DataSplits
from dml.datasets.tokens import TextDataset, TokenBatches
from dml.datasets.user_files.query_files import (
    image_input,
    is_picture_shape,
    read_queries,
    text_queries,
)
from dml.errors import DmlError
from dml.metrics.topk import nearest_neighbours
from dml.reporting.figures import save_figure
from dml.reporting.retrieval_examples import item_pixels
from dml.reporting.retrieval_figure import Tile, retrieval_figure, tile_image
from dml.training.datamodule import EmbeddingDataModule
from dml.training.module import EmbeddingModule
from dml.transforms import to_pixels

log = logging.getLogger(__name__)

# Queries drawn in search.png; the table lists them all.
PICTURE_ROWS = 16


@dataclass
class Gallery:
    """What is searched: embeddings with labels, a name per item, and its picture
    ([C, H, W] pixels in [0, 1]) where the data are pictures."""

    embeddings: Tensor
    labels: np.ndarray
    names: list[str]
    picture: Callable[[int], np.ndarray | None] | None


@dataclass(frozen=True)
class SearchResult:
    """Per query (rows), its k nearest gallery items (columns), nearest first."""

    queries: list[str]
    indices: np.ndarray
    distances: np.ndarray
    names: list[list[str]]
    labels: np.ndarray
    picture: Path | None


def search(cfg: DictConfig) -> SearchResult:
    """Print one table per query and write ``cfg.out`` (a picture) for picture data."""
    _, module, datamodule = load_trained(cfg)
    module.eval()
    splits = datamodule.splits
    transform = datamodule.source.transform
    batches = datamodule.source.collate_fn()
    if isinstance(batches, TokenBatches):
        item_shape: tuple[int, ...] = ()
        queries = text_queries(cfg.query)
    else:
        batches = None
        item_shape = tuple(splits.test[0][0].shape)
        queries = read_queries(Path(str(cfg.query)), transform, item_shape)
    query_embeddings = embed_inputs(module, queries.inputs, datamodule.eval_batch_size, batches)
    gallery = load_gallery(cfg.gallery, module, datamodule, splits, transform, item_shape)
    found = nearest_neighbours(query_embeddings, gallery.embeddings, int(cfg.k))
    indices, distances = found.indices.numpy(), found.distances.numpy()
    names = [[gallery.names[i] for i in row] for row in indices]
    labels = gallery.labels[indices]
    # The picture first: output piped into `head` may end this process at the tables.
    picture = None
    if queries.pictures and gallery.picture is not None:
        rows = []
        for q in range(min(len(indices), PICTURE_ROWS)):
            query_pixels = to_pixels(queries.inputs[q], transform).numpy()
            row = [Tile(tile_image(query_pixels), f"query\n{short(queries.names[q])}")]
            for n, index in enumerate(indices[q]):
                known = queries.labels is not None
                correct = bool(labels[q, n] == queries.labels[q]) if known else None
                caption = f"{short(names[q][n])} label {labels[q, n]}\nd={distances[q, n]:.3f}"
                row.append(Tile(tile_image(gallery.picture(int(index))), caption, correct))
            rows.append(row)
        shown = f"{len(rows)} of {len(indices)} queries" if len(indices) > len(rows) else "queries"
        title = f"Nearest {indices.shape[1]} gallery items of the {shown}"
        picture = save_figure(retrieval_figure(rows, title), Path(str(cfg.out)))
    print_tables(queries.names, queries.labels, names, labels, distances)
    if picture is not None:
        log.info("wrote %s", picture)
    elif not queries.pictures:
        log.info("feature and text data have no pictures: the table above is the result")
    else:
        log.info("the gallery .npz lists no image paths, so no picture is drawn")
    return SearchResult(queries.names, indices, distances, names, labels, picture)


def embed_inputs(
    module: EmbeddingModule,
    inputs: Tensor | list[str],
    batch_size: int,
    tokens: TokenBatches | None = None,
) -> Tensor:
    """Inputs in batches; texts are tokenized by ``tokens``, as the data's own batches."""
    with torch.no_grad():
        chunks = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        return torch.cat(
            [module(tokens.tokens(chunk) if tokens is not None else chunk) for chunk in chunks]
        )


def load_gallery(
    choice: str | None,
    module: EmbeddingModule,
    datamodule: EmbeddingDataModule,
    splits: DataSplits,
    transform: object | None,
    item_shape: tuple[int, ...],
) -> Gallery:
    """``choice``: None (the data's gallery split, else test), a split name, or an .npz."""
    if choice is not None and str(choice).endswith(".npz"):
        return npz_gallery(Path(str(choice)), transform, item_shape)
    names = ["train", "val", "test"] + (["gallery"] if splits.gallery is not None else [])
    split = choice if choice is not None else ("gallery" if splits.gallery is not None else "test")
    if split not in names:
        raise DmlError(
            f"gallery={split!r} is not one of {', '.join(names)}, nor an .npz from dml embed"
        )
    dataset = without_augmentation(getattr(splits, split), splits)
    module.eval()
    with torch.no_grad():
        chunks = [module(x) for x, _ in datamodule.eval_loader(dataset)]
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        item_names = list(paths)
    elif isinstance(dataset, TextDataset):
        item_names = [f"{split} #{i}: {text}" for i, text in enumerate(dataset.texts)]
    else:
        item_names = [f"{split} #{i}" for i in range(len(dataset))]

    def picture(i: int) -> np.ndarray:
        return item_pixels(dataset, i, transform)

    shown = is_picture_shape(item_shape)
    embeddings = torch.cat(chunks)
    return Gallery(embeddings, dataset.labels.numpy(), item_names, picture if shown else None)


def npz_gallery(path: Path, transform: object | None, item_shape: tuple[int, ...]) -> Gallery:
    """Embeddings from ``dml embed``; pictures where the file lists image ``paths``."""
    if not path.is_file():
        raise DmlError(
            f"gallery={path} does not exist; write one with dml embed ckpt_path=... out={path}"
        )
    with np.load(path, allow_pickle=False) as stored:
        missing = {"embeddings", "labels"} - set(stored.files)
        if missing:
            raise DmlError(
                f"gallery={path} lacks {', '.join(sorted(missing))}; write it with dml embed"
            )
        embeddings = torch.as_tensor(stored["embeddings"], dtype=torch.float32)
        labels = stored["labels"]
        paths = [str(p) for p in stored["paths"]] if "paths" in stored else None
        ids = stored["ids"] if "ids" in stored else np.arange(len(labels))
        texts = [str(t) for t in stored["texts"]] if "texts" in stored else None
    if paths is not None:
        item_names = paths
    elif texts is not None:
        item_names = [f"#{i}: {text}" for i, text in zip(ids, texts, strict=True)]
    else:
        item_names = [f"#{i}" for i in ids]

    def picture(i: int) -> np.ndarray:
        x = image_input(Path(paths[i]), transform, item_shape)
        return to_pixels(x, transform).numpy()

    shown = paths is not None and is_picture_shape(item_shape)
    return Gallery(embeddings, labels, item_names, picture if shown else None)


def print_tables(
    queries: list[str],
    query_labels: np.ndarray | None,
    names: list[list[str]],
    labels: np.ndarray,
    distances: np.ndarray,
) -> None:
    console = Console()
    for q, query in enumerate(queries):
        known = query_labels is not None
        title = f"{query}" + (f" (label {query_labels[q]})" if known else "")
        table = Table(title=title)
        table.add_column("rank", justify="right")
        table.add_column("gallery item")
        table.add_column("label", justify="right")
        table.add_column("distance", justify="right")
        if known:
            table.add_column("same label")
        for n, name in enumerate(names[q]):
            cells = [str(n + 1), name, str(labels[q, n]), f"{distances[q, n]:.4f}"]
            if known:
                cells.append("yes" if labels[q, n] == query_labels[q] else "no")
            table.add_row(*cells)
        console.print(table)


def short(name: str, width: int = 22) -> str:
    """A file name that fits under a tile: its last characters."""
    name = Path(name).name if "/" in name else name
    return name if len(name) <= width else "…" + name[-(width - 1) :]
