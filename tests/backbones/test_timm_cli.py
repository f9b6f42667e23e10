"""The user's path through the `dml` command: timm models by name train on an image
folder, print and keep their preprocessing; missing pretrained weights fail at start, in
one line, within 30 seconds, with no network."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.commands.test_cli import dml
from tests.fixtures.trees import Tree, make_imagefolder

TINY_RUN = [
    "dataset=imagefolder",
    "backbone=timm",
    "backbone.pretrained=false",
    "backbone.img_size=32",
    "backbone.embedding_dim=16",
    "trainer=debug",
    "logger=none",
    "data.batch_size=6",
    "data.samples_per_class=2",
    "data.eval_batch_size=12",
]
# A ViT, a ConvNeXt and a CLIP ViT, each the smallest of its kind in timm.
MODELS = {
    "vit_tiny_patch16_224": [0.5, 0.5, 0.5],
    "convnext_atto": [0.485, 0.456, 0.406],
    "vit_xsmall_patch16_clip_224.tinyclip_yfcc15m": [0.48145466, 0.4578275, 0.40821073],
}
START_LIMIT_S = 30


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_imagefolder(tmp_path_factory.mktemp("images"))


def timed_dml(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = dml(*args, cwd=cwd, timeout=600)
    return result, time.monotonic() - start


def test_timm_models_by_name_train_and_print_and_keep_their_preprocessing(
    images: Tree, tmp_path: Path
) -> None:
    result = dml(
        "train",
        "-m",
        f"dataset.data_dir={images.root}",
        *TINY_RUN,
        f"backbone.name={','.join(MODELS)}",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if "input preprocessing:" in line]
    assert len(printed) == len(MODELS)
    for job, (name, mean) in enumerate(MODELS.items()):
        run = tmp_path / "sweep" / str(job)
        assert (run / "metrics.json").is_file()
        kept = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        assert kept["backbone"]["name"] == name
        transform = kept["dataset"]["transform"]
        assert transform["mean"] == pytest.approx(mean)
        assert (transform["crop_size"], transform["interpolation"]) == (32, "bicubic")
        assert f"from timm's data config for {name} at backbone.img_size=32" in printed[job]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE=1", "host refuses"])
def test_missing_timm_weights_fail_at_start_in_one_line(
    images: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Offline by the hub's switch, or with the hub's endpoint at a port nothing listens
    on (the probe's path, which on a networked machine must not reach out either)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    if how == "host refuses":
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    result, seconds = timed_dml(
        "train",
        "dataset=imagefolder",
        f"dataset.data_dir={images.root}",
        "backbone=timm",
        "backbone.name=vit_tiny_patch16_224",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(
        "error: pretrained weights of timm's vit_tiny_patch16_224 not found offline"
    )
    assert str(tmp_path / "hf-cache" / "models--timm--vit_tiny_patch16_224") in lines[0]
    assert "backbone.weights=/path/to/file (.pth or .safetensors)" in lines[0]
    assert seconds < START_LIMIT_S, f"{seconds:.1f} s"
    assert not (tmp_path / "run").exists()


def test_missing_torchvision_weights_fail_at_start_in_one_line(
    images: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result, seconds = timed_dml(
        "train",
        "dataset=imagefolder",
        f"dataset.data_dir={images.root}",
        "backbone=resnet50",
        "backbone.weights=imagenet",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert lines[0].startswith(f"error: pretrained resnet50 weights not found at {folder}")
    assert seconds < START_LIMIT_S, f"{seconds:.1f} s"


def test_a_local_safetensors_file_trains_through_the_command(images: Tree, tmp_path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "my_vit.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224").state_dict(), str(weights))
    args = [a for a in TINY_RUN if a != "backbone.pretrained=false"]
    result = dml(
        "train",
        f"dataset.data_dir={images.root}",
        *args,
        "backbone.name=vit_tiny_patch16_224",
        f"backbone.weights={weights}",
        "hydra.run.dir=run",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
