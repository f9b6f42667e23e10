"""backbone=hf_text: a transformers encoder from a folder (or, offline, one line naming the
missing file), pooled over its tokens, under dml's head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dml.backbones.hf_text import HFTextBackbone
from dml.backbones.hf_text_files import load_tokenizer
from dml.datasets.tokens import TokenBatches
from dml.errors import DmlError
from tests.fixtures.text import make_tiny_encoder, text_table

TEXTS = ["onion garlic simmer", "mast keel harbour anchor tide hull rudder breeze jib"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny", list(text_table().text))


@pytest.fixture(scope="module")
def tokens(encoder: Path) -> TokenBatches:
    return TokenBatches(load_tokenizer(str(encoder)), max_length=32)


def test_pretrained_weights_come_from_the_folder_and_the_pooler_is_dropped(
    encoder: Path,
) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(encoder / "model.safetensors"))
    backbone = HFTextBackbone(str(encoder), embedding_dim=8)
    state = backbone.trunk.state_dict()
    assert backbone.trunk.pooler is None
    kept = [key for key in saved if not key.startswith("pooler.")]
    assert kept and all(torch.equal(state[key], saved[key]) for key in kept)
    scratch = HFTextBackbone(str(encoder), embedding_dim=8, pretrained=False)
    weights = "embeddings.word_embeddings.weight"
    assert not torch.equal(scratch.trunk.state_dict()[weights], saved[weights])
    assert next(scratch.parameters()).dtype == torch.float32


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_a_texts_embedding(
    encoder: Path, tokens: TokenBatches, pooling: str
) -> None:
    backbone = HFTextBackbone(str(encoder), embedding_dim=8, pooling=pooling).eval()
    with torch.no_grad():
        alone = backbone(tokens.tokens(TEXTS[:1]))
        padded = backbone(tokens.tokens(TEXTS))
    assert padded.shape == (2, 8)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_mean_pooling_is_the_mean_of_the_kept_token_states(
    encoder: Path, tokens: TokenBatches
) -> None:
    backbone = HFTextBackbone(str(encoder), embedding_dim=32, head="none").eval()
    batch = tokens.tokens(TEXTS)
    with torch.no_grad():
        states = backbone.trunk(**batch).last_hidden_state
        pooled = backbone(batch)
    for row, length in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
        assert torch.allclose(pooled[row], states[row, :length].mean(dim=0), atol=1e-5)


def test_heads_freezing_and_learning_rates(encoder: Path) -> None:
    mlp = HFTextBackbone(str(encoder), embedding_dim=8, head="mlp", head_hidden_dim=5)
    assert [layer.out_features for layer in mlp.head if hasattr(layer, "out_features")] == [5, 8]
    with pytest.raises(DmlError, match="backbone.head=none keeps the trunk's 32 features"):
        HFTextBackbone(str(encoder), embedding_dim=8, head="none")
    with pytest.raises(DmlError, match=r"backbone.pooling='max' is not one of mean, cls"):
        HFTextBackbone(str(encoder), pooling="max")
    probe = HFTextBackbone(
        str(encoder), embedding_dim=8, freeze_trunk=True, head_lr_multiplier=10.0
    ).train()
    assert not probe.trunk.training and probe.head.training
    assert not any(p.requires_grad for p in probe.trunk.parameters())
    groups = probe.param_groups(1e-3)
    assert [group["lr"] for group in groups] == pytest.approx([1e-2] * len(groups))
    assert sum(len(group["params"]) for group in groups) == 2
    full = HFTextBackbone(str(encoder), embedding_dim=8).param_groups(1e-3)
    decayed = [group for group in full if "weight_decay" not in group]
    assert decayed and all(p.ndim > 1 for group in decayed for p in group["params"])


def test_tensor_inputs_are_refused_in_one_line(encoder: Path) -> None:
    backbone = HFTextBackbone(str(encoder), embedding_dim=8)
    with pytest.raises(
        DmlError, match=r"the data give a tensor of shape \[4, 3\]; use dataset=text"
    ):
        backbone(torch.zeros(4, 3))


def test_a_hub_name_offline_names_the_missing_file_and_the_folder_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DmlError) as error:
        HFTextBackbone("someone/text-encoder")
    message = str(error.value)
    assert message.startswith(
        "the config of someone/text-encoder not found offline (HF_HUB_OFFLINE is set): "
        "config.json of the Hugging Face repository someone/text-encoder is not in the "
        f"cache {tmp_path / 'cache' / 'models--someone--text-encoder'}"
    )
    assert "backbone.name=/path/to/folder" in message and "\n" not in message
    with pytest.raises(DmlError, match="the tokenizer of someone/text-encoder not found offline"):
        load_tokenizer("someone/text-encoder")


def test_folders_that_do_not_hold_an_encoder(tmp_path: Path) -> None:
    with pytest.raises(DmlError, match=r"backbone.name=./nowhere: no such folder"):
        HFTextBackbone("./nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DmlError, match=r"empty: cannot read the config of .* from the folder"):
        HFTextBackbone(str(tmp_path / "empty"))
    seq2seq = tmp_path / "seq2seq"
    seq2seq.mkdir()
    (seq2seq / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    with pytest.raises(DmlError, match=r"but .*seq2seq is an encoder-decoder model \(t5\)"):
        HFTextBackbone(str(seq2seq), pretrained=False)
