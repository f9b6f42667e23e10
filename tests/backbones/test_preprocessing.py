"""The transform follows the backbone: timm's data config for backbone=timm, the ImageNet
standard for the others, and a dataset.transform.* key the user sets wins."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from dml.config.build import build_source
from dml.config.checks import check_config
from dml.config.preprocessing import describe, pinned, resolved_preprocessing
from dml.errors import DmlError
from dml.transforms import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CLIP = "vit_xsmall_patch16_clip_224.tinyclip_yfcc15m"


@pytest.fixture
def image_cfg(compose_cfg: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    def compose(*overrides: str) -> DictConfig:
        return compose_cfg("dataset=imagefolder", *overrides)

    return compose


def transform(cfg: DictConfig) -> dict:
    node = OmegaConf.to_container(cfg.dataset.transform, resolve=True)
    assert isinstance(node, dict)
    return node


def test_a_clip_model_gets_clips_mean_and_std(image_cfg: Callable[..., DictConfig]) -> None:
    cfg = image_cfg("backbone=timm", f"backbone.name={CLIP}")
    values = transform(cfg)
    assert values["mean"] == pytest.approx(CLIP_MEAN) and values["std"] == pytest.approx(CLIP_STD)
    assert (values["crop_size"], values["resize_size"], values["interpolation"]) == (
        224,
        248,
        "bicubic",
    )
    assert list(cfg.dataset.input_shape) == [3, 224, 224]


def test_other_models_get_their_own_config(image_cfg: Callable[..., DictConfig]) -> None:
    dinov2 = transform(image_cfg("backbone=timm", "backbone.name=vit_base_patch14_dinov2.lvd142m"))
    assert (dinov2["crop_size"], dinov2["resize_size"]) == (518, 518)
    vit = transform(image_cfg("backbone=timm", "backbone.name=vit_tiny_patch16_224"))
    assert vit["mean"] == [0.5, 0.5, 0.5] and vit["std"] == [0.5, 0.5, 0.5]
    convnext = transform(image_cfg("backbone=timm", "backbone.name=convnext_tiny"))
    assert (convnext["crop_size"], convnext["resize_size"]) == (224, 235)


def test_other_backbones_keep_the_imagenet_standard(image_cfg: Callable[..., DictConfig]) -> None:
    values = transform(image_cfg("backbone=resnet50"))
    assert (values["crop_size"], values["resize_size"], values["interpolation"]) == (
        224,
        256,
        "bilinear",
    )
    assert values["mean"] == list(IMAGENET_MEAN) and values["std"] == list(IMAGENET_STD)


def test_keys_the_user_sets_win_and_resize_follows_the_crop(
    image_cfg: Callable[..., DictConfig],
) -> None:
    cfg = image_cfg(
        "backbone=timm",
        f"backbone.name={CLIP}",
        "dataset.transform.crop_size=288",
        "dataset.transform.mean=[0.5,0.5,0.5]",
    )
    values = transform(cfg)
    assert values["mean"] == [0.5, 0.5, 0.5] and values["std"] == pytest.approx(CLIP_STD)
    assert (values["crop_size"], values["resize_size"]) == (288, 320)  # 288 / 0.9
    record = resolved_preprocessing(cfg)
    assert record is not None
    assert record["from_model"] == ["resize_size", "interpolation", "std"]
    line = describe(record)
    assert line.startswith("input preprocessing: resize 320, centre crop 288, bicubic,")
    assert f"(from timm's data config for {CLIP}; set in the config: crop_size, mean)" in line


def test_backbone_img_size_sets_the_crop(image_cfg: Callable[..., DictConfig]) -> None:
    cfg = image_cfg("backbone=timm", "backbone.name=vit_tiny_patch16_224", "backbone.img_size=64")
    values = transform(cfg)
    assert (values["crop_size"], values["resize_size"]) == (64, 71)
    assert list(cfg.dataset.input_shape) == [3, 64, 64]
    record = resolved_preprocessing(cfg)
    assert record is not None and "at backbone.img_size=64" in describe(record)


def test_the_pinned_config_holds_values_not_the_resolver(
    image_cfg: Callable[..., DictConfig],
) -> None:
    cfg = image_cfg("backbone=timm", f"backbone.name={CLIP}")
    record = resolved_preprocessing(cfg)
    assert record is not None
    saved = OmegaConf.to_yaml(pinned(cfg, record))
    assert "dml.model_input" not in saved and "0.48145466" in saved
    assert "dml.model_input" in OmegaConf.to_yaml(cfg)  # the run's own config is untouched


def test_the_built_transform_resamples_as_configured(image_cfg: Callable[..., DictConfig]) -> None:
    cfg = image_cfg("backbone=timm", f"backbone.name={CLIP}", "dataset.data_dir=unused")
    built = build_source(cfg).transform
    assert built.preprocessing() == {
        "resize_size": 248,
        "crop_size": 224,
        "interpolation": "bicubic",
        "mean": pytest.approx(CLIP_MEAN),
        "std": pytest.approx(CLIP_STD),
    }
    resize = built.pixel_transform().transforms[0]
    assert resize.interpolation == INTERPOLATIONS["bicubic"]


def test_small_images_have_no_model_preprocessing(compose_cfg: Callable[..., DictConfig]) -> None:
    assert resolved_preprocessing(compose_cfg("dataset=mnist5k")) is None


def test_the_preprocessing_of_any_transform_for_export_metadata() -> None:
    from dml.transforms import ImageTransforms, SmallImageTransforms, preprocessing

    photo = ImageTransforms(crop_size=64, resize_size=72, interpolation="bicubic")
    assert preprocessing(photo) == {
        "resize_size": 72,
        "crop_size": 64,
        "interpolation": "bicubic",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    assert preprocessing(SmallImageTransforms(mean=[0.5], std=[0.25])) == {
        "mean": [0.5],
        "std": [0.25],
    }
    assert preprocessing(None) is None


def test_an_unknown_model_name_is_one_line_at_the_config_check(
    image_cfg: Callable[..., DictConfig],
) -> None:
    cfg = image_cfg("backbone=timm", "backbone.name=vit_smal_patch16_224.dino")
    with pytest.raises(DmlError) as info:
        check_config(cfg)
    message = str(info.value)
    assert message.startswith("backbone.name='vit_smal_patch16_224.dino' is not a timm model")
    assert "\n" not in message


def test_a_bad_interpolation_is_named() -> None:
    from dml.transforms import ImageTransforms

    with pytest.raises(DmlError, match="dataset.transform.interpolation='lanczos' is not one of"):
        ImageTransforms(interpolation="lanczos")
