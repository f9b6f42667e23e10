"""The user's path with texts, through the `dml` command from an empty folder: a table of
generated sentences whose topic is the label, a tiny encoder saved to a folder, and then
train, eval, embed, search (a query given as text) and export (ONNX on the tokenizer's
output, checked with onnxruntime against dml embed). Nothing downloads."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tests.commands.test_cli import dml
from tests.fixtures.text import TOPICS, make_tiny_encoder, text_table

START_LIMIT_S = 30


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder with texts.csv (6 topics × 20 sentences) and the encoder in tiny/."""
    root = tmp_path_factory.mktemp("text_project")
    table = text_table(per_class=20)
    table.to_csv(root / "texts.csv", index=False)
    make_tiny_encoder(root / "tiny", list(table.text))
    return root


def test_texts_train_evaluate_embed_search_and_export_through_dml(project: Path) -> None:
    train = dml(
        "train",
        "dataset=text",
        "dataset.path=texts.csv",
        "dataset.val_fraction=0.2",
        "backbone=hf_text",
        "backbone.name=tiny",
        "backbone.embedding_dim=16",
        "trainer.max_epochs=4",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "data.batch_size=24",
        "data.samples_per_class=4",
        "hydra.run.dir=run",
        cwd=project,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    run = project / "run"
    history = list(csv.DictReader((run / "metrics.csv").open()))
    start, end = float(history[0]["val/map_at_r"]), float(history[-1]["val/map_at_r"])
    # The topics are learnt: from a random encoder's ~0.2 to ~0.8 in four short epochs.
    assert end > start + 0.3, (start, end)
    final = json.loads((run / "metrics.json").read_text())
    assert final["test/map_at_r"] > 0.6
    # Token ids are no vectors: no raw-input baseline is measured or compared against.
    assert not any(key.startswith("test/raw_") for key in final)
    assert "below_raw" not in " ".join(final)

    ckpt = str(run / "checkpoints" / "best.ckpt")
    evaluated = dml("eval", f"ckpt_path={ckpt}", "logger=none", "hydra.run.dir=eval", cwd=project)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((project / "eval" / "metrics.json").read_text())
    assert again["test/map_at_r"] == pytest.approx(final["test/map_at_r"], abs=1e-6)

    embedded = dml("embed", f"ckpt_path={ckpt}", "out=test.npz", "logger=none", cwd=project)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    stored = np.load(project / "test.npz")
    texts = [str(t) for t in stored["texts"]]
    assert stored["embeddings"].shape == (len(texts), 16)
    assert [str(n) for n in stored["class_names"]] == sorted(TOPICS)

    query = texts[3]
    found = dml("search", f"ckpt_path={ckpt}", f"query={query}", "k=3", "logger=none", cwd=project)
    assert found.returncode == 0, found.stderr[-3000:]
    # Rank 1 is the query's own text, test #3 (wrapped in the table), at distance 0.
    assert re.search(r"│\s+1 │ test #3: .*│\s+0\.0000 │", found.stdout), found.stdout

    exported = dml(
        "export", f"ckpt_path={ckpt}", "format=onnx", "out=model.onnx", "logger=none", cwd=project
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(project / "model_tokenizer"))
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    session = onnxruntime.InferenceSession(
        str(project / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    served = session.run(
        None,
        {
            "input_ids": tokens["input_ids"].astype(np.int64),
            "attention_mask": tokens["attention_mask"].astype(np.int64),
        },
    )[0]
    np.testing.assert_allclose(served, stored["embeddings"], atol=1e-4)


def test_a_hub_model_offline_stops_at_start_in_one_line(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    start = time.monotonic()
    result = dml(
        "train",
        "dataset=text",
        f"dataset.path={project / 'texts.csv'}",
        "backbone=hf_text",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    seconds = time.monotonic() - start
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    assert lines[0].startswith(
        f"error: the config of {repo} not found offline (HF_HUB_OFFLINE is set): config.json "
        f"of the Hugging Face repository {repo} is not in the cache "
        f"{tmp_path / 'hf-cache' / 'models--sentence-transformers--all-MiniLM-L6-v2'}"
    )
    assert "or set backbone.name=/path/to/folder" in lines[0]
    assert seconds < START_LIMIT_S, f"{seconds:.1f} s"
    assert not (tmp_path / "run").exists()
