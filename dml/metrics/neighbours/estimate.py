"""The time and memory of a large search, logged before it starts, so that a user who
asked for more than the machine gives sees it at once, not hours later."""

from __future__ import annotations

import logging

from dml.metrics.neighbours.problem import Problem

log = logging.getLogger(__name__)


def log_estimate(problem: Problem, backend: str, seconds: float, sizes: dict[str, float]) -> None:
    log.info(
        "Retrieval metrics for %d queries × %d references (dimension %d, %s): about %.0f s "
        "and %.0f MiB (%s).",
        len(problem.query),
        len(problem.reference),
        problem.query.shape[1],
        backend,
        seconds,
        sum(sizes.values()) / 2**20,
        ", ".join(f"{name} {size / 2**20:.0f}" for name, size in sizes.items()),
    )
