"""Seeded stand-ins for benchmark photographs: real JPEG files whose content depends on
their class, cheap enough to write a hundred thousand of.

Nothing here is downloaded, so the image pipeline (decode, crop, batches, workers) and a
GPU check can run on files of the real number, format and size. Each class has a look of
its own: two colours blended by a stripe pattern with a class-specific orientation and
frequency. Each image varies it (stripe phase, a little orientation and frequency jitter,
brightness) and adds pixel noise, so that its JPEG is about as large, and as costly to
decode, as a photograph of its size, and retrieval is learnable but not trivial.

An image is a pure function of (seed, label, index, size): any subset can be rewritten,
in any order and in parallel, to the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# JPEG quality of the written files; photographs in the benchmarks are stored at
# similar settings, so decoding costs about the same.
JPEG_QUALITY = 90
# Per-pixel noise amplitude: gives the files a photograph's entropy (and file size).
NOISE = 24
# Below this many images a process pool costs more than it saves.
PARALLEL_FROM = 200


@dataclass(frozen=True)
class ImageJob:
    """One file to write: where, which class's look, which variation, how large."""

    path: Path
    label: int
    index: int
    width: int
    height: int


def render(label: int, index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """The (height, width, 3) uint8 picture of item ``index`` of class ``label``."""
    look = np.random.default_rng([seed, label])
    first, second = look.uniform(30, 225, size=(2, 3)).astype(np.float32)
    angle = look.uniform(0, math.pi)
    cycles = look.uniform(1.5, 10.0)
    item = np.random.default_rng([seed, label, index, 1])
    angle += item.normal(0, 0.12)
    cycles *= 1 + item.normal(0, 0.06)
    phase = item.uniform(0, 2 * math.pi)
    brightness = item.uniform(0.85, 1.15)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, height / width, height, dtype=np.float32)[:, None]
    stripes = x * math.cos(angle) + y * math.sin(angle)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * cycles * stripes + phase)
    picture = np.empty((height, width, 3), dtype=np.float32)
    # One channel at a time: numpy broadcasts over a last axis of 3 many times slower.
    for channel in range(3):
        low, high = first[channel] * brightness, second[channel] * brightness
        np.multiply(wave, high - low, out=picture[..., channel])
        picture[..., channel] += low
    picture += item.integers(-NOISE, NOISE + 1, size=picture.shape, dtype=np.int16)
    return np.clip(picture, 0, 255).astype(np.uint8)


def write_image(job: ImageJob, seed: int = 0) -> Path:
    """Render ``job`` and save it; the format follows the suffix (.jpg/.JPG, .png, ...)."""
    job.path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(render(job.label, job.index, job.width, job.height, seed))
    if job.path.suffix.lower() in (".jpg", ".jpeg"):
        picture.save(job.path, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(job.path)
    return job.path


def _write_chunk(chunk: Sequence[ImageJob], seed: int) -> int:
    for job in chunk:
        write_image(job, seed)
    return len(chunk)


def write_images(jobs: Sequence[ImageJob], seed: int = 0, workers: int | None = None) -> None:
    """Write every job, in parallel processes when there are many (``workers``: None uses
    every core this process may run on)."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers <= 1 or len(jobs) < PARALLEL_FROM:
        _write_chunk(jobs, seed)
        return
    size = max(1, math.ceil(len(jobs) / (workers * 8)))
    chunks = [jobs[start : start + size] for start in range(0, len(jobs), size)]
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(_write_chunk, chunks, [seed] * len(chunks)):
            pass


def jittered_size(
    base: tuple[int, int], jitter: float, rng: np.random.Generator
) -> tuple[int, int]:
    """``base`` (width, height) with each side scaled by up to ±``jitter``; at least 8 px."""
    if jitter == 0:
        return base
    width, height = (max(8, round(side * rng.uniform(1 - jitter, 1 + jitter))) for side in base)
    return width, height
