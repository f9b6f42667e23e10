"""`dml search`: queries from files, galleries from splits or `dml embed` files, the table
and the picture, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from dml.commands.embed import embed
from dml.commands.search import search
from dml.config.build import build_datamodule
from dml.errors import DmlError
from tests.conftest import subprocess_env
from tests.fixtures.checkpoints import untrained_checkpoint
from tests.fixtures.trees import SMALL, make_imagefolder

DIGITS = ["dataset=digits", "backbone=convnet", "logger=none"]


@pytest.fixture
def digits_checkpoint(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> Path:
    return untrained_checkpoint(compose_cfg(*DIGITS), tmp_path / "digits.ckpt")


def test_image_queries_find_themselves_in_the_test_split(
    compose_cfg: Callable[..., DictConfig], digits_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """PNGs of three test digits: each one's nearest test item is itself, at ~0."""
    test = build_datamodule(compose_cfg(*DIGITS), training=False).splits.test
    chosen = [3, 40, 200]
    for i in chosen:
        pixels = (test.features[i, 0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"digit_{i:03d}.png")
    out = tmp_path / "search.png"
    result = search(
        compose_cfg(
            f"ckpt_path={digits_checkpoint}",
            f"query={tmp_path}",
            "k=4",
            f"out={out}",
            config_name="search",
        )
    )
    assert result.indices.shape == (3, 4)
    assert result.indices[:, 0].tolist() == chosen
    assert (result.distances[:, 0] < 1e-2).all()
    assert (np.diff(result.distances, axis=1) >= 0).all()
    assert result.labels[:, 0].tolist() == test.labels[chosen].tolist()
    assert result.picture == out and out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "digit_040.png" in printed and "test #40" in printed and "distance" in printed


def test_an_embed_file_is_searched_like_its_split(
    compose_cfg: Callable[..., DictConfig], digits_checkpoint: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "val.npz"
    embed(
        compose_cfg(
            f"ckpt_path={digits_checkpoint}", f"out={gallery}", "split=val", config_name="embed"
        )
    )
    val = build_datamodule(compose_cfg(*DIGITS), training=False).splits.val
    queries = tmp_path / "rows.npz"
    np.savez(queries, features=val.features[:5].numpy(), labels=val.labels[:5].numpy())
    common = [
        f"ckpt_path={digits_checkpoint}",
        f"query={queries}",
        "k=3",
        f"out={tmp_path / 's.png'}",
    ]
    from_file = search(compose_cfg(*common, f"gallery={gallery}", config_name="search"))
    from_split = search(compose_cfg(*common, "gallery=val", config_name="search"))
    assert from_file.indices.tolist() == from_split.indices.tolist()
    np.testing.assert_allclose(from_file.distances, from_split.distances, atol=1e-6)
    assert from_file.indices[:, 0].tolist() == list(range(5))
    assert from_file.names[0][0] == "#0"  # an embed file without paths: its ids
    assert from_file.picture is None  # no image paths in the file: table only


def test_folder_images_go_through_the_eval_transform(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    tree = make_imagefolder(tmp_path, num_classes=4, per_class=4)
    cfg = compose_cfg(
        "dataset=imagefolder",
        f"dataset.data_dir={tree.root}",
        "logger=none",
        *(f"dataset.transform.{key}={value}" for key, value in SMALL.items()),
    )
    ckpt = untrained_checkpoint(cfg, tmp_path / "folder.ckpt")
    query = tree.root / "class_003" / "img_2.jpg"
    result = search(
        compose_cfg(
            f"ckpt_path={ckpt}",
            f"query={query}",
            "k=2",
            f"out={tmp_path / 's.png'}",
            config_name="search",
        )
    )
    assert result.names[0][0] == str(query) and result.distances[0, 0] < 1e-5
    assert (tmp_path / "s.png").is_file()


def test_feature_data_print_the_table_only(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, capsys
) -> None:
    cfg = compose_cfg("dataset=synthetic", "backbone=mlp", "logger=none")
    ckpt = untrained_checkpoint(cfg, tmp_path / "features.ckpt")
    test = build_datamodule(cfg, training=False).splits.test
    rows = tmp_path / "rows.npy"
    np.save(rows, test.features[:2].numpy())
    out = tmp_path / "search.png"
    result = search(
        compose_cfg(f"ckpt_path={ckpt}", f"query={rows}", f"out={out}", config_name="search")
    )
    assert result.indices[:, 0].tolist() == [0, 1] and result.picture is None
    assert not out.exists()
    assert "rows.npy row 1" in capsys.readouterr().out

    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(DmlError, match="is an image, but the checkpoint's data are features"):
        search(compose_cfg(f"ckpt_path={ckpt}", f"query={image}", config_name="search"))
    with pytest.raises(DmlError, match="gallery='nope' is not one of train, val, test"):
        search(
            compose_cfg(f"ckpt_path={ckpt}", f"query={rows}", "gallery=nope", config_name="search")
        )
    np.save(rows, np.zeros((2, 5), np.float32))
    with pytest.raises(DmlError, match=r"rows of shape \[5\], but the model takes .* \[32\]"):
        search(compose_cfg(f"ckpt_path={ckpt}", f"query={rows}", config_name="search"))


def test_search_has_its_own_help_text() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("search", return_hydra_config=True)
    assert cfg.hydra.help.header.startswith("dml search:")
    # Its own keys (gallery, k, ...) are listed by `dml search --help` (test_messages.py).


def test_cli_search_fails_with_one_line(digits_checkpoint: Path, tmp_path: Path) -> None:
    missing = subprocess.run(
        [
            str(Path(sys.executable).parent / "dml"),
            "search",
            f"ckpt_path={digits_checkpoint}",
            "query=nowhere.png",
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "error: query=nowhere.png does not exist" in missing.stderr
