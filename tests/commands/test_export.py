"""`dml export`: the ONNX (onnxruntime) and TorchScript (torch.jit.load) files give
`dml embed`'s embeddings of the test split, from the inputs docs/use_the_model.md says a
service feeds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from dml.commands.embed import embed
from dml.commands.export import export
from dml.config.build import build_datamodule
from dml.errors import DmlError
from dml.transforms import ImageTransforms
from tests.fixtures.checkpoints import untrained_checkpoint
from tests.fixtures.trees import SMALL, make_imagefolder


def exported_embeddings(
    compose_cfg: Callable[..., DictConfig], ckpt: Path, tmp_path: Path, inputs: np.ndarray
) -> dict[str, np.ndarray]:
    """Both formats' embeddings of ``inputs``, each through its own runtime."""
    onnx_file = export(
        compose_cfg(f"ckpt_path={ckpt}", f"out={tmp_path / 'm.onnx'}", config_name="export")
    )
    script_file = export(
        compose_cfg(
            f"ckpt_path={ckpt}",
            "format=torchscript",
            f"out={tmp_path / 'm.pt'}",
            config_name="export",
        )
    )
    onnx.checker.check_model(onnx.load(str(onnx_file)), full_check=True)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(script_file))
    return {
        "onnx": session.run(None, {"input": inputs})[0],
        "torchscript": scripted(torch.from_numpy(inputs)).detach().numpy(),
    }


def embed_test_split(compose_cfg: Callable[..., DictConfig], ckpt: Path, out: Path) -> np.ndarray:
    embed(compose_cfg(f"ckpt_path={ckpt}", f"out={out}", config_name="embed"))
    return np.load(out)["embeddings"]


def test_image_model_takes_plain_pixels_and_matches_dml_embed(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    tree = make_imagefolder(tmp_path, num_classes=4, per_class=5)
    cfg = compose_cfg(
        "dataset=imagefolder",
        f"dataset.data_dir={tree.root}",
        "backbone=convnet",
        *(f"dataset.transform.{key}={value}" for key, value in SMALL.items()),
    )
    ckpt = untrained_checkpoint(cfg, tmp_path / "run.ckpt", random_statistics=True)
    expected = embed_test_split(compose_cfg, ckpt, tmp_path / "test.npz")

    # What a service does: open the file, the documented preprocessing, the model.
    preprocess = ImageTransforms(**SMALL).pixel_transform()
    test = build_datamodule(cfg, training=False).splits.test
    pixels = torch.stack([preprocess(Image.open(path)) for path in test.paths]).numpy()
    got = exported_embeddings(compose_cfg, ckpt, tmp_path, pixels)
    for name, embeddings in got.items():
        assert embeddings.shape == expected.shape, name
        np.testing.assert_allclose(embeddings, expected, atol=1e-4, err_msg=name)
    assert np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)


def test_unnormalised_feature_model_matches_dml_embed(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg("dataset=digits", "backbone=mlp", "normalize_embeddings=false")
    ckpt = untrained_checkpoint(cfg, tmp_path / "run.ckpt", random_statistics=True)
    expected = embed_test_split(compose_cfg, ckpt, tmp_path / "test.npz")
    inputs = build_datamodule(cfg, training=False).splits.test.features.numpy()
    got = exported_embeddings(compose_cfg, ckpt, tmp_path, inputs)
    for name, embeddings in got.items():
        np.testing.assert_allclose(embeddings, expected, atol=1e-4, err_msg=name)
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-2)


def test_unknown_format_is_one_line(compose_cfg: Callable[..., DictConfig], tmp_path) -> None:
    with pytest.raises(DmlError, match="format='tflite' is not one of onnx, torchscript"):
        export(compose_cfg("ckpt_path=x.ckpt", "format=tflite", config_name="export"))
