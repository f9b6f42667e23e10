"""Mixed precision: every loss, miner and memory option computes in float32 under autocast.

The guarantee tested: inside CPU bf16 autocast, the module's loss (and its gradient) is
the float32 loss of the same embeddings within 1e-6 relative (bf16 autocast would
otherwise run the distance matmuls with 8-bit mantissas, errors near 1e-2), and bf16
embeddings from a low-precision backbone are measured as their exact float32 values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dml.config.checks import check_config
from dml.errors import DmlError
from dml.instantiate import build
from dml.losses.compat import check_compatible
from dml.training import precision
from dml.training.module import EmbeddingModule
from tests.conftest import CONF_DIR, group_options

EMBEDDING_DIM = 16
# float32 against float32 on the same machine: only summation order could differ.
TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The matrices here are tiny: on a loaded machine a second intra-op thread only
    waits for a core (100× slower measured), so these tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def component(group: str, name: str, loss: str = "triplet") -> Any:
    """A component built from its real YAML, with the interpolations a run would give it."""
    root = OmegaConf.create(
        {
            "dataset": {"num_classes": 10},
            "backbone": {"embedding_dim": EMBEDDING_DIM},
            "loss": OmegaConf.load(CONF_DIR / "loss" / f"{loss}.yaml"),
            group: OmegaConf.load(CONF_DIR / group / f"{name}.yaml"),
        }
    )
    return build(root[group])


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 classes × 4 on the unit sphere, with one exact duplicate (a zero distance)."""
    torch.manual_seed(1)
    embeddings = nn.functional.normalize(torch.randn(32, EMBEDDING_DIM), dim=1)
    embeddings[5] = embeddings[4]
    return embeddings, torch.arange(8).repeat_interleave(4)


def loss_and_grad(
    module: EmbeddingModule, embeddings: torch.Tensor, labels: torch.Tensor, autocast: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two steps (the second sees a filled memory, if any); the second's loss and grad."""
    module = copy.deepcopy(module)
    leaf = embeddings.detach().clone().requires_grad_(True)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        module.compute_loss(leaf.flip(0), labels.flip(0))
        loss = module.compute_loss(leaf, labels)[0]
    assert loss.dtype == torch.float32
    (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    return loss.detach(), torch.zeros_like(leaf) if grad is None else grad


@pytest.mark.parametrize("loss_name", group_options("loss"))
def test_every_loss_miner_and_memory_computes_in_float32_under_bf16_autocast(
    loss_name: str,
) -> None:
    embeddings, labels = batch()
    checked = 0
    for miner_name in group_options("miner"):
        for memory_name in group_options("memory"):
            loss = component("loss", loss_name)
            miner = component("miner", miner_name, loss_name)
            memory = component("memory", memory_name)
            if memory is not None:
                memory.size = 64  # two batches: the second step meets the first
            try:
                check_compatible(loss, miner, memory, samples_per_class=4)
            except DmlError:
                continue
            module = EmbeddingModule(nn.Identity(), loss, miner, memory=memory)
            expected = loss_and_grad(module, embeddings, labels, autocast=False)
            got = loss_and_grad(module, embeddings, labels, autocast=True)
            case = f"{loss_name} miner={miner_name} memory={memory_name}"
            torch.testing.assert_close(got[0], expected[0], **TOLERANCE, msg=case)
            torch.testing.assert_close(got[1], expected[1], **TOLERANCE, msg=case)
            # bf16 embeddings (a backbone under autocast) are measured as they are.
            rounded = embeddings.bfloat16()
            low = loss_and_grad(module, rounded, labels, autocast=True)
            exact = loss_and_grad(module, rounded.float(), labels, autocast=False)
            torch.testing.assert_close(low[0], exact[0], **TOLERANCE, msg=case)
            checked += 1
    assert checked >= 1


def test_without_the_float32_guard_bf16_autocast_changes_the_loss() -> None:
    """The test above can fail: the same loss run inside autocast directly differs."""
    embeddings, labels = batch()
    loss = component("loss", "multi_similarity")
    exact = loss(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rough = loss(embeddings, labels)
    assert abs(float(rough) - float(exact)) > 1e-4


def test_embeddings_and_evaluation_inputs_are_float32_under_autocast() -> None:
    backbone = nn.Linear(8, 4)
    module = EmbeddingModule(backbone, component("loss", "triplet"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert backbone(torch.randn(3, 8)).dtype == torch.bfloat16
        out = module(torch.randn(3, 8))
        with precision.autocast_off():
            assert not torch.is_autocast_enabled("cpu")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=multi_similarity", "miner=multi_similarity", "memory=xbm"],
        ["loss=proxy_anchor", "miner=none"],
        ["loss=contrastive", "miner=pair_margin"],
    ],
)
def test_bf16_mixed_trains_and_evaluates_on_cpu(
    overrides: list[str], compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from dml.commands.train import train

    cfg = compose_cfg(
        "dataset=digits",
        "backbone=convnet",
        "trainer=debug",
        "trainer.precision=bf16-mixed",
        "logger=none",
        "data.batch_size=40",
        "data.samples_per_class=4",
        *overrides,
    )
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values())


def test_fp16_on_a_cpu_fails_at_start_in_one_line(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(DmlError) as info:
        check_config(compose_cfg("trainer.precision=16-mixed"))
    message = str(info.value)
    assert message.startswith("trainer.precision=16-mixed needs a CUDA GPU")
    assert "trainer.precision=bf16-mixed" in message and "\n" not in message
    check_config(compose_cfg("trainer.precision=bf16-mixed"))


def test_bf16_on_a_gpu_without_bf16_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Tesla V100")
    trainer = OmegaConf.create({"accelerator": "gpu", "precision": "bf16-mixed"})
    with pytest.raises(DmlError, match="Tesla V100 has no bfloat16 support"):
        precision.check_precision(trainer)
    precision.check_precision(OmegaConf.create({"accelerator": "gpu", "precision": "16-mixed"}))
