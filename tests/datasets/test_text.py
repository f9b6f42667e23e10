"""dataset=text: a table of texts read, checked and split by the rules of feature tables,
and tokenized in the loaders by the backbone's own tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from dml.config.build import build_datamodule, build_source
from dml.datasets.pairs import PairBatch
from dml.datasets.splitting import ClassFolds
from dml.datasets.tokens import TokenBatches
from dml.datasets.user_files.text_file import TextFile
from dml.errors import DmlError
from tests.fixtures.text import MAX_POSITIONS, TOPICS, make_tiny_encoder, text_table

PER_CLASS = 12


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = text_table(PER_CLASS)
    return make_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny", list(table.text))


def source(path: Path, encoder: Path, **settings: object) -> TextFile:
    return TextFile(path=str(path), tokenizer=str(encoder), **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_give_the_same_texts_labels_and_split(
    tmp_path: Path, encoder: Path, suffix: str
) -> None:
    table = text_table(PER_CLASS)
    path = tmp_path / f"texts{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    splits = source(path, encoder, split="samples").load()
    names = sorted(TOPICS)
    assert splits.train.class_names == names
    parts = (splits.train, splits.val, splits.test)
    seen = [
        (text, names[int(label)])
        for part in parts
        for text, label in zip(part.texts, part.labels, strict=True)
    ]
    assert sorted(seen) == sorted(zip(table.text, table.label, strict=True))
    text, label = splits.test[0]
    assert isinstance(text, str) and label.dtype == torch.long
    # split=samples: every class in val and test, with 2 or more texts each.
    for part in (splits.val, splits.test):
        counts = torch.unique(part.labels, return_counts=True)[1]
        assert len(counts) == len(TOPICS) and counts.min() >= 2


def test_the_files_split_column_and_class_folds_follow_the_feature_rules(
    tmp_path: Path, encoder: Path
) -> None:
    table = text_table(PER_CLASS)
    position = table.groupby("label").cumcount()
    table["split"] = ["test" if p >= 9 else "val" if p < 2 else "train" for p in position]
    table.to_csv(tmp_path / "s.csv", index=False)
    splits = source(tmp_path / "s.csv", encoder).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (42, 12, 18)

    table.drop(columns="split").to_csv(tmp_path / "c.csv", index=False)
    text_source = source(tmp_path / "c.csv", encoder, split="classes", train_classes=4)
    text_source.use_folds(ClassFolds(2, 1))
    splits = text_source.load()
    train, val = set(splits.train.labels.tolist()), set(splits.val.labels.tolist())
    assert len(train) == len(val) == 2 and not train & val
    assert train | val == {0, 1, 2, 3} and set(splits.test.labels.tolist()) == {4, 5}
    with pytest.raises(DmlError, match="class folds need dataset.split=classes"):
        source(tmp_path / "c.csv", encoder).use_folds(ClassFolds(2, 0))


def set_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table = table.astype({column: object})
        table.loc[row, column] = value
        return table

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.rename(columns={"text": "sentence"}),
            r"bad.csv has no column 'text' \(its columns: sentence, label\); name the "
            "column of texts 'text'",
        ),
        (
            lambda t: t.rename(columns={"label": "topic"}),
            r"bad.csv has no column 'label' \(its columns: text, topic\)",
        ),
        (
            set_cell("text", 6, "   "),
            r"bad.csv: column 'text', row 6 \(line 8\): the text is empty \(1 rows are\)",
        ),
        (
            set_cell("text", 4, None),
            r"bad.csv: column 'text', row 4 \(line 6\): the text is empty",
        ),
        (
            set_cell("label", 9, None),
            r"bad.csv: column 'label', row 9 \(line 11\): the label is empty",
        ),
        (
            lambda t: t.assign(split=["train"] * 3 + ["dev"] + ["train"] * (len(t) - 4)),
            r"bad.csv: column 'split', row 3 \(line 5\): split 'dev' is not one of train, val, "
            "test",
        ),
        (
            lambda t: pd.concat([t, pd.DataFrame({"text": ["a lone text"], "label": ["x"]})]),
            r"bad.csv: column 'label', row 72 \(line 74\): class 'x' has only this row",
        ),
    ],
)
def test_bad_cells_are_named_by_file_column_and_row(
    tmp_path: Path, encoder: Path, edit: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    path = tmp_path / "bad.csv"
    edit(text_table(PER_CLASS)).to_csv(path, index=False)
    with pytest.raises(DmlError, match=message):
        source(path, encoder).load()


def test_a_missing_or_wrong_file_is_one_line(tmp_path: Path, encoder: Path) -> None:
    with pytest.raises(DmlError, match=r"dataset.path is not set: dml train dataset=text"):
        TextFile(path=None, tokenizer=str(encoder)).load()
    with pytest.raises(DmlError, match=r"none.csv does not exist"):
        source(tmp_path / "none.csv", encoder).load()
    with pytest.raises(DmlError, match=r"texts.npz is not a text table; use a .csv or .parquet"):
        source(tmp_path / "texts.npz", encoder).load()


def test_config_wires_the_backbones_tokenizer_and_the_files_class_count(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, encoder: Path
) -> None:
    text_table(PER_CLASS).to_csv(tmp_path / "t.csv", index=False)
    cfg = compose_cfg(
        "dataset=text",
        f"dataset.path={tmp_path / 't.csv'}",
        "backbone=hf_text",
        f"backbone.name={encoder}",
    )
    assert cfg.dataset.tokenizer == str(encoder)
    assert cfg.dataset.num_classes == len(TOPICS)
    batches = build_source(cfg).collate_fn()
    assert isinstance(batches, TokenBatches)
    # max_length=null: 128, or the model's limit where lower (the tiny model's 64).
    assert batches.max_length == MAX_POSITIONS
    cfg = compose_cfg("dataset=text", f"dataset.path={tmp_path / 't.csv'}", "backbone=mlp")
    assert cfg.dataset.tokenizer is None
    with pytest.raises(DmlError, match="dataset=text is tokenized by the backbone's own"):
        build_source(cfg).load()


def test_batches_are_token_ids_padded_to_their_longest_text(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, encoder: Path
) -> None:
    text_table(PER_CLASS).to_csv(tmp_path / "t.csv", index=False)
    cfg = compose_cfg(
        "dataset=text",
        f"dataset.path={tmp_path / 't.csv'}",
        "backbone=hf_text",
        f"backbone.name={encoder}",
        "data.batch_size=12",
        "data.samples_per_class=4",
    )
    data = build_datamodule(cfg)
    data.setup("fit")
    tokens, labels = next(iter(data.train_dataloader()))
    assert set(tokens) == {"input_ids", "attention_mask"} and labels.shape == (12,)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert ids.dtype == mask.dtype == torch.long and ids.shape == mask.shape
    lengths = mask.sum(dim=1)
    assert lengths.max() == ids.shape[1]  # padded to the longest, not to max_length
    # Right padding: the kept tokens come first, [CLS] leads every text.
    assert torch.equal(mask, (torch.arange(ids.shape[1]) < lengths[:, None]).long())
    assert (ids[:, 0] == ids[0, 0]).all()


def test_truncation_and_pairs_share_one_length(encoder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    batches = TokenBatches(tokenizer, max_length=5)
    tokens = batches.tokens(["onion garlic simmer oven butter flour", "mast"])
    assert tokens["input_ids"].shape == (2, 5)
    assert tokens["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    pair = PairBatch("onion garlic", "mast keel hull tide", torch.tensor(0))
    pairs = TokenBatches(tokenizer, max_length=16)([pair] * 3)
    assert isinstance(pairs, PairBatch) and pairs.same.shape == (3,)
    assert pairs.first["input_ids"].shape == pairs.second["input_ids"].shape == (3, 6)
    with pytest.raises(DmlError, match=r"dataset.max_length=65 exceeds the 64 tokens"):
        TokenBatches(tokenizer, max_length=65)
    with pytest.raises(DmlError, match=r"dataset.max_length=1 must be an integer of at least 2"):
        TokenBatches(tokenizer, max_length=1)
