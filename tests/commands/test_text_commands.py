"""Text through dml's other paths, in process: queries from a .txt file or a list, an
embedded gallery listed by its texts, TorchScript export, Siamese pairs and pseudo-labels
on token batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from dml.commands.embed import embed
from dml.commands.export import export
from dml.commands.search import search
from dml.commands.train import train
from dml.errors import DmlError
from tests.fixtures.checkpoints import untrained_checkpoint
from tests.fixtures.text import make_tiny_encoder, text_table


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """texts.csv and the tiny encoder's folder."""
    root = tmp_path_factory.mktemp("text")
    table = text_table(per_class=12)
    table.to_csv(root / "texts.csv", index=False)
    return root / "texts.csv", make_tiny_encoder(root / "tiny", list(table.text))


def text_run(files: tuple[Path, Path], *overrides: str) -> list[str]:
    table, encoder = files
    return [
        "dataset=text",
        f"dataset.path={table}",
        "backbone=hf_text",
        f"backbone.name={encoder}",
        "backbone.embedding_dim=8",
        "logger=none",
        "data.batch_size=12",
        "data.samples_per_class=2",
        *overrides,
    ]


@pytest.fixture(scope="module")
def checkpoint(files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hydra import compose, initialize_config_module

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("train", overrides=text_run(files))
    return untrained_checkpoint(cfg, tmp_path_factory.mktemp("ckpt") / "text.ckpt")


def test_queries_from_a_text_file_or_a_list_find_themselves(
    compose_cfg: Callable[..., DictConfig], checkpoint: Path, tmp_path: Path, capsys
) -> None:
    gallery = tmp_path / "gallery.npz"
    embed(compose_cfg(f"ckpt_path={checkpoint}", f"out={gallery}", config_name="embed"))
    texts = [str(t) for t in np.load(gallery)["texts"]]
    (tmp_path / "queries.txt").write_text(f"{texts[2]}\n\n  {texts[5]}  \n")
    for query, choice in ((tmp_path / "queries.txt", "test"), (f"[{texts[2]},{texts[5]}]", None)):
        result = search(
            compose_cfg(
                f"ckpt_path={checkpoint}",
                f"query={query}",
                "k=2",
                f"gallery={gallery if choice is None else choice}",
                config_name="search",
            )
        )
        assert result.queries == [texts[2], texts[5]]
        assert result.indices[:, 0].tolist() == [2, 5]
        assert result.distances[:, 0] == pytest.approx([0.0, 0.0], abs=1e-3)
        assert result.picture is None
        listed = f"test #5: {texts[5]}" if choice == "test" else f"#5: {texts[5]}"
        assert result.names[1][0] == listed
    assert "test #5: " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("missing.txt", r"query=missing.txt does not exist; give a .txt file of one query"),
        ("'   '", r"query='   ' holds an empty text"),
    ],
)
def test_bad_text_queries_are_one_line(
    compose_cfg: Callable[..., DictConfig], checkpoint: Path, query: str, message: str
) -> None:
    cfg = compose_cfg(f"ckpt_path={checkpoint}", f"query={query}", config_name="search")
    with pytest.raises(DmlError, match=message):
        search(cfg)


def test_torchscript_export_matches_dml_embed(
    compose_cfg: Callable[..., DictConfig], checkpoint: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "text.pt"
    export(
        compose_cfg(
            f"ckpt_path={checkpoint}", "format=torchscript", f"out={out}", config_name="export"
        )
    )
    embed(compose_cfg(f"ckpt_path={checkpoint}", f"out={tmp_path / 'e.npz'}", config_name="embed"))
    stored = np.load(tmp_path / "e.npz")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "text_tokenizer"))
    tokens = tokenizer([str(t) for t in stored["texts"]], padding=True, return_tensors="pt")
    model = torch.jit.load(str(out))
    with torch.no_grad():
        served = model(tokens["input_ids"], tokens["attention_mask"]).numpy()
    np.testing.assert_allclose(served, stored["embeddings"], atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        (["dataset.pairs=true", "loss=contrastive", "miner=none"], "train/dist_pos_mean"),
        (
            ["dataset.labeled_fraction=0.5", "semi=pseudo_label", "semi.start_epoch=1"],
            "train/pseudo_label_accuracy",
        ),
    ],
    ids=["siamese_pairs", "pseudo_labels"],
)
def test_pairs_and_pseudo_labels_run_on_token_batches(
    compose_cfg: Callable[..., DictConfig],
    files: tuple[Path, Path],
    tmp_path: Path,
    overrides: list[str],
    logged: str,
) -> None:
    cfg = compose_cfg(*text_run(files, "trainer=debug", *overrides), "logger=csv")
    metrics = train(cfg, tmp_path / "run")
    assert np.isfinite(metrics["test/map_at_r"])
    assert logged in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
