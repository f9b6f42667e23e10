"""Write query images for `dml search`: one validation digit of mnist5k per class, as PNG.

The README's search picture comes from these commands:

    dml train eval.verification=true logger=none hydra.run.dir=outputs/readme_mnist5k
    python scripts/make_search_queries.py --out queries
    dml search ckpt_path=outputs/readme_mnist5k/checkpoints/best.ckpt query=queries k=8 \\
        out=docs/images/search.png

The validation split is never searched (the gallery is the test split), so the queries
are images the model did not train on and that are not in the gallery.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module
from PIL import Image

from dml.config.build import build_datamodule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("queries"))
    parser.add_argument("--classes", type=int, default=7, help="digits 0 … N−1")
    args = parser.parse_args()

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("train", overrides=["logger=none"])
    val = build_datamodule(cfg, training=False).splits.val
    args.out.mkdir(parents=True, exist_ok=True)
    for digit in range(args.classes):
        index = int((val.labels == digit).nonzero()[0])
        pixels = val.features[index].reshape(28, 28).numpy()
        path = args.out / f"digit_{digit}.png"
        Image.fromarray((pixels * 255).clip(0, 255).astype(np.uint8)).save(path)
        print(f"{path}: validation item {index}")


if __name__ == "__main__":
    main()
