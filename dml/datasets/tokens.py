"""Texts as dataset items, and their tokenization into batches: the text data pipeline.

A text item is ``(text, label)``: the string itself, so that ``dml embed`` and ``dml
search`` can show it. Tokenizing happens when items become a batch (:class:`TokenBatches`,
the loaders' ``collate_fn``), once per batch with the model's own fast tokenizer, padded to
the batch's longest text (at most ``dataset.max_length`` tokens), not to a fixed length
that the encoder would spend its attention on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from dml.datasets.base import LabeledDataset
from dml.errors import DmlError

#: Tokens per text where dataset.max_length is null, or the model's own limit if lower.
DEFAULT_MAX_LENGTH = 128


class TextDataset(LabeledDataset):
    """Texts with integer labels (and group ids where the file has them)."""

    def __init__(self, texts: Sequence[str], labels: Tensor, groups: Tensor | None = None) -> None:
        if len(texts) != len(labels):
            raise DmlError(f"{len(texts)} texts but {len(labels)} labels; they must match")
        self.texts = list(texts)
        self.labels = labels.long()
        self.groups = groups.long() if groups is not None else None

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        return self.texts[index], self.labels[index]


class TokenBatches:
    """``collate_fn`` for text items: every field of the items that holds texts becomes
    ``{"input_ids", "attention_mask"}`` (int64 [N, L]), the other fields are stacked as
    torch does. The texts of all such fields are tokenized in one call, so that a Siamese
    pair's two members share one length and pass the backbone as one batch.

    Padding is on the right, so the first token is the CLS token for ``pooling=cls``.
    """

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        limit = getattr(tokenizer, "model_max_length", None)
        limit = limit if isinstance(limit, int) and limit > 0 else None
        if max_length is None:
            max_length = min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise DmlError(
                f"dataset.max_length={max_length!r} must be an integer of at least 2 tokens"
            )
        if limit is not None and limit < max_length:
            raise DmlError(
                f"dataset.max_length={max_length} exceeds the {limit} tokens the model takes "
                f"(its tokenizer's model_max_length); set dataset.max_length={limit} or less"
            )
        if tokenizer.pad_token is None:
            raise DmlError(
                f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} has no "
                "padding token, so texts of different lengths cannot share a batch; use an "
                "encoder's tokenizer (BERT, RoBERTa, MiniLM, ...)"
            )
        tokenizer.padding_side = "right"
        self.tokenizer = tokenizer
        self.max_length = max_length

    def tokens(self, texts: Sequence[str]) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_attention_mask=True,
            return_token_type_ids=False,
        )
        return {
            "input_ids": encoded["input_ids"].long(),
            "attention_mask": encoded["attention_mask"].long(),
        }

    def __call__(self, items: Sequence[Sequence[Any]]) -> Any:
        fields = list(zip(*items, strict=True))
        text_fields = [i for i, field in enumerate(fields) if isinstance(field[0], str)]
        tokens = self.tokens([text for i in text_fields for text in fields[i]])
        count = len(items)
        batch: list[Any] = []
        for i, field in enumerate(fields):
            if i in text_fields:
                start = text_fields.index(i) * count
                batch.append({key: value[start : start + count] for key, value in tokens.items()})
            else:
                batch.append(default_collate(list(field)))
        first = items[0]
        return type(first)(*batch) if hasattr(first, "_fields") else tuple(batch)


def joined(first: Any, second: Any) -> Any:
    """Two input batches as one: tensors concatenated, token batches key by key."""
    if isinstance(first, dict):
        return {key: torch.cat([first[key], second[key]]) for key in first}
    return torch.cat([first, second])
