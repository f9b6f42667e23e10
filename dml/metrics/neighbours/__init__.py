"""Exact ranked neighbours for retrieval metrics, in bounded memory and without a full sort.

What the metrics need from each query is short: whether each of its ``depth`` nearest
references (``depth`` = max(R, largest k)) shares its label, in the order of exact squared
Euclidean distance, equal distances broken by reference index. The search is three steps,
each in its own module:

1. candidates (tiled.py and symmetric.py, or faiss_search.py): for a block of queries,
   every reference whose float32 distance lies within the query's limit. Float32 and a
   matrix product, because that is where the time goes (N²·d multiply-adds); a limit
   instead of a top-k, because a comparison costs a tenth of what selecting does
   (collect.py);
2. ranking (ranking.py): one sort of the block's candidates, then a check that each limit
   reached far enough; a query whose limit fell short goes back to step 1 for an exact
   pass, so the answer never depends on how the limits were guessed;
3. near ties (nearties.py, bound.py): float32 rounding can swap references whose
   distances differ by less than a rigorous bound on its error. Where such a swap would
   change a label sequence, those references are re-scored in float64, so the metrics
   equal a float64 brute-force ranking rather than float32 luck.

Both backends search a copy of the embeddings scaled by a power of two where their norms
would overflow or underflow float32 (scaling.py); the float64 step reads them as given.

Memory stays bounded: tiles of distances, candidate lists of about 1.5·depth per query,
whole rows of distances only for the few queries of an exact pass. Everything is torch on
the embeddings' device; faiss is CPU-only and its results are moved back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from dml.errors import DmlError
from dml.metrics.neighbours.estimate import log_estimate
from dml.metrics.neighbours.problem import Problem, RankedBlock
from dml.metrics.neighbours.ranking import rank
from dml.metrics.neighbours.scaling import for_search
from dml.metrics.neighbours.tiled import TiledSearch, tile_size

__all__ = ["BACKENDS", "Problem", "RankedBlock", "check_backend", "ranked_matches"]

log = logging.getLogger(__name__)

BACKENDS = ("torch", "faiss")
# From this many distances on (10k × 10k), an evaluation logs its time and memory first.
LOG_ABOVE_PAIRS = 10**8


def check_backend(backend: str, setting: str = "backend") -> None:
    """Fail before any work on a backend that cannot run here; ``setting`` is the name the
    user knows it by (``eval.backend`` in a config)."""
    if backend not in BACKENDS:
        raise DmlError(f"{setting}={backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise DmlError(
                f"{setting}=faiss needs the faiss package, which is not installed: "
                "pip install faiss-cpu (or use torch, which gives the same numbers)"
            ) from None


def ranked_matches(problem: Problem, backend: str, tile: int | None) -> Iterator[RankedBlock]:
    """Ranked label matches of every query with depth > 0, block by block.

    ``tile`` sets the width of the torch backend's distance tiles (rounded up to a power
    of two), which only changes speed and memory."""
    check_backend(backend)
    tile_size(tile, problem.query.device, 1)
    return _ranked(problem, backend, tile)


def _ranked(problem: Problem, backend: str, tile: int | None) -> Iterator[RankedBlock]:
    searched = for_search(problem)
    if backend == "faiss":
        from dml.metrics.neighbours.faiss_search import FaissSearch

        search: TiledSearch | FaissSearch = FaissSearch(searched)
    else:
        search = TiledSearch(searched, tile)
    rows = (problem.depth > 0).nonzero().squeeze(1)
    if len(rows) * len(problem.reference) >= LOG_ABOVE_PAIRS:
        log_estimate(problem, backend, *search.estimate(rows))
    attempt = 0
    while len(rows):
        missed = [rows[:0]]
        for candidates in search.candidates(rows, attempt):
            ranked, incomplete = rank(problem, candidates, search.margin)
            if ranked is not None:
                yield ranked
            missed.append(incomplete)
        rows = torch.cat(missed)
        if len(rows):
            log.debug("%d queries searched again (attempt %d).", len(rows), attempt + 1)
        attempt += 1
