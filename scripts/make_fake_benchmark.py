"""Write a generated image benchmark in its real on-disk format, at its real size.

    python scripts/make_fake_benchmark.py --format cub200 --out data
    dml train dataset=cub200 dataset.data_dir=data/CUB_200_2011 ...

``--scale 1.0`` writes the real counts (CUB-200-2011: 11,788 JPEGs of 200 classes,
about 500×375); a smaller scale shrinks classes and images in proportion. The images are
seeded and class-dependent (see dml/datasets/fakes/images.py), so retrieval is learnable.
Prints a Markdown table of what was written and the `dml train` overrides that fit it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dml.datasets.fakes.benchmarks import FORMATS, make_benchmark
from dml.errors import DmlError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the tree into")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: the real counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        tree = make_benchmark(args.format, args.out, args.scale, args.seed, args.workers)
    except DmlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    size = sum(path.stat().st_size for path in tree.images) / 2**20
    print("| format | root | classes | images | MiB | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    print(
        f"| {args.format} | {tree.root} | {tree.num_classes} | {len(tree.images)} "
        f"| {size:.0f} | {seconds:.1f} |"
    )
    print()
    print("dml train " + " ".join(tree.overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
